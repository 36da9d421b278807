"""Named pretraining recipes: each run of the reference releases, one name each.

``usdrl pretrain --recipe NAME`` (or :func:`get_recipe`) sets every value of a run as the
release's script and ``pretrain.py`` set it; a ``--config`` file and explicit flags still
override single values. Without a recipe, :class:`~usdrl.train.pretrain.PretrainConfig`'s
defaults apply: the library's own choice (see ``docs/pretraining.md``), not any release's.

The two releases:

* AAAI (the ``USDRL`` code): ``scripts/pretrain.sh`` runs NTU-60 and NTU-120 (every split)
  at batch 356, lr 5e-4, lr x 0.1 at epoch 351, 451 epochs, and PKU-MMD II at batch 512,
  lr x 0.1 at 801, 1201 epochs; ``pretrain.py`` weights the cross-correlation 1e-3 and trains
  under CUDA fp16 autocast with a GradScaler; Adam with weight decay 1e-5; joint corruption
  draws from all joints.
* TPAMI (the ``FoundSkelModel`` code): ``pretrain.py`` drops the cross-correlation (weight 0)
  and stops on a loss above 1e4; its augmentations corrupt joints drawn from the first 17
  only. Its scripts run NTU-2D (x-view) at batch 384, lr 1e-4, and NTU-60 STTR (motion,
  x-view) at batch 356, lr 1e-4, both with the 351 / 451 schedule. It has no PKU-MMD II
  script: ``tpami-pku2`` is its ``pretrain.py`` with the AAAI script's PKU-MMD II schedule.
"""

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..errors import ConfigError
from .augment import AugmentConfig
from .losses import LossConfig
from .pretrain import PretrainConfig

logger = logging.getLogger(__name__)

#: The reference encoder (both releases' ``encoder_args``, 64 frames); the MLP ratio and drop
#: path follow the encoder as in the releases (DSTE 2 and 0.1, STTR 1 and none).
REFERENCE_MODEL = MappingProxyType({"num_frames": 64, "hidden_size": 1024, "num_heads": 1, "num_layers": 2,
                                    "alpha": 0.5, "gap": 4, "encoder": "dste"})

#: Both releases' augmentations (spec section 5): crop-resize to 64 frames with a ratio in
#: U(0.1, 1) and at least 64 frames, then joint corruption (15 joints, zeroed or mixed by
#: one U(-1, 1) matrix) or a U(-1, 1) shear, each with probability 0.5; nothing else.
_AAAI_AUGMENT = AugmentConfig(output_frames=64, min_crop_ratio=0.1, max_crop_ratio=1.0, min_crop_length=64,
                              corruption_prob=0.5, corrupted_joints=15, corruption_pool=None, zero_mask_prob=0.5,
                              mix_range=1.0, shear_range=1.0, rotation_degrees=(0.0, 0.0, 0.0), flip_prob=0.0,
                              noise_std=0.0, temporal_mask_prob=0.0)
_TPAMI_AUGMENT = dataclasses.replace(_AAAI_AUGMENT, corruption_pool=17)

#: ``ws`` of the AAAI ``pretrain.py`` and ``v_ac`` / ``xcorr_loss`` of its ``loss.py``.
_AAAI_LOSS = LossConfig(sim_weight=5.0, vac_weight=1.0, xcorr_weight=1e-3, std_weight=5.0, cov_weight=1.0,
                        variance_eps=1e-4, xcorr_off_diagonal=0.005, temporal_weight=0.5, spatial_weight=0.5,
                        instance_weight=1.0)
_TPAMI_LOSS = dataclasses.replace(_AAAI_LOSS, xcorr_weight=0.0)


def _run(*, batch_size: int, lr: float, milestone: int, epochs: int, augment: AugmentConfig,
         loss: LossConfig) -> PretrainConfig:
    """A release's run: Adam (weight decay 1e-5), lr x 0.1 at ``milestone``, 4 views, CUDA fp16 autocast with
    a GradScaler, seed 0, no gradient clipping, a checkpoint every 50 epochs."""
    return PretrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=1e-5, lr_milestones=[milestone],
                          lr_gamma=0.1, num_views=4, precision="fp16", grad_checkpointing=False, grad_clip=None,
                          max_loss=1e4, save_every=50, seed=0, sync_batchnorm=False,
                          augment=dataclasses.replace(augment), loss=dataclasses.replace(loss))


@dataclass(frozen=True)
class PretrainRecipe:
    """One named run of a reference release.

    Attributes:
        name: what ``--recipe`` takes.
        source: where the values come from, in words.
        datasets: the prepared sources (``usdrl prepare SOURCE``) the run was made for.
        config: every pretraining value.
        gpus: the GPUs the release's ``DataParallel`` split each batch over; its projector batch
            norms saw slices of ``batch / gpus`` clips, which ``torchrun --nproc_per_node=gpus``
            reproduces (``sync_batchnorm`` normalises with the whole batch instead).
        model: the encoder's :class:`~usdrl.USDRLConfig` fields (layout, channels and persons
            come from the data).
    """

    name: str
    source: str
    datasets: tuple[str, ...]
    gpus: int
    config: PretrainConfig
    model: Mapping = field(default_factory=lambda: REFERENCE_MODEL)

    def pretrain_config(self, overrides: Mapping | None = None) -> PretrainConfig:
        """The recipe's config with ``overrides`` (``PretrainConfig`` fields; ``augment`` and ``loss``
        may be partial dicts) applied on top."""
        return PretrainConfig.from_dict(merge_settings(self.config.to_dict(), overrides or {}))

    def check_run(self, source: str, processes: int, sync_batchnorm: bool) -> None:
        """Warn when the data, or the batch-norm slices of ``processes`` processes, differ from the release's run."""
        if source not in self.datasets:
            logger.warning("recipe %s was made for %s data, got %s: its values may not suit it", self.name,
                           " or ".join(self.datasets), source)
        if processes != self.gpus and not sync_batchnorm:
            logger.warning("recipe %s ran on %d GPUs, whose projector batch norms each saw 1/%d of the batch; "
                           "%d processes normalise slices of another size (torchrun --nproc_per_node=%d "
                           "reproduces them)", self.name, self.gpus, self.gpus, processes, self.gpus)


def merge_settings(base: Mapping, changes: Mapping) -> dict:
    """``base`` with ``changes`` applied; nested mappings (``augment``, ``loss``) merge key by key."""
    merged = dict(base)
    for key, value in changes.items():
        merged[key] = merge_settings(merged[key], value) \
            if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping) else value
    return merged


_AAAI = "the AAAI release (scripts/pretrain.sh, pretrain.py)"
_AAAI_NTU = _run(batch_size=356, lr=5e-4, milestone=351, epochs=451, augment=_AAAI_AUGMENT, loss=_AAAI_LOSS)
_AAAI_PKU2 = _run(batch_size=512, lr=5e-4, milestone=801, epochs=1201, augment=_AAAI_AUGMENT, loss=_AAAI_LOSS)

RECIPES: dict[str, PretrainRecipe] = {recipe.name: recipe for recipe in (
    PretrainRecipe("aaai-ntu60", f"{_AAAI}: NTU-60, x-sub and x-view", ("ntu60",), 2, _AAAI_NTU),
    PretrainRecipe("aaai-ntu120", f"{_AAAI}: NTU-120, x-sub and x-set", ("ntu120",), 2, _AAAI_NTU),
    PretrainRecipe("aaai-pku2", f"{_AAAI}: PKU-MMD II, x-sub", ("pkummd2",), 2, _AAAI_PKU2),
    PretrainRecipe("tpami-pku2", "the TPAMI release's pretrain.py and augmentations with the PKU-MMD II schedule "
                   "of the AAAI script (the TPAMI release has no PKU-MMD II script)", ("pkummd2",), 2,
                   _run(batch_size=512, lr=5e-4, milestone=801, epochs=1201, augment=_TPAMI_AUGMENT,
                        loss=_TPAMI_LOSS)),
    PretrainRecipe("tpami-ntu2d", "the TPAMI release (scripts/pretrain.sh, pretrain.py): NTU-60 2D, x-view; "
                   "its data: usdrl prepare ntu2d --legacy-2d-norm (the script's --padding zero is ignored by "
                   "its x-view options, so the confidence is the third channel)", ("ntu2d",), 4,
                   _run(batch_size=384, lr=1e-4, milestone=351, epochs=451, augment=_TPAMI_AUGMENT,
                        loss=_TPAMI_LOSS)),
    PretrainRecipe("tpami-ntu60-sttr", "the TPAMI release (scripts/ntu60_xv.sh, pretrain.py): the STTR baseline "
                   "on NTU-60 x-view (the script's modality is motion: --modality motion)", ("ntu60",), 2,
                   _run(batch_size=356, lr=1e-4, milestone=351, epochs=451, augment=_TPAMI_AUGMENT,
                        loss=_TPAMI_LOSS),
                   MappingProxyType({**REFERENCE_MODEL, "encoder": "sttr"})),
)}


def get_recipe(name: str) -> PretrainRecipe:
    """The recipe called ``name`` (see :data:`RECIPES`)."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ConfigError(f"unknown recipe {name!r}; expected one of {', '.join(RECIPES)}") from None
