"""MG-FD losses: hand-computed values on tiny tensors, and agreement with plain loop implementations."""

import dataclasses
import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F

from usdrl.errors import ConfigError, InputError
from usdrl.train.losses import (
    DOMAINS,
    LossConfig,
    MGFDLoss,
    covariance_loss,
    cross_correlation_loss,
    info_nce_loss,
    invariance_loss,
    multi_view_cross_correlation,
    variance_covariance_loss,
    variance_loss,
)

# A 3 x 2 batch: column 0 deviates by (-0.2, 0, 0.2) from its mean 0.3, column 1 by (0, -0.2, 0.2) from 0.2.
Z = torch.tensor([[0.1, 0.2], [0.3, 0.0], [0.5, 0.4]], dtype=torch.float64)
# Orthogonal zero-mean columns (a Hadamard matrix without its constant column): decorrelated.
HADAMARD = torch.tensor([[1, 1, 1], [-1, 1, -1], [1, -1, -1], [-1, -1, 1]], dtype=torch.float64)


# ---------------------------------------------------------------- loop implementations


def loop_invariance(views):
    centre = sum(views[:-1]) / (len(views) - 1)
    return sum(F.mse_loss(z, views[-1]) + F.mse_loss(z, centre) for z in views[:-1])


def loop_vac(z, std_weight=5.0, cov_weight=1.0, eps=1e-4):
    n, d = z.shape
    centred = z - z.mean(0)
    std = torch.sqrt(z.var(0) + eps)
    cov = centred.T @ centred / (n - 1)
    off = sum(cov[i, j] ** 2 for i in range(d) for j in range(d) if i != j)
    return std_weight * torch.relu(1 - std).mean() + cov_weight * off / d


def loop_xcorr(z1, z2, off_weight=0.005):
    n, d = z1.shape
    a, b = ((z - z.mean(0)) / z.std(0) for z in (z1, z2))
    c = a.T @ b / n
    return sum((c[i, i] - 1) ** 2 if i == j else off_weight * c[i, j] ** 2 for i in range(d) for j in range(d))


# The reference's weights (spec §4.4-§4.6), written out here rather than read from LossConfig.
REFERENCE = dict(sim=5.0, vac=1.0, xcorr=0.0, std=5.0, cov=1.0, eps=1e-4, off=0.005,
                 temporal=0.5, spatial=0.5, instance=1.0)


def loop_total(embeddings, **weights):
    w = {**REFERENCE, **weights}
    total = 0.0
    for domain in DOMAINS:
        views = list(embeddings[domain])
        sim = loop_invariance(views)
        vac = sum(loop_vac(z, w["std"], w["cov"], w["eps"]) for z in views)
        xcorr = sum(loop_xcorr(a, b, w["off"]) for a, b in itertools.combinations(views, 2))
        total = total + w[domain] * (w["sim"] * sim + w["vac"] * vac + w["xcorr"] * xcorr)
    return total


def random_views(seed, views=4, n=6, d=5):
    g = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.3, 2.0, d, dtype=torch.float64)
    return torch.randn(views, n, d, generator=g, dtype=torch.float64) * scale


# ---------------------------------------------------------------- by hand


def test_invariance_by_hand():
    z0 = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    z1 = torch.zeros(3, 2)
    anchor = torch.zeros(3, 2)
    # centre = (z0 + z1) / 2 has 0.5 at [0, 0]. MSE(z0, anchor) = 1/6, MSE(z1, anchor) = 0,
    # MSE(z0, centre) = MSE(z1, centre) = 0.25/6: 1/6 + 0.5/6 = 0.25.
    assert invariance_loss(torch.stack([z0, z1, anchor])).item() == pytest.approx(0.25)
    assert invariance_loss([z0, z1, anchor]).item() == pytest.approx(0.25)


def test_variance_covariance_by_hand():
    # Unbiased variance of each column: 0.08 / 2 = 0.04; std = sqrt(0.0401).
    l_std = 1 - math.sqrt(0.0401)
    # Cov_01 = (0 * -0.2 + ... + 0.2 * 0.2) / 2 = 0.02; sum over i != j of Cov^2 = 2 * 0.0004, divided by D = 2.
    l_cov = 0.0004
    assert variance_loss(Z).item() == pytest.approx(l_std)
    assert covariance_loss(Z).item() == pytest.approx(l_cov)
    assert variance_covariance_loss(Z).item() == pytest.approx(5 * l_std + l_cov)
    assert variance_covariance_loss(Z, std_weight=1.0, cov_weight=2.0).item() == pytest.approx(l_std + 2 * l_cov)


def test_cross_correlation_by_hand():
    # Z standardised: columns (-1, 0, 1) and (0, -1, 1). With itself, C = [[2, 1], [1, 2]] / 3:
    # (2/3 - 1)^2 * 2 + 0.005 * (1/3)^2 * 2.
    assert cross_correlation_loss(Z, Z).item() == pytest.approx(2 / 9 + 0.005 * 2 / 9)
    # Against columns (1, 0, 2) and (0, 1, 2), standardised (0, -1, 1) and (-1, 0, 1): C = [[1, 2], [2, 1]] / 3.
    other = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]], dtype=torch.float64)
    assert cross_correlation_loss(Z, other).item() == pytest.approx(2 * 4 / 9 + 0.005 * 2 * 4 / 9)


# ---------------------------------------------------------------- special cases


def test_invariance_of_identical_views_is_zero():
    z = torch.randn(5, 8)
    assert invariance_loss(torch.stack([z] * 4)).item() == pytest.approx(0.0, abs=1e-12)  # the centre rounds


def test_variance_term_zero_when_every_std_is_at_least_one():
    assert variance_loss(2 * HADAMARD).item() == 0.0  # unbiased variances 16/3
    assert variance_loss(HADAMARD).item() == 0.0  # 4/3


def test_covariance_zero_for_decorrelated_data():
    assert covariance_loss(HADAMARD).item() == 0.0
    assert covariance_loss(HADAMARD * torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64)).item() == 0.0


def test_cross_correlation_of_identical_decorrelated_inputs():
    # Identity correlation: the off-diagonals vanish and C_ii = (N - 1) / N (unbiased std, C divided by N),
    # so only D * (1 / N)^2 is left.
    n, d = HADAMARD.shape
    assert cross_correlation_loss(HADAMARD, HADAMARD).item() == pytest.approx(d / n**2)
    assert cross_correlation_loss(HADAMARD, 2 * HADAMARD + 1).item() == pytest.approx(d / n**2)


# ---------------------------------------------------------------- against the loops


@pytest.mark.parametrize("seed", [0, 1])
def test_terms_match_loop_implementations(seed):
    views = random_views(seed)
    assert invariance_loss(views).item() == pytest.approx(loop_invariance(list(views)).item(), rel=1e-10)
    for z in views:
        assert variance_covariance_loss(z).item() == pytest.approx(loop_vac(z).item(), rel=1e-10)
    assert variance_covariance_loss(views).item() == pytest.approx(sum(loop_vac(z) for z in views).item())
    assert cross_correlation_loss(views[0], views[1]).item() == pytest.approx(
        loop_xcorr(views[0], views[1]).item(), rel=1e-10)
    assert multi_view_cross_correlation(views).item() == pytest.approx(
        sum(loop_xcorr(a, b) for a, b in itertools.combinations(views, 2)).item(), rel=1e-10)


def test_more_dimensions_than_samples_matches_loop():
    views = random_views(3, views=2, n=4, d=9)
    for z in views:
        assert covariance_loss(z).item() == pytest.approx(loop_vac(z, std_weight=0).item(), rel=1e-10)
    assert cross_correlation_loss(*views).item() == pytest.approx(loop_xcorr(*views).item(), rel=1e-10)


@pytest.mark.parametrize("xcorr_weight", [0.0, 1e-3])
def test_mgfd_total_and_parts(xcorr_weight):
    cfg = LossConfig(xcorr_weight=xcorr_weight)
    embeddings = {"temporal": random_views(0), "spatial": random_views(1), "instance": random_views(2, d=7)}
    loss, parts = MGFDLoss(cfg)(embeddings)
    assert loss.item() == pytest.approx(loop_total(embeddings, xcorr=xcorr_weight).item(), rel=1e-6)
    terms = ("sim", "vac", "xcorr")
    assert set(parts) == {"loss", *terms} | {f"{d}/{t}" for d in DOMAINS for t in terms}
    assert all(isinstance(v, float) for v in parts.values())
    assert parts["loss"] == pytest.approx(loss.item())
    assert parts["sim"] == pytest.approx(parts["instance/sim"] + 0.5 * (parts["temporal/sim"] + parts["spatial/sim"]))
    assert parts["loss"] == pytest.approx(5 * parts["sim"] + parts["vac"] + xcorr_weight * parts["xcorr"])
    assert (parts["xcorr"] > 0) == (xcorr_weight > 0)


def test_mgfd_defaults_are_the_reference_weights():
    embeddings = {"temporal": random_views(6), "spatial": random_views(7), "instance": random_views(8, d=7)}
    assert MGFDLoss()(embeddings)[0].item() == pytest.approx(loop_total(embeddings).item(), rel=1e-9)


def test_mgfd_follows_every_non_default_weight():
    # Each weight moved away from its default (and eps large enough to matter), so ignoring any one shows.
    weights = dict(sim=2.0, vac=0.7, xcorr=0.3, std=1.5, cov=3.0, eps=0.5, off=0.2,
                   temporal=0.25, spatial=0.75, instance=2.0)
    cfg = LossConfig(sim_weight=2.0, vac_weight=0.7, xcorr_weight=0.3, std_weight=1.5, cov_weight=3.0,
                     variance_eps=0.5, xcorr_off_diagonal=0.2, temporal_weight=0.25, spatial_weight=0.75,
                     instance_weight=2.0)
    embeddings = {"temporal": random_views(9), "spatial": random_views(10), "instance": random_views(11, d=7)}
    assert MGFDLoss(cfg)(embeddings)[0].item() == pytest.approx(loop_total(embeddings, **weights).item(), rel=1e-9)
    for name, value in weights.items():  # each weight on its own changes the loss: none is inert in the test
        assert loop_total(embeddings, **{**weights, name: value * 1.5}).item() != pytest.approx(
            loop_total(embeddings, **weights).item(), rel=1e-6)


def test_zero_xcorr_weight_skips_the_term():
    # Constant embeddings: the cross-correlation would divide 0 by 0; it is not computed at all.
    constant = torch.ones(4, 3, 5, requires_grad=True)
    loss, parts = MGFDLoss()({d: constant for d in DOMAINS})
    assert math.isfinite(loss.item()) and parts["xcorr"] == 0.0
    loss.backward()
    assert torch.isfinite(constant.grad).all()
    assert math.isnan(MGFDLoss(LossConfig(xcorr_weight=1e-3))({d: constant for d in DOMAINS})[0].item())


def test_losses_run_in_float32_under_autocast():
    views = random_views(4, d=64).float()
    expected = MGFDLoss(LossConfig(xcorr_weight=1e-3))({d: views for d in DOMAINS})[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = MGFDLoss(LossConfig(xcorr_weight=1e-3))({d: views for d in DOMAINS})[0]
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    half = MGFDLoss()({d: views.bfloat16() for d in DOMAINS})[0]
    assert half.dtype == torch.float32


def test_every_term_is_float32_exact_under_autocast():
    # Under a bfloat16 autocast the Gram products would lose 3 digits; the terms keep float32's 7.
    views = random_views(12, views=2, n=6, d=64)
    def terms(z):
        return {"cov": covariance_loss(z).item(), "xcorr": multi_view_cross_correlation(z).item()}

    exact = terms(views)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = terms(views.float())
    assert got == pytest.approx(exact, rel=1e-5)


def test_the_smallest_inputs_each_term_accepts():
    two = random_views(13, views=2, n=2, d=3)   # 2 views of a batch of 2
    assert invariance_loss(two).item() == pytest.approx(loop_invariance(list(two)).item(), rel=1e-12)
    assert variance_covariance_loss(two[0]).item() == pytest.approx(loop_vac(two[0]).item(), rel=1e-12)
    assert multi_view_cross_correlation(two).item() == pytest.approx(loop_xcorr(*two).item(), rel=1e-12)


def test_gradients_flow_to_every_view():
    views = random_views(5).requires_grad_()
    MGFDLoss(LossConfig(xcorr_weight=1e-3))({d: views for d in DOMAINS})[0].backward()
    assert (views.grad.abs().sum(dim=(1, 2)) > 0).all()


def test_errors():
    with pytest.raises(InputError, match=r"^invariance needs at least 2 views, got 1$"):
        invariance_loss(torch.zeros(1, 3, 2))
    with pytest.raises(InputError, match=r"^cross-correlation needs at least 2 views, got 1$"):
        multi_view_cross_correlation(torch.zeros(1, 3, 2))
    with pytest.raises(InputError, match=r"^expected embeddings \(N, D\) or views \(V, N, D\), got shape \(1, 2, 3"):
        invariance_loss(torch.zeros(1, 2, 3, 4))
    with pytest.raises(InputError, match=r"^embeddings must have the same shape, got \(3, 2\) and \(3, 4\)$"):
        cross_correlation_loss(torch.randn(3, 2), torch.randn(3, 4))
    for bad in ("1", True, None):
        with pytest.raises(ConfigError, match=f"sim_weight must be a non-negative number, got {bad!r}"):
            LossConfig(sim_weight=bad)
    with pytest.raises(InputError, match="batch of at least 2"):
        variance_loss(torch.zeros(1, 2))
    with pytest.raises(InputError, match="missing"):
        MGFDLoss()({"temporal": torch.zeros(2, 3, 2)})
    with pytest.raises(ConfigError, match="sim_weight"):
        LossConfig(sim_weight=-1)


def test_config_is_json_native():
    cfg = LossConfig(xcorr_weight=1e-3, spatial_weight=0.25)
    assert LossConfig(**json.loads(json.dumps(dataclasses.asdict(cfg)))) == cfg


def test_info_nce_by_hand():
    """Two views of two samples: view 0 has one row twice, view 1 two orthogonal rows. Pair (0, 1): logits
    rows (1, 0) / tau with targets 0 and 1; pair (1, 0): rows (1, 1) and (0, 0) / tau, ln 2 each."""
    views = torch.tensor([[[3.0, 0.0], [0.5, 0.0]], [[2.0, 0.0], [0.0, 4.0]]], dtype=torch.float64)  # normalised
    for tau in (1.0, 0.5):
        ordered = (math.log1p(math.exp(-1 / tau)) + math.log1p(math.exp(1 / tau))) / 2
        assert info_nce_loss(views, tau).item() == pytest.approx((ordered + math.log(2)) / 2, rel=1e-12)
    assert info_nce_loss(views).item() == pytest.approx((math.log1p(math.exp(-10)) + math.log1p(math.exp(10))) / 4
                                                        + math.log(2) / 2, rel=1e-12)            # tau = 0.1
    swapped = views.flip(0)                                             # the same ordered pairs, the other way round
    assert info_nce_loss(swapped, 0.5).item() == pytest.approx(info_nce_loss(views, 0.5).item(), rel=1e-12)


def test_info_nce_of_three_views_is_the_mean_over_ordered_pairs():
    views = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    target = torch.arange(5)
    z = F.normalize(views, dim=-1)
    expected = torch.stack([F.cross_entropy(z[i] @ z[j].T / 0.2, target)
                            for i, j in itertools.permutations(range(3), 2)]).mean()
    assert info_nce_loss(views, 0.2).item() == pytest.approx(expected.item(), rel=1e-12)
    assert info_nce_loss(list(views), 0.2).item() == pytest.approx(expected.item(), rel=1e-12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert info_nce_loss(views.float(), 0.2).dtype == torch.float32
        assert info_nce_loss(views.float(), 0.2).item() == pytest.approx(expected.item(), rel=1e-5)


def test_info_nce_errors():
    with pytest.raises(InputError, match=r"at least 2 views of at least 2 samples, got shape \(1, 4, 3\)"):
        info_nce_loss(torch.ones(1, 4, 3))
    with pytest.raises(InputError, match=r"got shape \(2, 1, 3\)"):
        info_nce_loss(torch.ones(2, 1, 3))
    with pytest.raises(ConfigError, match="temperature must be > 0, got 0"):
        info_nce_loss(torch.ones(2, 2, 3), 0)


def test_info_nce_stays_on_the_embeddings_device():
    from device_harness import ACCELERATOR, SimulatedAccelerator

    views = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0))
    accelerator = SimulatedAccelerator(named=True)
    with accelerator:
        loss = info_nce_loss(views.to(ACCELERATOR))
        assert accelerator.on_device(loss)
    assert loss.item() == pytest.approx(info_nce_loss(views).item())


def test_the_global_batch_loss_is_the_loss_of_the_gathered_embeddings(monkeypatch):
    """``global_batch=True`` computes the loss on what ``gather_batch`` returns along the batch axis (here a
    stand-in that appends another process's clips); the default leaves the embeddings alone."""
    import usdrl.train.losses as losses

    def embeddings(seed):
        generator = torch.Generator().manual_seed(seed)
        return {d: torch.randn(3, 4, 5, generator=generator, dtype=torch.float64) for d in DOMAINS}

    mine, other = embeddings(0), embeddings(1)
    calls = []

    def gather(tensor, dim):
        calls.append(dim)
        partner = next(other[d] for d in DOMAINS if torch.equal(mine[d], tensor))
        return torch.cat([tensor, partner], dim=dim)

    monkeypatch.setattr(losses, "gather_batch", gather)
    assert MGFDLoss().global_batch is False
    alone, _ = MGFDLoss()(mine)
    assert calls == []
    gathered, parts = MGFDLoss(global_batch=True)(mine)
    assert calls == [1, 1, 1]
    expected, expected_parts = MGFDLoss()({d: torch.cat([mine[d], other[d]], dim=1) for d in DOMAINS})
    assert gathered.item() == pytest.approx(expected.item(), rel=1e-12) and parts == pytest.approx(expected_parts)
    assert gathered.item() != pytest.approx(alone.item(), rel=1e-3)
