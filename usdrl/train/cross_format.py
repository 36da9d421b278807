"""Cross-format MPCT views: one motion, several keypoint formats, 2D and 3D, as the views of one clip.

:func:`cross_format_views` turns a batch of synthetic NTU-25 clips (Kinect camera space,
metres) into ``K`` views per clip for a universal model (:mod:`usdrl.universal`): each view
is MPCT's temporal crop and spatial step (:mod:`usdrl.train.augment`) followed by a rendering
(:func:`usdrl.data.synthetic.render_keypoints`) in a format drawn from
:attr:`CrossFormatConfig.formats`, seen by a camera turned about the subjects, with
detector-like jitter, unsure and dropped joints, then mapped to the universal input. MG-FD
then pulls the renderings of one clip together, so consistency across formats (and across
2D and 3D) is learned as one more perspective. :class:`CrossFormatPretrainer` is the
:class:`~usdrl.train.pretrain.Pretrainer` that trains on these views.
"""

from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import USDRLConfig
from ..data.synthetic import DetectorNoise, render_keypoints
from ..engine import config_dict
from ..errors import ConfigError, InputError
from ..keypoints import get_format
from ..universal import UNIVERSAL_JOINTS, check_universal, to_universal
from .augment import AugmentConfig, crop_resize, draw_crop, random_spatial
from .losses import info_nce_loss
from .pretrain import Pretrainer

#: The formats a view is rendered in by default: Kinect v2 and H36M and SMPL (3D), COCO, MediaPipe, OpenPose (2D).
DEFAULT_FORMATS = ("ntu25", "coco17", "h36m17", "mediapipe33", "openpose25", "smpl24")


@dataclass
class CrossFormatConfig:
    """How the views of a clip are rendered.

    Attributes:
        formats: keypoint formats a view is drawn from, uniformly (2D formats are projected).
        max_yaw_degrees: each view's camera turns ``U(-a, a)`` degrees about the subjects.
        jitter, low_score_rate: the :class:`~usdrl.data.synthetic.DetectorNoise` of every view.
        max_drop_rate: each format's views in a step miss ``U(0, max_drop_rate)`` of their joints
            (per frame) ...
        max_occlusion_rate: ... and ``U(0, max_occlusion_rate)`` of them in every frame.
        image_size: ``(height, width)`` in pixels of the pinhole camera of the 2D views; formats in
            normalised units (MediaPipe) are divided by it and given it back for the universal input
            (as ``encode_keypoints(..., image_size=...)``), so their bodies keep their proportions.
        focal: that camera's focal length in pixels.
    """

    formats: list[str] = field(default_factory=lambda: list(DEFAULT_FORMATS))
    max_yaw_degrees: float = 60.0
    jitter: float = 0.015
    low_score_rate: float = 0.1
    max_drop_rate: float = 0.3
    max_occlusion_rate: float = 0.3
    image_size: tuple[int, int] = (1080, 1920)
    focal: float = 1060.0

    def __post_init__(self):
        if not self.formats:
            raise ConfigError("formats must name at least one keypoint format")
        for name in self.formats:
            get_format(name)
        rates = (self.max_drop_rate, self.max_occlusion_rate, self.low_score_rate)
        if not all(0.0 <= rate <= 1.0 for rate in rates):
            raise ConfigError(f"max_drop_rate, max_occlusion_rate and low_score_rate must lie in [0, 1], got {rates}")
        self.image_size = tuple(self.image_size)
        if len(self.image_size) != 2 or min(self.image_size) <= 0 or self.focal <= 0:
            raise ConfigError(f"image_size must be (height, width) > 0 and focal > 0, got {self.image_size} and "
                              f"{self.focal}")

    def to_dict(self) -> dict:
        """The settings as a JSON-ready dict (recorded in the pretraining run's checkpoints)."""
        return {"formats": list(self.formats), "max_yaw_degrees": self.max_yaw_degrees, "jitter": self.jitter,
                "low_score_rate": self.low_score_rate, "max_drop_rate": self.max_drop_rate,
                "max_occlusion_rate": self.max_occlusion_rate, "image_size": list(self.image_size),
                "focal": self.focal}


def cross_format_views(clips: torch.Tensor, lengths: torch.Tensor | None, num_views: int,
                       generator: torch.Generator | None, augment: AugmentConfig | None = None,
                       config: CrossFormatConfig | None = None) -> torch.Tensor:
    """``num_views`` renderings of every clip in formats drawn from ``config.formats``.

    ``clips (N, 3, T, 25, M)`` NTU-25 joints in Kinect camera space, ``lengths (N,)`` valid
    frames -> ``(num_views, N, 6, output_frames, 30, M)`` universal inputs, on the clips' device.
    All draws come from ``generator`` (the renderings' from a numpy generator seeded by it).
    """
    augment, config = augment or AugmentConfig(), config or CrossFormatConfig()
    n, channels, frames, joints, persons = clips.shape
    if clips.ndim != 5 or channels != 3 or joints != 25:
        raise InputError(f"expected NTU-25 clips (N, 3, T, 25, M) in Kinect camera space, got {tuple(clips.shape)}")
    lengths = torch.full((n,), frames, dtype=torch.long) if lengths is None else torch.as_tensor(lengths)
    source = torch.arange(num_views * n, device=clips.device) % n
    start, length = draw_crop(lengths.to(clips.device).index_select(0, source), generator, augment)
    bodies = crop_resize(clips, start, length, augment.output_frames, source)
    # the spatial step (shear or joint corruption) about each clip's centre, not the camera 3 m away
    present = (bodies != 0).any(1, keepdim=True)
    center = (bodies * present).sum((2, 3, 4), keepdim=True) / present.sum((2, 3, 4), keepdim=True).clamp(min=1)
    bodies = (random_spatial(bodies - center, generator, augment) + center) * present
    seed = torch.randint(0, 2**62, (1,), generator=generator, device=generator.device if generator else "cpu")
    rng = np.random.default_rng(int(seed))
    bodies = bodies.cpu().numpy()
    drawn = rng.integers(len(config.formats), size=len(bodies))
    yaw = np.radians(rng.uniform(-config.max_yaw_degrees, config.max_yaw_degrees, len(bodies)))
    views = np.zeros((len(bodies), 6, augment.output_frames, len(UNIVERSAL_JOINTS), persons), np.float32)
    for k, name in enumerate(config.formats):
        chosen = np.flatnonzero(drawn == k)
        if len(chosen) == 0:
            continue
        noise = DetectorNoise(jitter=config.jitter, low_score_rate=config.low_score_rate,
                              drop_rate=rng.uniform(0.0, config.max_drop_rate),
                              occlusion_rate=rng.uniform(0.0, config.max_occlusion_rate))
        keypoints = render_keypoints(bodies[chosen], name, yaw=yaw[chosen], rng=rng, noise=noise,
                                     image_size=config.image_size, focal=config.focal)
        normalised = get_format(name).convention.units == "normalized"
        views[chosen] = to_universal(keypoints, name, image_size=config.image_size if normalised else None)
    return torch.from_numpy(views).to(clips.device).unflatten(0, (num_views, n))


def _alignment_augment() -> AugmentConfig:
    """Views of whole clips with a mild shear: the renderings, not MPCT's crops, make the pair."""
    return AugmentConfig(min_crop_ratio=1.0, corruption_prob=0.0, shear_range=0.1)


@dataclass
class FormatAlignment:
    """Cross-format alignment for the supervised training of a universal model.

    Each step of ``train_detector(..., alignment=...)`` draws ``batch_size`` of ``clips`` (per
    process, with replacement: among 2,048 clips a batch of 128 holds a few repeats, whose second
    copy counts as a negative), renders each in ``num_views`` formats (:func:`cross_format_views` with ``augment`` and
    ``cross_format``), and adds ``weight`` x the InfoNCE of their pooled embeddings
    (:func:`usdrl.train.losses.info_nce_loss`; the negatives are the other clips of the draw), so that
    training for the classes does not make two clips of a class indistinguishable across formats.

    Attributes:
        clips: ``(N, 3, T, 25, M)`` NTU-25 clips in Kinect camera space (e.g. the synthetic
            generator's unlabelled clips); no labels are used.
        lengths: ``(N,)`` valid frames (default: all ``T``).
        weight: weight of the InfoNCE term beside the frame loss.
        temperature: InfoNCE temperature.
        batch_size: clips drawn per step and process.
        num_views: renderings per clip.
        cross_format: the renderings.
        augment: the crop and spatial step before rendering (default: whole clips, shear up to 0.1,
            no joint corruption).
    """

    clips: np.ndarray | torch.Tensor
    lengths: np.ndarray | torch.Tensor | None = None
    weight: float = 1.0
    temperature: float = 0.1
    batch_size: int = 128
    num_views: int = 2
    cross_format: CrossFormatConfig = field(default_factory=CrossFormatConfig)
    augment: AugmentConfig = field(default_factory=_alignment_augment)

    def __post_init__(self):
        self.clips = torch.as_tensor(self.clips, dtype=torch.float32)
        if self.clips.ndim != 5 or self.clips.shape[1] != 3 or self.clips.shape[3] != 25:
            raise InputError(f"expected NTU-25 clips (N, 3, T, 25, M) to render, got {tuple(self.clips.shape)}")
        frames = self.clips.shape[2]
        self.lengths = (torch.full((len(self.clips),), frames, dtype=torch.long) if self.lengths is None
                        else torch.as_tensor(self.lengths, dtype=torch.long))
        if self.lengths.shape != (len(self.clips),):
            raise InputError(f"lengths must have shape ({len(self.clips)},), got {tuple(self.lengths.shape)}")
        if self.weight < 0 or self.temperature <= 0 or self.batch_size < 2 or self.num_views < 2:
            raise ConfigError("need weight >= 0, temperature > 0, batch_size >= 2 and num_views >= 2, got "
                              f"{self.weight}, {self.temperature}, {self.batch_size} and {self.num_views}")

    def to_dict(self) -> dict:
        """The settings (not the clips) as a JSON-ready dict, recorded in the training run's checkpoints."""
        return {"num_clips": len(self.clips), "weight": self.weight, "temperature": self.temperature,
                "batch_size": self.batch_size, "num_views": self.num_views,
                "cross_format": self.cross_format.to_dict(), "augment": config_dict(self.augment)}

    def views(self, seed: int, device: torch.device | str) -> torch.Tensor:
        """The renderings ``(num_views, batch_size, 6, T, 30, M)`` of one step, on ``device``; all draws
        (clips, crops, formats, cameras, noise) come from ``seed``."""
        generator = torch.Generator().manual_seed(seed)
        chosen = torch.randint(len(self.clips), (self.batch_size,), generator=generator)
        return cross_format_views(self.clips[chosen], self.lengths[chosen], self.num_views, generator, self.augment,
                                  self.cross_format).to(device)

    def loss(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The unweighted InfoNCE of the views' embeddings ``(num_views, batch_size, D)``."""
        return info_nce_loss(embeddings, self.temperature)


class CrossFormatPretrainer(Pretrainer):
    """:class:`~usdrl.train.pretrain.Pretrainer` of a universal model on cross-format views.

    ``data (N, 3, T, 25, M)`` are NTU-25 clips in Kinect camera space (e.g. the synthetic
    generator's); each step renders them with :func:`cross_format_views`. ``cross_format``
    sets the renderings (recorded as ``cross_format`` in the run's settings: a resumed run must render
    alike); the other arguments are the Pretrainer's.
    """

    def __init__(self, model_config: USDRLConfig, config, data, lengths, run_dir, *,
                 cross_format: CrossFormatConfig | None = None, **options):
        check_universal(model_config)
        self.cross_format = cross_format or CrossFormatConfig()
        super().__init__(model_config, config, data, lengths, run_dir, **options)

    def _run_settings(self) -> dict:
        return {**super()._run_settings(), "cross_format": self.cross_format.to_dict()}

    def _check_data(self, model_config: USDRLConfig) -> None:
        if self.data.ndim != 5 or self.data.shape[1] != 3 or self.data.shape[3:] != (25, model_config.num_persons):
            raise InputError(f"expected NTU-25 clips (N, 3, T, 25, {model_config.num_persons}) to render, "
                             f"got {self.data.shape}")
        if self.lengths.shape != (len(self.data),):
            raise InputError(f"lengths must have shape ({len(self.data)},), got {self.lengths.shape}")

    def _views(self, clips: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return cross_format_views(clips, lengths, self.config.num_views, generator, self.config.augment,
                                  self.cross_format)


__all__ = ["DEFAULT_FORMATS", "CrossFormatConfig", "CrossFormatPretrainer", "FormatAlignment", "cross_format_views"]
