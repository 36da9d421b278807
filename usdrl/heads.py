"""Task heads on top of the encoder's features."""

from torch import nn


class _LinearHead(nn.Linear):
    """A linear layer initialised as the reference's task heads: weights N(0, 0.01), zero bias."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__(in_features, num_classes)
        nn.init.normal_(self.weight, std=0.01)
        nn.init.zeros_(self.bias)


class ClassifierHead(_LinearHead):
    """Clip-level classifier: global features ``(n, 2H)`` to logits ``(n, num_classes)``."""


class FrameClassifierHead(_LinearHead):
    """Frame-wise classifier: dense features ``(n, t, D)`` to logits ``(n, t, num_classes)``.

    The same linear map is applied to every frame (as the reference detector's ``fc``).
    """
