"""usdrl: USDRL, a foundation model for skeleton-based human action understanding."""

from ._version import __version__
from .config import PRESETS, USDRLConfig
from .errors import (
    CheckpointError,
    ConfigError,
    DataFormatError,
    InputError,
    MissingDependencyError,
    TrainingDivergedError,
    USDRLError,
    WeightsNotFoundError,
)
from .hub import PretrainedWeights, list_pretrained, register_pretrained
from .model import USDRL
from .skeleton import COCO17, NTU25, UAV17, SkeletonLayout, get_layout, list_layouts, register_layout
from .universal import UNIVERSAL, to_universal  # registers the universal layout

__all__ = [
    "COCO17",
    "NTU25",
    "PRESETS",
    "UAV17",
    "UNIVERSAL",
    "USDRL",
    "CheckpointError",
    "ConfigError",
    "DataFormatError",
    "InputError",
    "MissingDependencyError",
    "TrainingDivergedError",
    "PretrainedWeights",
    "SkeletonLayout",
    "USDRLConfig",
    "USDRLError",
    "WeightsNotFoundError",
    "__version__",
    "get_layout",
    "list_layouts",
    "list_pretrained",
    "register_layout",
    "register_pretrained",
    "to_universal",
]
