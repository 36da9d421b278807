"""MG-FD losses (spec §4.3-§4.6): invariance, variance / covariance and cross-correlation.

Embeddings of ``V`` views of a batch are stacked as ``(V, N, D)``. Every loss is computed
in float32 or better (matrix products with autocast off), whatever the embeddings' dtype.
The D x D covariance and cross-correlation matrices are never formed: their squared sums
come from the N x N Gram matrices (``||A^T B||_F^2 = <A A^T, B B^T>_F``), the same values
(up to rounding) at a fraction of the cost when N << D, as in pretraining.
"""

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError, InputError
from .distributed import gather_batch

DOMAINS = ("temporal", "spatial", "instance")


@dataclass
class LossConfig:
    """Weights of the MG-FD loss (JSON-native; defaults are the TPAMI reference).

    ``loss = sum_d w_d * (sim_weight * S_d + vac_weight * V_d + xcorr_weight * X_d)`` over the
    domains d (temporal, spatial, instance) with weights ``w_d``, where ``S_d`` is
    :func:`invariance_loss`, ``V_d`` :func:`variance_covariance_loss` and ``X_d``
    :func:`multi_view_cross_correlation`. ``xcorr_weight=1e-3`` reproduces the AAAI release.

    Attributes:
        sim_weight, vac_weight, xcorr_weight: term weights.
        std_weight, cov_weight: ``vac = std_weight * L_std + cov_weight * L_cov``.
        variance_eps: added to the variance before the square root.
        xcorr_off_diagonal: weight of the off-diagonal cross-correlation terms.
        temporal_weight, spatial_weight, instance_weight: domain weights.
    """

    sim_weight: float = 5.0
    vac_weight: float = 1.0
    xcorr_weight: float = 0.0
    std_weight: float = 5.0
    cov_weight: float = 1.0
    variance_eps: float = 1e-4
    xcorr_off_diagonal: float = 0.005
    temporal_weight: float = 0.5
    spatial_weight: float = 0.5
    instance_weight: float = 1.0

    def __post_init__(self):
        for name, value in vars(self).items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name} must be a non-negative number, got {value!r}")

    def domain_weight(self, domain: str) -> float:
        return getattr(self, f"{domain}_weight")


def _stack(views: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Views as one ``(V, N, D)`` tensor, at least float32."""
    views = views if isinstance(views, torch.Tensor) else torch.stack(list(views))
    if views.ndim == 2:
        views = views[None]
    if views.ndim != 3:
        raise InputError(f"expected embeddings (N, D) or views (V, N, D), got shape {tuple(views.shape)}")
    return views.to(torch.promote_types(views.dtype, torch.float32))


def _centred(z: torch.Tensor) -> torch.Tensor:
    if z.shape[-2] < 2:
        raise InputError(f"variance and covariance need a batch of at least 2, got shape {tuple(z.shape)}")
    return z - z.mean(dim=-2, keepdim=True)


def _squared_cross_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sum_ij (a^T b)_ij^2`` per view of ``(V, N, D)`` inputs, via the ``(V, N, N)`` Gram matrices."""
    with torch.autocast(a.device.type, enabled=False):
        return (a @ a.transpose(1, 2) * (b @ b.transpose(1, 2))).sum(dim=(1, 2))


def invariance_loss(views: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """The anchor/centre invariance term (§4.3) of ``V >= 2`` views ``(V, N, D)``.

    The last view is the anchor, the others form the centre ``c`` (their mean, not detached):
    ``sum_{k < V-1} MSE(z_k, z_{V-1}) + MSE(z_k, c)``, each MSE a mean over batch and dimensions.
    """
    z = _stack(views)
    if z.shape[0] < 2:
        raise InputError(f"invariance needs at least 2 views, got {z.shape[0]}")
    others, anchor = z[:-1], z[-1]
    centre = others.mean(dim=0)
    return ((others - anchor) ** 2).mean(dim=(1, 2)).sum() + ((others - centre) ** 2).mean(dim=(1, 2)).sum()


def variance_loss(z: torch.Tensor | Sequence[torch.Tensor], eps: float = 1e-4) -> torch.Tensor:
    """``mean_j ReLU(1 - sqrt(Var_j(z) + eps))`` with the unbiased batch variance, summed over views.

    ``z``: ``(N, D)`` or views ``(V, N, D)``.
    """
    z = _stack(z)
    std = torch.sqrt(_centred(z).pow(2).sum(dim=1) / (z.shape[1] - 1) + eps)
    return torch.relu(1 - std).mean(dim=1).sum()


def covariance_loss(z: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """``sum_{i != j} Cov_ij^2 / D`` with ``Cov = z_c^T z_c / (N - 1)``, summed over views.

    ``z``: ``(N, D)`` or views ``(V, N, D)``.
    """
    z = _centred(_stack(z))
    diagonal = z.pow(2).sum(dim=1).pow(2).sum(dim=1)  # sum_i (z_c^T z_c)_ii^2
    off_diagonal = _squared_cross_sum(z, z) - diagonal
    return (off_diagonal / ((z.shape[1] - 1) ** 2 * z.shape[2])).sum()


def variance_covariance_loss(z: torch.Tensor | Sequence[torch.Tensor], std_weight: float = 5.0,
                             cov_weight: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """``vac = std_weight * L_std + cov_weight * L_cov`` (§4.4), summed over views (``V_d``).

    ``z``: ``(N, D)`` or views ``(V, N, D)``.
    """
    return std_weight * variance_loss(z, eps) + cov_weight * covariance_loss(z)


def cross_correlation_loss(z1: torch.Tensor, z2: torch.Tensor, off_diagonal: float = 0.005) -> torch.Tensor:
    """Barlow-Twins term (§4.5) of two embeddings ``(N, D)``.

    Each is standardised per dimension (batch mean, unbiased batch std); ``C = z1^T z2 / N``;
    ``sum_i (C_ii - 1)^2 + off_diagonal * sum_{i != j} C_ij^2``.
    """
    a, b = (_centred(_stack(z)) for z in (z1, z2))
    if a.shape != b.shape:
        raise InputError(f"embeddings must have the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    n = a.shape[1]
    a, b = (z / torch.sqrt(z.pow(2).sum(dim=1, keepdim=True) / (n - 1)) for z in (a, b))
    diagonal = (a * b).sum(dim=1) / n  # (1, D)
    off = _squared_cross_sum(a, b) / n**2 - diagonal.pow(2).sum(dim=1)
    return ((diagonal - 1).pow(2).sum(dim=1) + off_diagonal * off).sum()


def multi_view_cross_correlation(views: torch.Tensor | Sequence[torch.Tensor],
                                 off_diagonal: float = 0.005) -> torch.Tensor:
    """:func:`cross_correlation_loss` summed over the unordered pairs of views ``(V, N, D)`` (``X_d``)."""
    z = _stack(views)
    if z.shape[0] < 2:
        raise InputError(f"cross-correlation needs at least 2 views, got {z.shape[0]}")
    return sum(cross_correlation_loss(z[i], z[j], off_diagonal) for i, j in itertools.combinations(range(len(z)), 2))


def info_nce_loss(views: torch.Tensor | Sequence[torch.Tensor], temperature: float = 0.1) -> torch.Tensor:
    """Cross-view InfoNCE of ``V >= 2`` views ``(V, N, D)`` whose row ``n`` is one sample in every view.

    For every ordered pair of distinct views ``(i, j)``: the cross-entropy of finding row ``n`` of view
    ``j`` for row ``n`` of view ``i`` among all ``N`` rows of view ``j``, by cosine similarity divided by
    ``temperature``; the mean over rows and pairs. Not part of MG-FD: the cross-format alignment of a
    universal model's supervised training uses it (:class:`usdrl.train.cross_format.FormatAlignment`).
    """
    z = _stack(views)
    if z.shape[0] < 2 or z.shape[1] < 2:
        raise InputError(f"InfoNCE needs at least 2 views of at least 2 samples, got shape {tuple(z.shape)}")
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    z = nn.functional.normalize(z, dim=-1)
    target = torch.arange(z.shape[1], device=z.device)
    with torch.autocast(z.device.type, enabled=False):
        losses = [nn.functional.cross_entropy(z[i] @ z[j].T / temperature, target)
                  for i, j in itertools.permutations(range(len(z)), 2)]
    return torch.stack(losses).mean()


class MGFDLoss(nn.Module):
    """The MG-FD objective over the temporal, spatial and instance domains (§4.6).

    ``forward(embeddings)`` takes a mapping ``domain -> (V, N, D)`` projected views (as
    returned by :class:`usdrl.train.projectors.Projectors`) and returns ``(loss, parts)``:
    the scalar loss and a dict of python floats for logging: ``loss``, the weighted
    totals ``sim``, ``vac``, ``xcorr``, and ``{domain}/{term}`` for every domain. A zero
    ``xcorr_weight`` skips the cross-correlation (logged as 0), as the reference does.

    ``global_batch=True``: under DDP, every process gathers the embeddings of all processes
    (:func:`usdrl.train.distributed.gather_batch`, with gradients) and computes the loss of the
    whole batch, as the reference computed it on the outputs ``DataParallel`` gathered; the
    gradients then equal one process training on the global batch. Every process must hold
    the same number of clips. In one process it changes nothing.
    """

    def __init__(self, config: LossConfig | None = None, *, global_batch: bool = False):
        super().__init__()
        self.config = config or LossConfig()
        self.global_batch = global_batch

    def domain_terms(self, views: torch.Tensor | Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Unweighted ``sim``, ``vac``, ``xcorr`` of one domain's views ``(V, N, D)``."""
        cfg = self.config
        views = _stack(views)
        if cfg.xcorr_weight:
            xcorr = multi_view_cross_correlation(views, cfg.xcorr_off_diagonal)
        else:
            xcorr = views.new_zeros(())
        return {"sim": invariance_loss(views),
                "vac": variance_covariance_loss(views, cfg.std_weight, cfg.cov_weight, cfg.variance_eps),
                "xcorr": xcorr}

    def forward(self, embeddings: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        missing = sorted(set(DOMAINS) - set(embeddings))
        if missing:
            raise InputError(f"missing embeddings for domains {missing}")
        if self.global_batch:
            embeddings = {domain: gather_batch(_stack(embeddings[domain]), dim=1) for domain in DOMAINS}
        cfg = self.config
        weights = {"sim": cfg.sim_weight, "vac": cfg.vac_weight, "xcorr": cfg.xcorr_weight}
        parts = {f"{domain}/{term}": value for domain in DOMAINS
                 for term, value in self.domain_terms(embeddings[domain]).items()}
        totals = {term: sum(cfg.domain_weight(d) * parts[f"{d}/{term}"] for d in DOMAINS) for term in weights}
        loss = sum(weights[term] * totals[term] for term in weights)
        logged = {"loss": loss, **totals, **parts}
        values = torch.stack([v.detach() for v in logged.values()]).tolist()  # one device sync
        return loss, dict(zip(logged, values, strict=True))
