"""`USDRLConfig`: one flat, JSON-native description of a USDRL model.

Every size inside the model is derived from it: the temporal stream has ``num_frames``
tokens of width ``num_persons * num_joints * in_channels``; the spatial stream has
``num_persons * num_joints`` tokens of width ``num_frames * in_channels``.
"""

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError
from .skeleton import MODALITIES, get_layout

ENCODERS = ("dste", "sttr")

#: Named sizes. ``base`` is the reference architecture; the others are for CPU use.
PRESETS: dict[str, dict] = {
    "base": {"hidden_size": 1024, "num_heads": 1, "num_layers": 2},
    "small": {"hidden_size": 256, "num_heads": 4, "num_layers": 2},
    "tiny": {"hidden_size": 64, "num_heads": 2, "num_layers": 2},
}

_DEFAULT_MLP_RATIO = {"dste": 2.0, "sttr": 1.0}
_DEFAULT_DROP_PATH = {"dste": 0.1, "sttr": 0.0}
#: The ``version`` of the config format this library reads and writes.
CONFIG_VERSION = 1

# What each field must hold: "int", "real" (int or float, finite), "bool", "str" or "names" (a list of
# strings); "?" at the end also allows None. bool is never taken for an int or a real.
_FIELD_KINDS = {
    "layout": "str", "num_joints": "int?", "num_persons": "int", "in_channels": "int", "num_frames": "int",
    "hidden_size": "int", "num_heads": "int", "num_layers": "int", "mlp_ratio": "real?", "alpha": "real",
    "gap": "int", "drop_path": "real?", "encoder": "str", "modality": "str", "causal": "bool",
    "num_classes": "int", "num_frame_classes": "int", "class_names": "names?", "dataset": "str?",
    "protocol": "str?", "preprocessing": "str?", "description": "str?", "version": "int",
}
_KIND_WORDS = {"int": "an integer", "real": "a finite number", "bool": "true or false", "str": "a string",
               "names": "a list of strings"}


def _has_kind(value, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int)
    if kind == "real":
        return isinstance(value, int | float) and math.isfinite(value)
    if kind == "str":
        return isinstance(value, str)
    return isinstance(value, list | tuple) and all(isinstance(name, str) for name in value)


def _check_field_kinds(config) -> None:
    """Raise ConfigError naming the first field whose value is not of its kind (see ``_FIELD_KINDS``)."""
    for name, kind in _FIELD_KINDS.items():
        value = getattr(config, name)
        optional = kind.endswith("?")
        kind = kind.rstrip("?")
        if not ((optional and value is None) or _has_kind(value, kind)):
            words = _KIND_WORDS[kind] + (" or null" if optional else "")
            raise ConfigError(f"{name} must be {words}, got {value!r} ({type(value).__name__})")
    if config.version != CONFIG_VERSION:
        raise ConfigError(f"version is {config.version!r}; this usdrl reads config version {CONFIG_VERSION} "
                          "(a newer usdrl wrote it?)")


@dataclass
class USDRLConfig:
    """Configuration of a USDRL encoder and its heads.

    The architecture fields come first, then the heads, then metadata that ``config.json``
    carries for users but the model does not use.

    Attributes:
        layout: joint layout name (``ntu25``, ``coco17``, ``uav17`` or a registered one).
        num_joints: joints per person V; defaults to the layout's count and must match it.
        num_persons: persons per clip M.
        in_channels: channels per joint C (3 for xyz, or xy + score/zero for 2D data).
        num_frames: frames per clip T; the temporal token count.
        hidden_size: width H of both streams; the global feature has width 2H.
        num_heads: attention heads.
        num_layers: layers per stream.
        mlp_ratio: MLP width as a multiple of H; ``None`` picks the encoder's reference
            value (2 for DSTE, 1 for STTR).
        alpha: DST layer mix ``alpha * CA + (1 - alpha) * DSA``.
        gap: DSA anchor spacing (tokens ``j % gap == 0`` keep their unshifted value).
        drop_path: stochastic-depth rate on residual branches (training only); ``None`` picks
            the encoder's reference value (0.1 for DSTE, 0 for STTR, which has none).
        encoder: ``"dste"`` or the ``"sttr"`` plain-transformer baseline.
        modality: ``"joint"``, ``"motion"`` or ``"bone"`` (one modality), or ``"multi"``:
            modality-specific embeddings fused early into one shared encoder (the
            multi-modal MPCT model). The model takes joint coordinates and computes its
            modalities itself.
        causal: temporal attention and token mixing see only frames <= t.
        num_classes: classes of the clip-level head (0: no head).
        num_frame_classes: classes of the frame-wise head (0: no head).
        class_names: optional names of the clip-level classes.
        dataset: metadata: the training data, e.g. ``ntu60``.
        protocol: metadata: how the weights were trained or evaluated, e.g. ``xsub``.
        preprocessing: metadata: the preprocessing the inputs need.
        description: metadata: free text for the model card.
        version: format version of the config.
    """

    layout: str = "ntu25"
    num_joints: int | None = None
    num_persons: int = 2
    in_channels: int = 3
    num_frames: int = 64
    hidden_size: int = 1024
    num_heads: int = 1
    num_layers: int = 2
    mlp_ratio: float | None = None
    alpha: float = 0.5
    gap: int = 4
    drop_path: float | None = None
    encoder: str = "dste"
    modality: str = "joint"
    causal: bool = False
    num_classes: int = 0
    num_frame_classes: int = 0
    class_names: list[str] | None = None
    dataset: str | None = None
    protocol: str | None = None
    preprocessing: str | None = None
    description: str | None = None
    version: int = field(default=CONFIG_VERSION)

    def __post_init__(self):
        _check_field_kinds(self)
        layout = get_layout(self.layout)
        if self.num_joints is None:
            self.num_joints = layout.num_joints
        if self.num_joints != layout.num_joints:
            raise ConfigError(
                f"layout {self.layout!r} has {layout.num_joints} joints, but num_joints={self.num_joints}")
        if self.encoder not in ENCODERS:
            raise ConfigError(f"unknown encoder {self.encoder!r}; expected one of {', '.join(ENCODERS)}")
        if self.modality not in (*MODALITIES, "multi"):
            raise ConfigError(f"unknown modality {self.modality!r}; expected one of {', '.join(MODALITIES)} "
                              "or multi")
        if self.mlp_ratio is None:
            self.mlp_ratio = _DEFAULT_MLP_RATIO[self.encoder]
        if self.drop_path is None:
            self.drop_path = _DEFAULT_DROP_PATH[self.encoder]
        for name in ("num_persons", "in_channels", "num_frames", "hidden_size", "num_heads", "num_layers", "gap"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("num_classes", "num_frame_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must lie in [0, 1], got {self.alpha}")
        if not 0.0 <= self.drop_path < 1.0:
            raise ConfigError(f"drop_path must lie in [0, 1), got {self.drop_path}")
        if self.mlp_ratio <= 0 or not 1 <= self.hidden_size * self.mlp_ratio < 2**31:
            raise ConfigError(f"mlp_ratio must be positive with an MLP width hidden_size x mlp_ratio in "
                              f"[1, 2**31), got {self.mlp_ratio}")
        if self.class_names is not None:
            self.class_names = list(self.class_names)
            if len(self.class_names) != self.num_classes:
                raise ConfigError(
                    f"class_names has {len(self.class_names)} names but num_classes={self.num_classes}")

    # ---- derived sizes -------------------------------------------------------------
    @property
    def temporal_tokens(self) -> int:
        """Tokens of the temporal stream: one per frame, T."""
        return self.num_frames

    @property
    def spatial_tokens(self) -> int:
        """Tokens of the spatial stream: one per joint of each person, M*V."""
        return self.num_persons * self.num_joints

    @property
    def temporal_input_dim(self) -> int:
        """Width of a temporal token: one flattened frame, M*V*C."""
        return self.num_persons * self.num_joints * self.in_channels

    @property
    def spatial_input_dim(self) -> int:
        """Width of a spatial token: one joint trajectory, T*C."""
        return self.num_frames * self.in_channels

    @property
    def views(self) -> tuple[str, ...]:
        """The inputs the encoder can embed: the modality, or for ``multi`` each modality and ``fused``."""
        return (*MODALITIES, "fused") if self.modality == "multi" else (self.modality,)

    @property
    def default_view(self) -> str:
        """The view behind :meth:`USDRL.encode` and the heads: the modality, or ``fused``."""
        return "fused" if self.modality == "multi" else self.modality

    @property
    def mlp_hidden_size(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    @property
    def num_features(self) -> int:
        """Width of the global feature ``[max_t y_t ; max_s y_s]``: 2H."""
        return 2 * self.hidden_size

    @property
    def num_dense_features(self) -> int:
        """Width of the per-frame features: 2H, or H in causal mode (temporal stream only)."""
        return self.hidden_size if self.causal else 2 * self.hidden_size

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """Shape of one clip, ``(C, T, V, M)``."""
        return (self.in_channels, self.num_frames, self.num_joints, self.num_persons)

    # ---- construction and serialisation ---------------------------------------------
    @classmethod
    def from_preset(cls, name: str, **overrides) -> "USDRLConfig":
        """A config from a named size preset (``base``, ``small``, ``tiny``) plus overrides."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls, data: dict) -> "USDRLConfig":
        """Build a config from a dict, refusing keys that are not config fields."""
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; known keys: {sorted(known)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"invalid config: {exc}") from None

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "USDRLConfig":
        """Read a ``config.json``: UTF-8 JSON (no ``NaN`` / ``Infinity``, no repeated keys), every field
        of its kind. Raises ConfigError naming the file and the field or the line."""

        def no_constant(name):
            raise ValueError(f"{name} is not a JSON number")

        def unique_keys(pairs):
            keys = [key for key, _ in pairs]
            repeated = sorted({key for key in keys if keys.count(key) > 1})
            if repeated:
                raise ValueError(f"repeated keys {repeated}")
            return dict(pairs)

        try:
            text = Path(path).read_bytes().decode("utf-8")
            data = json.loads(text, parse_constant=no_constant, object_pairs_hook=unique_keys)
            return cls.from_dict(data)
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
        except (ValueError, ConfigError) as exc:  # json.JSONDecodeError is a ValueError
            raise ConfigError(f"{path}: {exc}") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **changes) -> "USDRLConfig":
        """A copy with some fields changed (validated like a new config)."""
        return self.from_dict({**self.to_dict(), **changes})
