"""A deliberately literal implementation of the reference architecture, from the spec.

It follows ``usdrl-model.md`` §1.3 and §2 step by step, with the reference's module
layout so that its ``state_dict`` has the reference checkpoint keys of §3.2: one
``nn.MultiheadAttention`` per DST layer registered under both ``CA.attn`` and
``DSA.attn``, a ``Conv1d`` point-wise projection, token mixing on the transposed
sequence with an in-place anchor restore, and no batching tricks. The library's
fused implementation is tested against it through the checkpoint converter.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def flatten_tokens(x):
    """(N, C, T, V, M) -> temporal tokens (N, T, M*V*C) and spatial tokens (N, M*V, T*C)."""
    n, c, t, v, m = x.shape
    temporal = x.permute(0, 2, 4, 3, 1).reshape(n, t, m * v * c)
    spatial = x.permute(0, 4, 3, 2, 1).reshape(n, m * v, t * c)
    return temporal, spatial


class TwoLayerMLP(nn.Module):
    def __init__(self, dim, hidden, act):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), act(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Embeddings(nn.Module):
    def __init__(self, t_dim, s_dim, hidden):
        super().__init__()

        def branch(d):
            return nn.Sequential(nn.Linear(d, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, hidden))

        self.t_embedding, self.s_embedding = branch(t_dim), branch(s_dim)


class SinusoidTable(nn.Module):
    def __init__(self, hidden, length=200):
        super().__init__()
        table = torch.zeros(1, length, hidden)
        for pos in range(length):
            for i in range(0, hidden, 2):
                angle = pos / (10000 ** (i / hidden))
                table[0, pos, i] = math.sin(angle)
                if i + 1 < hidden:
                    table[0, pos, i + 1] = math.cos(angle)
        self.register_buffer("pe", table)


class ConvAttention(nn.Module):
    def __init__(self, hidden, attn):
        super().__init__()
        self.attn = attn
        self.conv1 = nn.Conv1d(hidden, hidden, kernel_size=1)
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.mlp = TwoLayerMLP(hidden, 2 * hidden, nn.GELU)

    def forward(self, x):
        u = x + F.relu(self.conv1(x.transpose(1, 2))).transpose(1, 2)
        q = self.norm1(u)
        a = x + self.attn(q, q, q)[0]
        return self.mlp(self.norm2(a))


class DenseShiftAttention(nn.Module):
    def __init__(self, hidden, tokens, gap, attn):
        super().__init__()
        self.attn, self.gap = attn, gap
        self.wt1, self.wt2 = nn.Linear(tokens, tokens), nn.Linear(tokens, tokens)
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.mlp = TwoLayerMLP(hidden, 2 * hidden, nn.GELU)

    def branch(self, h):
        q = self.norm1(h)
        h = h + self.attn(q, q, q)[0]
        return h + self.mlp(self.norm2(h))

    def forward(self, x):
        xt = x.transpose(1, 2)                      # (N, H, L)
        g = self.wt2(F.relu(self.wt1(xt))) + xt
        for j in range(0, g.shape[-1], self.gap):
            g[:, :, j] = xt[:, :, j]
        return (self.branch(g.transpose(1, 2)) + self.branch(x)) / 2


class LiteralDSTLayer(nn.Module):
    def __init__(self, hidden, heads, tokens, gap, alpha):
        super().__init__()
        shared = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.CA = ConvAttention(hidden, shared)  # noqa: N815 (reference key names)
        self.DSA = DenseShiftAttention(hidden, tokens, gap, shared)  # noqa: N815
        self.alpha = alpha

    def forward(self, x):
        return self.alpha * self.CA(x) + (1 - self.alpha) * self.DSA(x)


class LiteralDSTE(nn.Module):
    """Two DST layers per stream (``t_tr``, ``t_tr1``, ``s_tr``, ``s_tr1``), positions re-added before each."""

    def __init__(self, t_dim, s_dim, hidden, heads, frames, spatial_tokens, gap=4, alpha=0.5):
        super().__init__()
        self.ske_emb = Embeddings(t_dim, s_dim, hidden)
        self.tpe = SinusoidTable(hidden)
        self.spe = nn.Parameter(torch.randn(1, spatial_tokens, hidden) * 0.02)
        self.t_tr = LiteralDSTLayer(hidden, heads, frames, gap, alpha)
        self.s_tr = LiteralDSTLayer(hidden, heads, spatial_tokens, gap, alpha)
        self.t_tr1 = LiteralDSTLayer(hidden, heads, frames, gap, alpha)
        self.s_tr1 = LiteralDSTLayer(hidden, heads, spatial_tokens, gap, alpha)

    def forward(self, temporal, spatial):
        t = self.ske_emb.t_embedding(temporal)
        s = self.ske_emb.s_embedding(spatial)
        pe = self.tpe.pe[:, : t.shape[1]]
        t = self.t_tr1(self.t_tr(t + pe) + pe)
        s = self.s_tr1(self.s_tr(s + self.spe) + self.spe)
        return t, s


class LiteralSTTR(nn.Module):
    """PyTorch's own post-norm TransformerEncoder per stream, positions added once."""

    def __init__(self, t_dim, s_dim, hidden, heads, spatial_tokens, layers=2):
        super().__init__()
        self.ske_emb = Embeddings(t_dim, s_dim, hidden)
        self.tpe = SinusoidTable(hidden)
        self.spe = nn.Parameter(torch.randn(1, spatial_tokens, hidden) * 0.02)

        def encoder():
            layer = nn.TransformerEncoderLayer(hidden, heads, hidden, dropout=0.0, batch_first=True)
            return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

        self.t_tr, self.s_tr = encoder(), encoder()

    def forward(self, temporal, spatial):
        t = self.ske_emb.t_embedding(temporal)
        s = self.ske_emb.s_embedding(spatial)
        return self.t_tr(t + self.tpe.pe[:, : t.shape[1]]), self.s_tr(s + self.spe)


class LiteralDownstream(nn.Module):
    """``backbone`` + ``fc`` over the max-pooled ``[t ; s]`` feature, or per frame for detection."""

    def __init__(self, backbone, hidden, num_classes):
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(2 * hidden, num_classes)

    def features(self, x):
        t, s = self.backbone(*flatten_tokens(x))
        return torch.cat([t.amax(1), s.amax(1)], -1)

    def dense(self, x):
        t, s = self.backbone(*flatten_tokens(x))
        pooled = F.adaptive_avg_pool1d(s.transpose(1, 2), t.shape[1]).transpose(1, 2)
        return torch.cat([t, pooled], -1)

    def forward(self, x):
        return self.fc(self.features(x))


def projector(d_in, d_hidden, d_out):
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.BatchNorm1d(d_hidden), nn.ReLU(),
                         nn.Linear(d_hidden, d_hidden), nn.BatchNorm1d(d_hidden), nn.ReLU(),
                         nn.Linear(d_hidden, d_out))


class LiteralPretraining(nn.Module):
    """The pretraining container: ``backbone`` plus the three projectors of §4.1."""

    def __init__(self, backbone, hidden):
        super().__init__()
        self.backbone = backbone
        self.i_proj = projector(2 * hidden, 2 * hidden, 4 * hidden)
        self.s_proj = projector(hidden, 2 * hidden, 2 * hidden)
        self.t_proj = projector(hidden, 2 * hidden, 2 * hidden)


def randomise_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter a non-trivial value (so that a wrong mapping cannot go unnoticed)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name or ".1." in name:   # LayerNorms (also inside the embeddings)
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                scale = 1.0 / math.sqrt(p.shape[-1]) if p.ndim > 1 else 0.1
                p.copy_(scale * torch.randn(p.shape, generator=gen))
    return module
