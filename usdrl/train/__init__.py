"""Self-supervised pretraining: batched augmentations, MG-FD losses and projectors.

Not imported by ``import usdrl``; import ``usdrl.train`` (or its modules) explicitly.
"""

from .augment import AugmentConfig, make_views
from .losses import LossConfig, MGFDLoss
from .projectors import Projectors

__all__ = ["AugmentConfig", "LossConfig", "MGFDLoss", "Projectors", "make_views"]
