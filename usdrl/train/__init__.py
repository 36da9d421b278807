"""Self-supervised pretraining: the trainers (:class:`Pretrainer`, :class:`CrossFormatPretrainer`), the named
recipes, batched augmentations, MG-FD losses and projectors.

Not imported by ``import usdrl``; import ``usdrl.train`` (or its modules) explicitly.
"""

from .augment import AugmentConfig, make_views  # not ``augment``: it would hide the module
from .cross_format import CrossFormatConfig, CrossFormatPretrainer
from .losses import LossConfig, MGFDLoss
from .pretrain import PretrainConfig, Pretrainer
from .projectors import Projectors
from .recipes import RECIPES, PretrainRecipe, get_recipe

__all__ = [
    "RECIPES",
    "AugmentConfig",
    "CrossFormatConfig",
    "CrossFormatPretrainer",
    "LossConfig",
    "MGFDLoss",
    "PretrainConfig",
    "PretrainRecipe",
    "Pretrainer",
    "Projectors",
    "get_recipe",
    "make_views",
]
