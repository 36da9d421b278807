"""Reading the reference release's ``.pth.tar`` checkpoints into :class:`~usdrl.USDRL`.

Handles pretraining checkpoints (``{epoch, state_dict, optimizer}``, projector weights
included) and downstream ones (with ``fc``), DSTE and STTR, with or without the
DataParallel ``module.`` prefix. Files are read with ``torch.load(weights_only=True)``,
PyTorch's restricted unpickler: tensors and builtin containers only. Every tensor must be
floating point, finite and fully stored (an expanded, stride-0 view is refused, so the sizes
inferred from shapes are bounded by the bytes in the file), and the weights are checked
against a model of the inferred config built on the meta device before a real one is
built. Every problem is a one-line CheckpointError naming the file.

Key mapping (reference -> usdrl), after dropping everything up to ``backbone.``:

================================  ==========================================
``ske_emb.t_embedding.*``         ``encoder.temporal.embed.*``
``ske_emb.s_embedding.*``         ``encoder.spatial.embed.*``
``spe``                           ``encoder.spatial_pos``
``tpe.pe``                        (checked against the fixed sinusoid, dropped)
``t_tr``, ``t_tr1``, ...          ``encoder.temporal.layers.0``, ``.1``, ...
  ``.CA.attn.*`` = ``.DSA.attn.*``  ``.attn.*`` (the shared module; checked equal)
  ``.CA.conv1`` (H, H, 1)           ``.ca.pointwise`` (H, H)
  ``.CA.{norm1,norm2,mlp}``         ``.ca.{norm1,norm2,mlp}``
  ``.DSA.wt1``, ``.DSA.wt2``        ``.dsa.shift.mix1``, ``.dsa.shift.mix2``
  ``.DSA.{norm1,norm2,mlp}``        ``.dsa.{norm1,norm2,mlp}``
``t_tr.layers.i.*`` (STTR)        ``encoder.temporal.layers.i.*`` with
                                  ``self_attn`` -> ``attn``, ``linear1/2`` -> ``ffn.fc1/2``
``fc``                            ``head`` (or ``frame_head`` for detectors)
``{t,s,i}_proj.*``                projectors ``{temporal,spatial,instance}.*``
================================  ==========================================
"""

import logging
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from ._io import atomic_write
from .config import USDRLConfig
from .encoder import sinusoid_table
from .errors import CheckpointError, ConfigError
from .model import USDRL

logger = logging.getLogger(__name__)

PROJECTORS_FILE = "projectors.safetensors"
_PROJECTORS = {"t_proj": "temporal", "s_proj": "spatial", "i_proj": "instance"}
_DSTE_SUBLAYER = [
    (r"CA\.conv1\.", "ca.pointwise."),
    (r"CA\.(norm1|norm2|mlp)\.", r"ca.\1."),
    (r"DSA\.wt1\.", "dsa.shift.mix1."),
    (r"DSA\.wt2\.", "dsa.shift.mix2."),
    (r"DSA\.(norm1|norm2|mlp)\.", r"dsa.\1."),
    (r"(?:CA|DSA)\.attn\.", "attn."),
]
_STTR_SUBLAYER = [(r"self_attn\.", "attn."), (r"linear1\.", "ffn.fc1."), (r"linear2\.", "ffn.fc2."),
                  (r"(norm1|norm2)\.", r"\1.")]
_STREAMS = {"t": "temporal", "s": "spatial"}


def save_projectors(tensors: dict[str, torch.Tensor], folder: str | os.PathLike) -> Path:
    """Write projector weights (``{temporal,spatial,instance}.<index>.<param>``) to
    ``folder/projectors.safetensors`` atomically, beside a ``save_pretrained`` model."""
    path = Path(folder) / PROJECTORS_FILE
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))


@dataclass
class ReferenceCheckpoint:
    """A reference checkpoint converted to usdrl: the model, the pretraining projectors
    (``{temporal,spatial,instance}.<index>.<param>``, empty for downstream checkpoints) and the epoch."""

    model: USDRL
    projectors: dict[str, torch.Tensor] = field(default_factory=dict)
    epoch: int | None = None

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write a ``save_pretrained`` folder (plus ``projectors.safetensors`` when there are projectors)."""
        out = Path(out_dir)
        self.model.save_pretrained(out)
        if self.projectors:
            save_projectors(self.projectors, out)
        return out


def _load_error(path: Path, exc: Exception) -> CheckpointError:
    """One line for a file ``torch.load`` could not read (never PyTorch's advice to turn the
    restricted unpickler off)."""
    unpickling = isinstance(exc, pickle.UnpicklingError)
    code = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc)) if unpickling else None
    if code:
        return CheckpointError(f"{path}: refused to unpickle: a reference checkpoint holds only tensors and builtin "
                               f"containers, this file names {code[1]}")
    first_line = "" if unpickling else (str(exc).strip().splitlines() or [""])[0]
    return CheckpointError(f"{path}: not a PyTorch checkpoint (.pth.tar) that can be read ({type(exc).__name__}"
                           f"{': ' + first_line if first_line else ''}); expected a file saved by torch.save")


def _check_tensor(name: str, tensor: torch.Tensor) -> None:
    """CheckpointError unless ``tensor`` is floating point (or batch norm's integer counter), finite and
    fully stored (no expanded, stride-0 view that claims more elements than the file holds)."""
    counter = name.endswith("num_batches_tracked") and tensor.dtype == torch.int64 and tensor.numel() == 1
    if not (tensor.is_floating_point() or counter):
        raise CheckpointError(f"tensor {name!r} is {tensor.dtype}; reference weights are floating point")
    stored = tensor.untyped_storage().nbytes() - tensor.storage_offset() * tensor.element_size()
    if tensor.numel() * tensor.element_size() > stored:
        raise CheckpointError(f"tensor {name!r} claims shape {tuple(tensor.shape)} ({tensor.numel():,} values) but "
                              f"stores only {stored:,} bytes (an expanded view); refused")
    if not bool(torch.isfinite(tensor).all()):
        raise CheckpointError(f"tensor {name!r} holds NaN or infinite values")


def _read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], int | None]:
    """The state dict of a reference checkpoint (``module.`` prefixes removed) and its epoch; every
    tensor checked by :func:`_check_tensor`. Raises CheckpointError (one line) for anything else."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - whatever the unpickler trips on, the file is not a checkpoint
        raise _load_error(path, exc) from None
    epoch = obj.get("epoch") if isinstance(obj, dict) else None
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    if not (isinstance(state, dict) and state and all(isinstance(k, str) for k in state)
            and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise CheckpointError(f"{path}: expected a state dict of named tensors (or a dict with 'state_dict'), "
                              f"got {type(state).__name__}")
    state = {k.rsplit("module.", 1)[-1]: v for k, v in state.items()}
    try:
        for name, tensor in state.items():
            _check_tensor(name, tensor)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return state, epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None


def _map_key(key: str, kind: str) -> str | None:
    """The usdrl name of a reference backbone key (``None`` for the dropped ``tpe.pe``)."""
    if key == "tpe.pe":
        return None
    if key == "spe":
        return "encoder.spatial_pos"
    match = re.fullmatch(r"ske_emb\.([ts])_embedding\.(.+)", key)
    if match:
        return f"encoder.{_STREAMS[match[1]]}.embed.{match[2]}"
    if kind == "dste":
        match = re.fullmatch(r"([ts])_tr(\d*)\.(.+)", key)
        rules = _DSTE_SUBLAYER
    else:
        match = re.fullmatch(r"([ts])_tr\.layers\.(\d+)\.(.+)", key)
        rules = _STTR_SUBLAYER
    if match:
        for pattern, replacement in rules:
            if re.match(pattern, match[3]):
                rest = re.sub(pattern, replacement, match[3], count=1)
                return f"encoder.{_STREAMS[match[1]]}.layers.{int(match[2] or 0)}.{rest}"
    raise CheckpointError(f"unexpected key {key!r} in a reference {kind.upper()} checkpoint")


def _map_backbone(backbone: dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    mapped: dict[str, torch.Tensor] = {}
    sources: dict[str, str] = {}
    for key, value in backbone.items():
        name = _map_key(key, kind)
        if name is None:
            continue
        if name.endswith("ca.pointwise.weight"):
            value = value.squeeze(-1)
        if name in mapped:
            if mapped[name].shape != value.shape or not torch.equal(mapped[name], value):
                raise CheckpointError(
                    f"{sources[name]} and {key} should be the same shared attention tensor but differ")
            continue
        mapped[name], sources[name] = value, key
    return mapped


def _shape(backbone: dict[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    """The shape of ``backbone[key]``, which must exist with ``ndim`` dimensions, none of them 0."""
    if key not in backbone:
        raise CheckpointError(f"not a USDRL reference checkpoint: no {key!r}")
    shape = tuple(backbone[key].shape)
    if len(shape) != ndim or 0 in shape:
        raise CheckpointError(f"{key!r} has shape {shape}; expected {ndim} non-zero dimensions")
    return shape


def _infer_config(backbone: dict[str, torch.Tensor], kind: str, num_persons: int, layout: str | None,
                  **fields) -> USDRLConfig:
    hidden, temporal_dim = _shape(backbone, "ske_emb.t_embedding.0.weight", 2)
    spatial_dim = _shape(backbone, "ske_emb.s_embedding.0.weight", 2)[1]
    spatial_tokens = _shape(backbone, "spe", 3)[1]
    channels, rem_c = divmod(temporal_dim, spatial_tokens)
    frames, rem_t = divmod(spatial_dim, max(channels, 1))
    joints, rem_v = divmod(spatial_tokens, num_persons)
    if rem_c or rem_t or rem_v or channels == 0:
        raise CheckpointError(f"inconsistent sizes: temporal input {temporal_dim}, spatial input {spatial_dim}, "
                              f"{spatial_tokens} spatial tokens for {num_persons} persons")
    if kind == "dste":
        layers = {m[1] for k in backbone if (m := re.match(r"t_tr(\d*)\.", k))}
        mlp_hidden = _shape(backbone, "t_tr.CA.mlp.fc1.weight", 2)[0]
        mixer = _shape(backbone, "t_tr.DSA.wt1.weight", 2)[0]
        if mixer != frames:
            raise CheckpointError(f"temporal token mixer is {mixer}x{mixer} but the inputs imply {frames} frames")
    else:
        layers = {m[1] for k in backbone if (m := re.match(r"t_tr\.layers\.(\d+)\.", k))}
        mlp_hidden = _shape(backbone, "t_tr.layers.0.linear1.weight", 2)[0]
    if layout is None:
        if joints != 25:
            raise ConfigError(f"a {joints}-joint checkpoint: pass layout= ('coco17' for NTU-2D, 'uav17' for "
                              "UAV-Human)")
        layout = "ntu25"
    return USDRLConfig(layout=layout, num_joints=joints, num_persons=num_persons, in_channels=channels,
                       num_frames=frames, hidden_size=hidden, num_layers=len(layers), mlp_ratio=mlp_hidden / hidden,
                       encoder=kind, drop_path=0.1 if kind == "dste" else 0.0, **fields)


def load_reference_checkpoint(
    path: str | os.PathLike,
    *,
    layout: str | None = None,
    modality: str = "joint",
    num_persons: int = 2,
    num_heads: int = 1,
    alpha: float = 0.5,
    gap: int = 4,
    head: str = "classifier",
    **metadata,
) -> ReferenceCheckpoint:
    """Convert a reference ``.pth.tar`` checkpoint; sizes are inferred from tensor shapes.

    Args:
        path: the checkpoint file.
        layout: joint layout; inferred (``ntu25``) for 25 joints, required for 17.
        modality: the modality the checkpoint was trained on (not recorded in the file).
        num_persons, num_heads, alpha, gap: what the shapes cannot tell (reference values by default).
        head: where a downstream ``fc`` goes: ``"classifier"`` (clip level) or ``"frame"`` (detector).
        **metadata: config metadata, e.g. ``dataset="ntu60"``, ``protocol="xsub"``.
    """
    path = Path(path)
    if head not in ("classifier", "frame"):
        raise ConfigError(f"head must be 'classifier' or 'frame', got {head!r}")
    state, epoch = _read_state_dict(path)
    try:
        config, weights, projectors = _convert_state(state, head, layout, modality=modality, num_persons=num_persons,
                                                     num_heads=num_heads, alpha=alpha, gap=gap, **metadata)
    except (CheckpointError, ConfigError) as exc:
        raise type(exc)(f"{path}: {exc}") from None
    model = USDRL(config)
    model.load_weights(weights, source=str(path))
    logger.info("converted %s (%s, %s, epoch %s, %d projector tensors)", path, config.encoder.upper(), config.layout,
                epoch, len(projectors))
    return ReferenceCheckpoint(model.eval(), projectors, epoch)


def _convert_state(state: dict[str, torch.Tensor], head: str, layout: str | None, *, num_persons: int,
                   **fields) -> tuple[USDRLConfig, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(config, usdrl weights, projectors)`` of a reference state dict, the weights checked against a
    model of that config built on the meta device (nothing allocated) before any real one is."""
    backbone = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    if not backbone:
        raise CheckpointError("no 'backbone.' keys; not a USDRL reference checkpoint")
    kind = "dste" if any(".CA." in k for k in backbone) else "sttr"
    fc = {k.removeprefix("fc."): v for k, v in state.items() if k.startswith("fc.")}
    projectors = {}
    for key, value in state.items():
        prefix = key.split(".", 1)[0]
        if prefix in _PROJECTORS and "." in key:
            projectors[f"{_PROJECTORS[prefix]}.{key.split('.', 1)[1]}"] = value
        elif prefix not in ("backbone", "fc"):
            raise CheckpointError(f"unexpected key {key!r}")
    heads = {}
    if fc:
        classes = _shape(fc, "weight", 2)[0]
        heads = {"num_classes" if head == "classifier" else "num_frame_classes": classes}
    config = _infer_config(backbone, kind, num_persons, layout, **heads, **fields)
    if "tpe.pe" in backbone:
        table = backbone["tpe.pe"]
        if table.ndim != 3 or table.shape[1] < config.num_frames or table.shape[2] != config.hidden_size:
            raise CheckpointError(f"'tpe.pe' has shape {tuple(table.shape)}; expected (1, >= {config.num_frames}, "
                                  f"{config.hidden_size})")
        reference = table[0, : config.num_frames]
        if not torch.allclose(reference, sinusoid_table(reference.shape[0], config.hidden_size), atol=1e-5):
            raise CheckpointError("its temporal position table is not the standard sinusoid")
    weights = _map_backbone(backbone, kind)
    if fc:
        weights.update({f"{'head' if head == 'classifier' else 'frame_head'}.{k}": v for k, v in fc.items()})
    with torch.device("meta"):
        USDRL(config).check_weights(weights, source="the checkpoint")
    return config, weights, projectors


def convert_reference_checkpoint(path: str | os.PathLike, out_dir: str | os.PathLike, **kwargs) -> Path:
    """Convert ``path`` (see :func:`load_reference_checkpoint`) and write a ``save_pretrained`` folder."""
    return load_reference_checkpoint(path, **kwargs).save(out_dir)
