"""`USDRL`: the pretrained encoder with its task heads, hub I/O and inference helpers.

The model takes **joint coordinates** ``(N, C, T, V, M)`` (batch, channels, frames,
joints, persons) and computes its own modality (joint, motion or bone) from them.
"""

import copy
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import ModelCard, ModelCardData, PyTorchModelHubMixin, get_token
from huggingface_hub.errors import LocalTokenNotFoundError
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from ._io import atomic_write, atomic_write_text
from ._version import __version__
from .config import USDRLConfig
from .encoder import Encoder, dense_feature, global_feature
from .errors import CheckpointError, ConfigError, InputError
from .heads import ClassifierHead, FrameClassifierHead
from .hub import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    check_config_sizes,
    load_weights_file,
    read_weights_header,
    resolve_model_files,
)
from .precision import call_work, resolve_device, resolve_precision
from .skeleton import SkeletonLayout

logger = logging.getLogger(__name__)


def _as_config(config: USDRLConfig | dict | None, overrides: dict) -> USDRLConfig:
    if config is None:
        return USDRLConfig.from_dict(overrides)
    if isinstance(config, dict):
        return USDRLConfig.from_dict({**config, **overrides})
    if isinstance(config, USDRLConfig):
        return config.replace(**overrides)
    raise ConfigError(f"config must be a USDRLConfig or a dict, got {type(config).__name__}")


# The model card written by save_pretrained / push_to_hub (a Jinja template; see USDRL.generate_model_card).
_MODEL_CARD = """---
{{ card_data }}
---

# {{ repo_id or "USDRL " ~ config.encoder | upper ~ " model" }}

A [USDRL]({{ paper_url }}) model for skeleton-based action understanding, for the `usdrl`
Python library (not on PyPI yet: `pip install .` in a checkout of its repository, or `pip install usdrl`
once it is published).
{%- if config.description %}

{{ config.description }}
{%- endif %}

| | |
|---|---|
| Encoder | {{ config.encoder | upper }}, hidden size {{ config.hidden_size }}, {{ config.num_layers }} layers \
per stream, {{ config.num_heads }} attention head(s) |
| Input | joint coordinates `(N, {{ config.input_shape | join(", ") }})`: batch, channels, frames, joints, persons |
| Layout | `{{ config.layout }}` ({{ config.num_joints }} joints), {{ config.num_frames }} frames, \
{{ config.num_persons }} person(s) |
| Modality | {{ config.modality }} |
| Training data | {{ config.dataset or "not recorded" }}\
{% if config.protocol %}, protocol {{ config.protocol }}{% endif %} |
| Heads | {{ heads }} |

## Usage

```python
import torch
from usdrl import USDRL

model = USDRL.from_pretrained("{{ repo_id or "path/to/this/folder" }}")
clips = torch.randn(8, {{ config.input_shape | join(", ") }})  # joint coordinates (N, C, T, V, M)
embeddings = model.encode(clips)  # (8, {{ config.num_features }})
{%- if config.num_classes %}
predicted = model(clips).argmax(-1)  # (8,) class indices
{%- endif %}
```
"""


class USDRL(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="usdrl",
    tags=["skeleton", "action-recognition", "self-supervised", "usdrl"],
    paper_url="https://arxiv.org/abs/2508.12586",
    license="mit",
    model_card_template=_MODEL_CARD,
):
    """USDRL encoder (DSTE or STTR) with optional clip-level and frame-wise heads.

    Args:
        config: a :class:`USDRLConfig`, a dict of its fields, or ``None`` for the defaults.
        **overrides: config fields to change, e.g. ``USDRL(USDRLConfig.from_preset("tiny"), num_classes=10)``.

    Inputs are joint coordinates ``(N, C, T, V, M)`` matching ``config.input_shape``.
    """

    def __init__(self, config: USDRLConfig | dict | None = None, **overrides):
        super().__init__()
        self.config = _as_config(config, overrides)
        self.encoder = Encoder(self.config)
        self.head = ClassifierHead(self.num_features, self.config.num_classes) if self.config.num_classes else None
        self.frame_head = (FrameClassifierHead(self.num_dense_features, self.config.num_frame_classes)
                           if self.config.num_frame_classes else None)

    # ---- sizes -----------------------------------------------------------------------
    @property
    def layout(self) -> SkeletonLayout:
        """The joint layout of the inputs (``config.layout``)."""
        return self.encoder.layout

    @property
    def num_features(self) -> int:
        """Width of :meth:`encode`'s embeddings (2H)."""
        return self.config.num_features

    @property
    def num_dense_features(self) -> int:
        """Width D of :meth:`dense_features` (2H; H in causal mode)."""
        return self.config.num_dense_features

    # ---- heads -----------------------------------------------------------------------
    def reset_classifier(self, num_classes: int, class_names: list[str] | None = None) -> None:
        """Replace the clip-level head by a freshly initialised one (0 removes it)."""
        self.config = self.config.replace(num_classes=num_classes, class_names=class_names)
        self.head = ClassifierHead(self.num_features, num_classes).to(self._device()) if num_classes else None

    def reset_frame_classifier(self, num_classes: int) -> None:
        """Replace the frame-wise head by a freshly initialised one (0 removes it)."""
        self.config = self.config.replace(num_frame_classes=num_classes)
        self.frame_head = (FrameClassifierHead(self.num_dense_features, num_classes).to(self._device())
                           if num_classes else None)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute activations in the backward pass instead of storing them (a DST layer's CA
        and DSA branches one at a time; an STTR layer whole): less memory, about a third more
        compute, the same gradients."""
        for stream in (self.encoder.temporal, self.encoder.spatial):
            for layer in stream.layers:
                layer.grad_checkpointing = enable

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    # ---- forward passes (training use) ------------------------------------------------
    def check_input(self, x: torch.Tensor, allow_single: bool = False) -> None:
        """Raise :class:`InputError` unless ``x`` is a tensor or numpy array of real numbers shaped as a
        batch ``(N, C, T, V, M)`` this model takes (or, with ``allow_single``, one clip ``(C, T, V, M)``)."""
        if not isinstance(x, torch.Tensor | np.ndarray):
            raise InputError(f"expected joint coordinates as a torch.Tensor or numpy array (N, C, T, V, M), "
                             f"got {type(x).__name__}")
        if isinstance(x, torch.Tensor):
            real = x.dtype != torch.bool and not x.is_complex()
        else:
            real = x.dtype.kind in "fiu"
        if not real:
            raise InputError(f"expected real-valued coordinates, got dtype {x.dtype}")
        expected = self.config.input_shape
        got = tuple(x.shape)
        if (len(got) == 5 and got[1:] == expected) or (allow_single and got == expected):
            return
        dims = got[1:] if len(got) == 5 else got if allow_single and len(got) == 4 else None
        shown = "(N, " + ", ".join(map(str, expected)) + ")"
        message = f"expected {shown} for layout {self.config.layout}, got {got}"
        if dims is None:
            message += "; the model takes a batch (N, C, T, V, M): channels, frames, joints, persons"
            if allow_single:
                message += ", or one clip (C, T, V, M)"
        elif sorted(dims) == sorted(expected):
            message += "; the axes look permuted: the order is (N, C, T, V, M): channels, frames, joints, persons"
        elif dims[1] != expected[1] and dims[:1] + dims[2:] == expected[:1] + expected[2:]:
            message += f"; resample each clip to {expected[1]} frames"
        elif dims[2] != expected[2]:
            message += f"; layout {self.config.layout} has {expected[2]} joints"
        elif dims[3] != expected[3]:
            message += f"; the model takes {expected[3]} person slots (zero-fill absent persons)"
        raise InputError(message)

    def forward_features(self, x: torch.Tensor, view: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Token features ``(y_t (N, T, H), y_s (N, M*V, H))`` of joint coordinates ``x``.

        ``view`` picks the input of a multi-modal model (``joint``, ``motion``, ``bone`` or
        ``fused``; default ``fused``); a single-modality model has only its own modality.
        ``x`` may be a tensor or numpy array of any real dtype: it is checked as in :meth:`encode`
        (shape, finite values) and converted to the model's device and dtype.
        """
        self.check_input(x)
        parameter = next(self.parameters())
        return self.encoder(self._prepare_batch(x, 0, parameter.device, parameter.dtype), view)

    def forward_head(self, features: tuple[torch.Tensor, torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        """The clip-level output of :meth:`forward_features`' tokens (timm's contract).

        The pooling lives here alone: the global feature ``[max_t y_t ; max_s y_s]`` ``(N, 2H)``
        (``pre_logits=True``, or a model without a head), else the head's logits ``(N, num_classes)``.
        """
        pooled = global_feature(*features)
        return pooled if pre_logits or self.head is None else self.head(pooled)

    def get_classifier(self) -> nn.Module:
        """The clip-level head (``nn.Identity()`` when there is none), as timm models answer."""
        return self.head if self.head is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)``, or the global features ``(N, 2H)`` when there is no head."""
        return self.forward_head(self.forward_features(x))

    def forward_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Frame logits ``(N, T, num_frame_classes)``, or dense features ``(N, T, D)`` without a frame head."""
        dense = dense_feature(*self.forward_features(x), causal=self.config.causal)
        return dense if self.frame_head is None else self.frame_head(dense)

    # ---- inference helpers ------------------------------------------------------------
    def encode(self, x, *, batch_size: int = 64, device=None, normalize: bool = False,
               convert_to_numpy: bool = False, show_progress_bar: bool | None = None, dtype=None):
        """One embedding per clip: the global feature ``[max_t y_t ; max_s y_s]``.

        Args:
            x: joint coordinates, a tensor or array ``(N, C, T, V, M)`` or one clip ``(C, T, V, M)``
                (a numpy memmap is read batch by batch).
            batch_size: clips per forward pass.
            device: where to run (the model is moved there); default: where the model is.
            normalize: L2-normalise each embedding.
            convert_to_numpy: return a numpy array instead of a tensor.
            show_progress_bar: a tqdm bar; ``None`` shows it when this logger is at INFO or below.
            dtype: the compute precision (:func:`usdrl.precision.resolve_precision`). ``"auto"``, the
                recommended choice, takes the fastest that is native where the model runs: bf16 on a
                GPU with bf16 or a CPU with AVX512-BF16 / AMX (there for batches large enough to pay
                for the casts, :data:`usdrl.precision.CPU_BF16_MIN_WORK`), fp16 on an older GPU, fp32
                otherwise.
                Or name one: ``"fp32"`` (default, also ``None``), ``"tf32"`` (CUDA), ``"bf16"`` /
                ``torch.bfloat16``, ``"fp16"`` / ``torch.float16`` (autocast), ``"int8"`` (CPU: runs
                :meth:`quantize`'s copy, made at each call). The output is always float32.

        Returns:
            ``(N, 2H)`` float32 on the CPU (``(2H,)`` for a single clip).
        """
        def embed(encoder, batch):
            features = self.forward_head(encoder(batch), pre_logits=True)
            return torch.nn.functional.normalize(features.float(), dim=-1) if normalize else features
        return self._run_batched(x, embed, batch_size, device, dtype, show_progress_bar, convert_to_numpy)

    def encode_keypoints(self, keypoints, format: str, *, scores=None, has_scores: bool | None = None,
                         image_size: tuple[int, int] | None = None, **options):
        """:meth:`encode` for keypoints of any registered format, 2D or 3D, on a universal model.

        ``keypoints (M, T, V, C)`` or ``(N, M, T, V, C)`` of ``format`` (persons, frames, joints,
        channels), any number of frames and up to ``config.num_persons`` persons, become the universal
        input (:func:`usdrl.universal.model_input`; ``image_size`` for normalised formats as there);
        ``options`` as in :meth:`encode`. Returns
        ``(2H,)`` or ``(N, 2H)`` embeddings in one space for every format.
        """
        from .universal import check_universal, model_input

        check_universal(self.config)
        data = model_input(keypoints, format, num_frames=self.config.num_frames,
                           num_persons=self.config.num_persons, scores=scores, has_scores=has_scores,
                           image_size=image_size)
        return self.encode(data, **options)

    def dense_features(self, x, *, batch_size: int = 64, device=None, convert_to_numpy: bool = False,
                       show_progress_bar: bool | None = None, dtype=None):
        """Per-frame features ``(N, T, D)`` (``(T, D)`` for a single clip), float32 on the CPU.

        Frame ``i``'s feature is ``[y_t[i] ; s_i]`` (D = 2H): ``y_t[i]`` is the temporal
        stream's output token for frame ``i`` and ``s_i`` is position ``i`` of the spatial
        stream's output tokens average-pooled (adaptively, along the token axis) from ``M*V``
        to ``T`` positions. ``s_i`` summarises a group of joints over the whole clip, not
        frame ``i`` (this is the reference detection path, kept for checkpoint fidelity).
        In causal mode D = H and the feature is ``y_t[i]`` alone, which depends only on
        frames ``<= i``. Arguments as in :meth:`encode`.
        """
        def dense(encoder, batch):
            return dense_feature(*encoder(batch), causal=self.config.causal)
        return self._run_batched(x, dense, batch_size, device, dtype, show_progress_bar, convert_to_numpy)

    def _run_batched(self, x, fn: Callable[[Encoder, torch.Tensor], torch.Tensor], batch_size, device, dtype,
                     show_progress_bar, convert_to_numpy):
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.check_input(x, allow_single=True)
        single = x.ndim == len(self.config.input_shape)
        data = x[None] if single else x
        if len(data) == 0:
            raise InputError("got an empty batch (N = 0)")
        device = resolve_device(device) if device is not None else self._device()
        precision = resolve_precision(dtype, device, work=self.call_work(min(batch_size, len(data))))
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() <= logging.INFO
        self.to(device)
        encoder = self.quantize().encoder if precision.name == "int8" else self.encoder
        was_training = self.training
        self.eval()
        outputs = []
        try:
            with torch.inference_mode(), precision.context():
                for start in tqdm(range(0, len(data), batch_size), disable=not show_progress_bar, unit="batch"):
                    batch = self._prepare_batch(data[start:start + batch_size], start, device, torch.float32)
                    outputs.append(fn(encoder, batch).float().cpu())
        finally:
            self.train(was_training)
        result = torch.cat(outputs)
        if single:
            result = result[0]
        return result.numpy() if convert_to_numpy else result

    def call_work(self, clips: int) -> int:
        """The size of the matrix products of one forward pass over ``clips`` clips
        (:func:`usdrl.precision.call_work`), which decides whether ``auto`` uses bf16 on a CPU."""
        config = self.config
        return call_work(clips, config.num_frames + config.spatial_tokens, config.hidden_size)

    def quantize(self) -> "USDRL":
        """A copy for CPU inference with dynamic int8 quantization of its linear layers.

        ``torch.ao.quantization.quantize_dynamic`` replaces the ``nn.Linear`` layers of the DST
        (or transformer) layers and the heads (attention projections, MLPs, point-wise
        projections) by ones that store int8 weights and quantize their input on the fly
        (per tensor). The stream embeddings stay float32: their input is raw coordinates,
        whose per-tensor quantization costs accuracy (worst-clip embedding cosine to fp32 0.996
        instead of 0.9998 on the embedded model), for little time. LayerNorms, token mixing and softmax
        stay float32 too; inputs and outputs are float32, so ``encode``, ``dense_features`` and
        ``forward`` work as before, on the CPU only. This model is left as it was. Speed and
        agreement with fp32: ``docs/benchmarks.md``.
        """
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        model = copy.deepcopy(self).to(device="cpu", dtype=torch.float32).eval()
        float_layers = {f"encoder.{name}": None for name, module in model.encoder.named_modules()
                        if ".embed" in f".{name}" and isinstance(module, nn.Linear)}
        with warnings.catch_warnings():
            # torch.ao.quantization announces its move to torchao; the eager API still works
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
            return quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig, **float_layers}, dtype=torch.qint8,
                                    inplace=True)

    @staticmethod
    def _prepare_batch(batch, offset: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """A batch that passed :meth:`check_input` as a ``dtype`` tensor on ``device``; InputError naming
        the clips (``offset`` + index) that hold NaN or infinite values. An array is read as float64 (exactly,
        for floats and for integers below 2**53; in native byte order) and rounded once to ``dtype``, as the
        same values in a tensor are."""
        if isinstance(batch, np.ndarray):
            batch = torch.from_numpy(np.array(batch, dtype=np.float64))
        tensor = batch.to(device=device, dtype=dtype)
        if tensor.device.type == "meta" or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return tensor  # no values to check (or a graph being recorded)
        finite = torch.isfinite(tensor).flatten(1).all(dim=1)
        if not bool(finite.all()):
            bad = (offset + torch.nonzero(~finite).flatten()).tolist()
            raise InputError(f"input contains NaN or infinite values in clip(s) {bad[:10]}")
        return tensor

    # ---- saving and loading -----------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, *, config: dict | None = None,
                        push_to_hub: bool = False, repo_id: str | None = None,
                        model_card_kwargs: dict | None = None, **push_to_hub_kwargs):
        """Write ``model.safetensors`` and ``config.json`` (each atomically) and a model card.

        An existing folder is updated file by file: a crash leaves each file either old or
        new, never half-written. With ``push_to_hub=True`` the folder is then uploaded.
        """
        if config is not None:
            raise ConfigError("the model's own config is saved; change it with model.config / reset_classifier")
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        self._save_pretrained(folder)
        if not (folder / "README.md").exists():
            self.generate_model_card(**(model_card_kwargs or {})).save(folder / "README.md")
        if push_to_hub:
            return self.push_to_hub(repo_id or folder.name, model_card_kwargs=model_card_kwargs,
                                    **push_to_hub_kwargs)
        return None

    def export_onnx(self, path: str | os.PathLike, **kwargs):
        """Write an ONNX file: input ``skeleton (N, C, T, V, M)`` with dynamic N, output ``embedding``
        ``(N, 2H)``, ``logits`` ``(N, num_classes)`` or ``frames`` ``(N, T, num_frame_classes)``.

        Keyword arguments as in :func:`usdrl.export.export_onnx` (``output``, ``opset``, ``batch_size``,
        ``check``, ``rtol``, ``dynamo``); returns its :class:`usdrl.export.OnnxExport` report.
        """
        from .export import export_onnx

        return export_onnx(self, path, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        metadata = {"format": "pt", "usdrl_version": __version__}
        atomic_write(save_directory / WEIGHTS_FILE, lambda tmp: save_file(state, tmp, metadata=metadata))
        atomic_write_text(save_directory / CONFIG_FILE, self.config.to_json())

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        force_download: bool = False,
        map_location: str | torch.device = "cpu",
        **overrides,
    ) -> "USDRL":
        """Load a model from a folder, a name in :func:`usdrl.list_pretrained` or a Hub repo ``org/name``.

        Loading is strict: ``config.json`` must hold every field with its type, its sizes must
        match the weights' shapes (checked from the safetensors header before the model is
        built; ConfigError naming the field), and every weight must be a finite float tensor
        in an intact file (CheckpointError naming the file). A head the config promises must
        be in the file, unless ``overrides`` set its size: ``num_classes=0`` loads without it,
        ``num_classes=10`` gives a freshly initialised head (logged). The model is returned
        in ``eval()`` mode.
        """
        config_file, weights_file = resolve_model_files(
            name_or_path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
            token=token, force_download=force_download)
        config = USDRLConfig.from_json_file(config_file)
        chosen_heads = tuple(field for field in ("num_classes", "num_frame_classes") if field in overrides)
        check_config_sizes(config, read_weights_header(weights_file), config_file, weights_file, chosen_heads)
        model = cls(config, **overrides)
        model.load_weights(load_weights_file(weights_file), source=str(weights_file))
        return model.to(map_location).eval()

    def load_weights(self, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Load ``state`` strictly into the encoder; heads that do not fit are re-initialised (logged)."""
        self.load_state_dict(self.check_weights(state, source), strict=True)

    def check_weights(self, state: dict[str, torch.Tensor], source: str = "state dict") -> dict[str, torch.Tensor]:
        """The state :meth:`load_weights` loads: ``state`` with heads that do not fit replaced by this
        model's (logged). Raises a one-line CheckpointError naming missing, unexpected and misshapen
        weights. Only shapes are read, so a model on the meta device checks a state before a real
        model is built."""
        state = dict(state)
        own = self.state_dict()
        for prefix, head in (("head.", self.head), ("frame_head.", self.frame_head)):
            file_keys = [k for k in state if k.startswith(prefix)]
            if head is None:
                if file_keys:
                    logger.info("%s: ignoring the %s weights (this model has no such head)", source, prefix[:-1])
                for k in file_keys:
                    del state[k]
                continue
            if file_keys and all(k in own and state[k].shape == own[k].shape for k in file_keys):
                continue
            had = f"shape {tuple(state[prefix + 'weight'].shape)}" if prefix + "weight" in state else "none"
            logger.warning("%s: %s re-initialised for %d classes (checkpoint had %s); train it before use",
                           source, prefix[:-1], head.out_features, had)
            for k in file_keys:
                del state[k]
            state.update({k: v for k, v in own.items() if k.startswith(prefix)})
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        mismatched = [f"{k}: expected {tuple(own[k].shape)}, got {tuple(state[k].shape)}"
                      for k in sorted(set(own) & set(state)) if own[k].shape != state[k].shape]
        if missing or unexpected or mismatched:
            parts = []
            for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
                if items:
                    more = f" ... and {len(items) - 8} more" if len(items) > 8 else ""
                    parts.append(f"{title}: {', '.join(items[:8])}{more}")
            raise CheckpointError(f"{source} does not match this model ({self.config.encoder}, layout "
                                  f"{self.config.layout}, hidden {self.config.hidden_size}): " + "; ".join(parts))
        return state

    # ---- publishing -------------------------------------------------------------------
    def push_to_hub(self, repo_id: str, *, token: str | None = None, model_card_kwargs: dict | None = None,
                    **kwargs):
        """Upload ``config.json``, ``model.safetensors`` and a model card to the Hub repo ``repo_id`` as one
        commit, creating the repo if needed; returns the commit info (``.oid`` is the new revision).

        Needs a write token: ``token=``, the ``HF_TOKEN`` variable or ``hf auth login``. Other keyword
        arguments (``commit_message``, ``private``, ``branch``, ...) as in ``huggingface_hub``'s mixin.
        """
        if token is None and get_token() is None:
            raise LocalTokenNotFoundError(f"pushing to the Hub repo {repo_id!r} needs a write token: pass "
                                          "token=..., set HF_TOKEN or log in with `hf auth login`")
        card = {"repo_id": repo_id, **(model_card_kwargs or {})}
        return super().push_to_hub(repo_id, token=token, model_card_kwargs=card, **kwargs)

    def generate_model_card(self, *args, **kwargs) -> ModelCard:
        """The model card: front matter with ``library_name: usdrl``, the licence and tags (with the encoder
        and training dataset), then the config (layout, frames, modality, dataset, protocol, heads) and a
        usage snippet loading ``repo_id`` (a keyword argument; push_to_hub passes it)."""
        info = self._hub_mixin_info
        data = ModelCardData(**info.model_card_data.to_dict())
        data.tags = sorted(set(data.tags or []) | {self.config.encoder, self.config.dataset} - {None})
        heads = [f"{kind} ({n} classes)" for kind, n in (("clip classifier", self.config.num_classes),
                                                         ("frame-wise", self.config.num_frame_classes)) if n]
        return ModelCard.from_template(data, template_str=info.model_card_template, paper_url=info.paper_url,
                                       config=self.config, heads=", ".join(heads) or "none: an encoder",
                                       **{"repo_id": None, **kwargs})
