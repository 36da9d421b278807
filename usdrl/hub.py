"""Named pretrained weights and the resolution of a model name to its two files.

A model is two files: ``config.json`` (a :class:`~usdrl.USDRLConfig`) and
``model.safetensors``. :func:`resolve_model_files` finds them for

* a local folder (optionally written ``local-dir:/path``),
* a name registered with :func:`register_pretrained` (see :func:`list_pretrained`),
* a Hugging Face Hub repository ``org/name`` (optionally written ``hf-hub:org/name``).

Hub files are fetched one by one with ``huggingface_hub.hf_hub_download`` into its
cache; nothing else is downloaded. A registered name pins a commit, so once cached it
loads with no network request at all.
"""

import logging
import os
import re
import socket
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType

import torch
from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from ._version import __version__
from .config import USDRLConfig
from .errors import CheckpointError, ConfigError, WeightsNotFoundError
from .skeleton import MODALITIES, list_layouts
from .universal import UNIVERSAL  # noqa: F401  (registers the "universal" layout that weights may name)

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


#: The modalities a registered model may have been trained on: one of the skeleton modalities, or ``multi``.
WEIGHT_MODALITIES = (*MODALITIES, "multi")


def _check_accuracy(field_name: str, weights_name: str, figures) -> dict[str, float]:
    """``figures`` as ``{evaluation: top-1 percent}``, or ConfigError naming ``field_name``."""
    if not isinstance(figures, Mapping):
        raise ConfigError(f"weights {weights_name!r}: {field_name} must be a mapping {{evaluation: top-1 %}}, "
                          f"got {type(figures).__name__}")
    checked = {}
    for evaluation, value in figures.items():
        if not isinstance(evaluation, str) or not evaluation:
            raise ConfigError(f"weights {weights_name!r}: {field_name} keys must be evaluation names, "
                              f"got {evaluation!r}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
            raise ConfigError(f"weights {weights_name!r}: {field_name}[{evaluation!r}] must be a top-1 accuracy "
                              f"in percent (0 to 100), got {value!r}")
        checked[evaluation] = float(value)
    return checked


@dataclass(frozen=True)
class PretrainedWeights:
    """A named set of weights: on the Hub (``repo_id`` at a pinned ``revision``) or in a folder, with what
    a user needs to know before loading them (the torchvision ``Weights`` idea).

    Attributes:
        name: the name ``USDRL.from_pretrained`` takes.
        repo_id, revision: a Hub repository and the commit pinned (exactly one of ``repo_id`` and ``path``).
        path: a local model folder (``config.json``, ``model.safetensors``).
        description: one line for listings (``usdrl info``).
        layout: the joint layout of the inputs, a registered one (:func:`usdrl.list_layouts`); as in
            ``config.json``.
        num_frames: frames T per clip (> 0); as in ``config.json``.
        modality: ``joint``, ``motion``, ``bone`` or ``multi``; as in ``config.json``.
        dataset: the training data, e.g. ``ntu60`` (``None``: not said).
        protocol: the split or evaluation protocol, e.g. ``xsub``.
        preprocessing: the preprocessing recipe the inputs need (what ``usdrl prepare`` or the
            functions of :mod:`usdrl.data.preprocess` do to a clip first).
        license: the weights' licence, an SPDX identifier such as ``MIT`` or ``CC-BY-NC-4.0``.
        published_accuracy: ``{evaluation: top-1 %}`` the paper reports for these weights (e.g.
            ``{"linear": 84.2}``).
        measured_accuracy: ``{evaluation: top-1 %}`` measured with this library (the command is in the
            docs).

    A field that does not hold what it should is a ConfigError naming it.
    """

    name: str
    repo_id: str | None = None
    revision: str | None = None
    path: str | None = None
    description: str = ""
    layout: str = "ntu25"
    num_frames: int = 64
    modality: str = "joint"
    dataset: str | None = None
    protocol: str | None = None
    preprocessing: str | None = None
    license: str | None = None
    published_accuracy: Mapping[str, float] = field(default_factory=dict)
    measured_accuracy: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"pretrained weights need a name (a non-empty string), got {self.name!r}")
        if (self.repo_id is None) == (self.path is None):
            raise ConfigError(f"weights {self.name!r} need exactly one of repo_id and path")
        if self.path is not None and self.revision is not None:
            raise ConfigError(f"weights {self.name!r}: revision pins a Hub commit; a local path has none")
        for name in ("repo_id", "revision", "path", "dataset", "protocol", "preprocessing", "license"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"weights {self.name!r}: {name} must be a string or None, got {value!r}")
        if not isinstance(self.description, str):
            raise ConfigError(f"weights {self.name!r}: description must be a string, got {self.description!r}")
        if self.layout not in list_layouts():
            raise ConfigError(f"weights {self.name!r}: layout must be a registered layout "
                              f"({', '.join(list_layouts())}), got {self.layout!r}")
        if isinstance(self.num_frames, bool) or not isinstance(self.num_frames, int) or self.num_frames < 1:
            raise ConfigError(f"weights {self.name!r}: num_frames must be a positive integer, got {self.num_frames!r}")
        if self.modality not in WEIGHT_MODALITIES:
            raise ConfigError(f"weights {self.name!r}: modality must be one of {', '.join(WEIGHT_MODALITIES)}, "
                              f"got {self.modality!r}")
        for name in ("published_accuracy", "measured_accuracy"):
            # a private copy: the registry entry cannot be changed through the caller's dict
            object.__setattr__(self, name, MappingProxyType(_check_accuracy(name, self.name, getattr(self, name))))

    def summary(self) -> str:
        """One line: description, then layout, frames, modality, data, protocol and accuracies."""
        facts = [f"layout {self.layout}", f"{self.num_frames} frames", self.modality]
        facts += [f"{label} {value}" for label, value in (("dataset", self.dataset), ("protocol", self.protocol),
                                                           ("licence", self.license)) if value]
        for label, figures in (("published", self.published_accuracy), ("measured", self.measured_accuracy)):
            if figures:
                facts.append(f"{label} top-1 " + ", ".join(f"{k} {v:.1f}%" for k, v in figures.items()))
        return f"{self.description} ({'; '.join(facts)})" if self.description else "; ".join(facts)

    def to_dict(self) -> dict:
        """The entry as a JSON-native dict (what ``usdrl info --json`` prints)."""
        return {f.name: dict(value) if isinstance(value := getattr(self, f.name), Mapping) else value
                for f in fields(self)}


_REGISTRY: dict[str, PretrainedWeights] = {}


def register_pretrained(weights: PretrainedWeights, *, overwrite: bool = False) -> None:
    """Make ``weights`` loadable as ``USDRL.from_pretrained(weights.name)``."""
    if weights.name in _REGISTRY and not overwrite:
        raise ConfigError(f"pretrained weights named {weights.name!r} are already registered")
    _REGISTRY[weights.name] = weights


def unregister_pretrained(name: str) -> None:
    """Remove a registered name (no error if it is unknown)."""
    _REGISTRY.pop(name, None)


def list_pretrained() -> list[str]:
    """Names accepted by ``USDRL.from_pretrained`` besides folders and Hub repo ids."""
    return sorted(_REGISTRY)


def get_pretrained(name: str) -> PretrainedWeights:
    """The registry entry for ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise WeightsNotFoundError(f"no pretrained weights named {name!r}; known: {list_pretrained()}") from None


# --------------------------------------------------------------------------------------
# Reading a weights file: header first, sizes checked before anything is built or loaded
# --------------------------------------------------------------------------------------

#: safetensors dtype names of floating-point tensors (anything else is refused).
_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}


def read_weights_header(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (shape, safetensors dtype)}`` of a ``.safetensors`` file, from its header alone.

    Raises CheckpointError naming the file when it is damaged (truncated, header not
    JSON, offsets that do not cover the data) or holds a tensor that is not floating point.
    """
    try:
        with safe_open(path, "pt") as f:
            slices = {name: f.get_slice(name) for name in f.keys()}
            header = {name: (tuple(s.get_shape()), s.get_dtype()) for name, s in slices.items()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    for name, (_, dtype) in header.items():
        if dtype not in _FLOAT_DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} is {dtype}; model weights must be floating point "
                                  f"({', '.join(sorted(_FLOAT_DTYPES))})")
    return header


def load_weights_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file checked by :func:`read_weights_header`, each finite.

    Tensors stored in another float type than float32 are loaded and cast when copied into
    the model (logged). Raises CheckpointError naming the file and tensor.
    """
    header = read_weights_header(path)
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    for name, tensor in tensors.items():
        if not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: tensor {name!r} holds NaN or infinite values")
    cast = sorted({dtype for _, dtype in header.values()} - {"F32"})
    if cast:
        logger.info("%s: %s weights are cast to float32", path, "/".join(cast))
    return tensors


def check_config_sizes(config: USDRLConfig, header: dict, config_file, weights_file,
                       chosen_heads: tuple[str, ...] = ()) -> None:
    """Raise ConfigError naming the first config size that the weights' shapes contradict.

    Compared: hidden_size, the spatial tokens (num_persons x num_joints), in_channels,
    num_frames, num_layers, mlp_ratio and the head sizes (``num_classes``,
    ``num_frame_classes``) except those in ``chosen_heads``, which the caller sets anew.
    ``header`` is :func:`read_weights_header`'s, so an edited ``config.json`` is refused
    before a model of its sizes is built.
    """
    def shape(pattern: str) -> tuple[int, ...] | None:
        return next((dims for name, (dims, _) in header.items() if re.fullmatch(pattern, name)), None)

    def refuse(name: str, value, held) -> ConfigError:
        return ConfigError(f"{config_file}: {name} is {value} but {weights_file} holds weights for {held}")

    position = shape(r"encoder\.spatial_pos")
    temporal = shape(r"encoder\.temporal\.embeds?\.(?:\w+\.)?0\.weight")
    spatial = shape(r"encoder\.spatial\.embeds?\.(?:\w+\.)?0\.weight")
    fc1 = shape(r"encoder\.temporal\.layers\.0\.(?:ca\.mlp|ffn)\.fc1\.weight")
    if position is None or temporal is None or spatial is None or fc1 is None or len(position) != 3:
        raise CheckpointError(f"{weights_file}: not usdrl model weights (no encoder.spatial_pos, embedding or "
                              "MLP tensors)")
    tokens, hidden = position[1], position[2]
    if config.hidden_size != hidden:
        raise refuse("hidden_size", config.hidden_size, f"hidden size {hidden}")
    if config.spatial_tokens != tokens:
        raise refuse("num_persons x num_joints", f"{config.num_persons} x {config.num_joints}",
                     f"{tokens} spatial tokens")
    if config.temporal_input_dim != temporal[1]:
        raise refuse("in_channels", config.in_channels, f"{temporal[1] / tokens:g} channels per joint")
    if config.spatial_input_dim != spatial[1]:
        raise refuse("num_frames", config.num_frames, f"{spatial[1] / config.in_channels:g} frames")
    layers = len({m[1] for name in header if (m := re.match(r"encoder\.temporal\.layers\.(\d+)\.", name))})
    if config.num_layers != layers:
        raise refuse("num_layers", config.num_layers, f"{layers} layers")
    if config.mlp_hidden_size != fc1[0]:
        raise refuse("mlp_ratio", config.mlp_ratio, f"an MLP of width {fc1[0]} (ratio {fc1[0] / hidden:g})")
    for name, prefix in (("num_classes", "head"), ("num_frame_classes", "frame_head")):
        promised, weight = getattr(config, name), header.get(f"{prefix}.weight")
        held = weight[0][0] if weight else 0
        if name in chosen_heads or promised == held:
            continue
        if held == 0:
            raise ConfigError(f"{config_file}: {name} is {promised} but {weights_file} has no {prefix} weights; "
                              f"pass {name}=0 to load without that head, or {name}=N for a fresh one")
        raise refuse(name, promised, f"{held} classes")


def _local_files(folder: Path) -> tuple[Path, Path]:
    files = (folder / CONFIG_FILE, folder / WEIGHTS_FILE)
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise WeightsNotFoundError(f"model folder {folder} has no {' or '.join(missing)}")
    return files


def _check_hub_reachable(repo_id: str) -> None:
    """Raise at once if the Hub endpoint (or the proxy in front of it) does not accept a connection.

    ``huggingface_hub`` retries an unreachable endpoint for about 25 s with a warning per try
    before it gives up; one TCP connection tells "no network" in a moment.
    """
    endpoint = urllib.parse.urlsplit(constants.ENDPOINT)
    proxy = None if urllib.request.proxy_bypass(endpoint.hostname or "") else \
        urllib.request.getproxies().get(endpoint.scheme)
    target = urllib.parse.urlsplit(proxy if "://" in (proxy or "") else f"http://{proxy}") if proxy else endpoint
    port = target.port or {"https": 443, "http": 80}.get(target.scheme, 443)
    try:
        socket.create_connection((target.hostname, port), timeout=constants.HF_HUB_ETAG_TIMEOUT).close()
    except OSError as exc:
        via = f" through the proxy {target.hostname}:{port}" if proxy else ""
        raise WeightsNotFoundError(
            f"cannot reach the Hugging Face Hub at {constants.ENDPOINT}{via} ({exc.strerror or exc}): no network? "
            f"{repo_id} is not in the local cache: connect (then `usdrl download {repo_id}` keeps a copy for offline "
            "use), set HF_ENDPOINT to a reachable mirror, or load a model folder by its path") from None


def _download(repo_id: str, filename: str, **kwargs) -> Path:
    where = f"{repo_id}@{kwargs.get('revision') or 'main'}"
    cached = try_to_load_from_cache(repo_id, filename, cache_dir=kwargs.get("cache_dir"),
                                    revision=kwargs.get("revision"))
    if not (kwargs.get("local_files_only") or constants.HF_HUB_OFFLINE) and (
            kwargs.get("force_download") or not isinstance(cached, str)):
        _check_hub_reachable(repo_id)  # a cached file is used without the Hub when it cannot be reached
    try:
        return Path(hf_hub_download(repo_id, filename, library_name="usdrl", library_version=__version__, **kwargs))
    except LocalEntryNotFoundError:
        raise WeightsNotFoundError(
            f"{filename} of {where} is not in the local cache and the Hub could not be asked for it "
            "(offline mode, local_files_only=True, or no connection); download it once while online, "
            "e.g. with `usdrl download`") from None
    except GatedRepoError:
        raise WeightsNotFoundError(f"{where} is gated: accept its terms on the Hub and pass a token") from None
    except RepositoryNotFoundError:
        raise WeightsNotFoundError(
            f"Hub repository {repo_id!r} does not exist (or is private: pass token=...)") from None
    except RevisionNotFoundError:
        raise WeightsNotFoundError(f"Hub repository {repo_id!r} has no revision {kwargs.get('revision')!r}") from None
    except EntryNotFoundError:
        raise WeightsNotFoundError(f"Hub repository {where} has no file {filename!r}; is it a usdrl model?") from None
    except HFValidationError as exc:
        raise WeightsNotFoundError(f"{repo_id!r} is not a valid Hub repository id: {exc}") from None


def resolve_model_files(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    force_download: bool = False,
) -> tuple[Path, Path]:
    """Local paths of ``(config.json, model.safetensors)`` for a folder, registered name or Hub repo."""
    name = os.fspath(name_or_path)
    if name.startswith("local-dir:"):
        folder = Path(name.removeprefix("local-dir:"))
        if not folder.is_dir():
            raise WeightsNotFoundError(f"{folder} is not a folder")
        return _local_files(folder)
    if name.startswith("hf-hub:"):
        repo_id = name.removeprefix("hf-hub:")
    elif Path(name).is_dir():
        return _local_files(Path(name))
    elif name in _REGISTRY:
        weights = _REGISTRY[name]
        if weights.path is not None:
            return _local_files(Path(weights.path))
        repo_id, revision = weights.repo_id, revision or weights.revision
    elif name.count("/") == 1 and not Path(name).exists():
        repo_id = name
    else:
        raise WeightsNotFoundError(
            f"{name!r} is not a model folder, a registered name ({', '.join(list_pretrained()) or 'none'}) "
            "or a Hub repository id 'org/name'")
    kwargs = dict(revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token,
                  force_download=force_download)
    config_file = _download(repo_id, CONFIG_FILE, **kwargs)
    # Fetch the weights from the very commit the config came from (the cache names it).
    snapshot = config_file.parent.name
    if len(snapshot) == 40 and all(ch in "0123456789abcdef" for ch in snapshot):
        kwargs["revision"] = snapshot
    return config_file, _download(repo_id, WEIGHTS_FILE, **kwargs)


#: The embedded NTU-25 weights (inside the package; made by ``benchmarks/make_default_model.py``): 3D NTU-25 clips
#: ``(N, 3, 64, 25, 2)`` as ``usdrl prepare`` gives them.
NTU25_MODEL = "usdrl-synthetic-small"
register_pretrained(PretrainedWeights(
    name=NTU25_MODEL,
    path=str(Path(__file__).resolve().parent / "pretrained" / NTU25_MODEL),
    description="demo weights shipped with the package: a small DSTE (hidden 128) pretrained on usdrl's "
                "synthetic actions, with clip and frame heads for its 29 classes; not for real data",
    layout="ntu25", num_frames=64, modality="joint", dataset="synthetic",
    protocol="MG-FD/MPCT pretraining, frame-wise training, linear clip head",
    preprocessing="usdrl.data.preprocess.preprocess_3d(clip, 'ntu') (the NTU recipe of usdrl prepare), then the "
                  "valid frames resampled to 64 (usdrl.data.preprocess.to_model_input)",
    license="MIT",
    # the clip head on 1,165 held-out synthetic clips (docs/benchmarks.md, benchmarks/make_default_model.py)
    measured_accuracy={"clip-head": 98.2},
))
#: The embedded universal model (made by ``benchmarks/make_universal_model.py``), the default: keypoints of every
#: registered format, 2D or 3D (``encode_keypoints``; detection with ``format=``).
UNIVERSAL_MODEL = "usdrl-universal-small"
register_pretrained(PretrainedWeights(
    name=UNIVERSAL_MODEL,
    path=str(Path(__file__).resolve().parent / "pretrained" / UNIVERSAL_MODEL),
    description="demo weights shipped with the package, the default: a small universal DSTE (hidden 64) that "
                "reads every registered keypoint format, 2D or 3D, pretrained across formats on usdrl's synthetic "
                "actions (its renderings of one clip kept together by cross-format alignment), with clip and "
                "frame heads for its 29 classes; not for real data",
    layout="universal", num_frames=64, modality="joint", dataset="synthetic",
    # as its config.json states them (the rendering settings of its cross-format views)
    protocol='MG-FD pretraining on cross-format views (usdrl.train.cross_format.CrossFormatConfig({"formats": '
             '["ntu25", "coco17", "h36m17", "mediapipe33", "openpose25", "smpl24"], "max_yaw_degrees": 60.0, '
             '"jitter": 0.015, "low_score_rate": 0.1, "max_drop_rate": 0.3, "max_occlusion_rate": 0.3, '
             '"image_size": [1080, 1920], "focal": 1060.0})), frame-wise training with cross-format alignment '
             '(FormatAlignment, weight 1.5), linear clip head',
    preprocessing="usdrl.universal.model_input(keypoints, format, num_frames=64, num_persons=2), as "
                  "USDRL.encode_keypoints does (image_size=(height, width) for MediaPipe's normalised coordinates)",
    license="MIT",
    # the clip head on 290 held-out rendered clips per format (benchmarks/make_universal_model.py)
    measured_accuracy={"clip-head ntu25": 93.4, "clip-head coco17": 91.4, "clip-head h36m17": 93.4,
                       "clip-head mediapipe33": 91.7},
))

#: The model a new user meets first (``usdrl demo``, the examples): the universal one.
DEFAULT_MODEL = UNIVERSAL_MODEL
