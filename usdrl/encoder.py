"""The DSTE encoder (and the STTR baseline) as plain ``nn.Module``s.

Einops legend:
    n  batch            c  channels (xyz, or xy + score)
    t  frames           v  joints             m  persons
    l  tokens of a stream (t frames, or m*v joints)
    d  hidden width H   h  attention heads    e  width of one head (d / h)

Both streams read the same clip ``(n, c, t, v, m)``:

* temporal stream: ``t`` tokens, token ``t`` is the frame flattened as ``(m v c)``;
* spatial stream: ``m*v`` tokens, token ``m*V + v`` is that joint's trajectory ``(t c)``.

Each stream embeds its tokens, adds its position encoding (again before every DST
layer; once for STTR) and runs its layers. The encoder returns the two token sequences
``y_t (n, t, d)`` and ``y_s (n, m*v, d)``; :func:`global_feature` and
:func:`dense_feature` pool them.
"""

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import USDRLConfig
from .errors import ConfigError
from .skeleton import MODALITIES, apply_modality, get_layout


class DropPath(nn.Module):
    """Stochastic depth: zero a residual branch for a random subset of samples (training only)."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Attention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameters and maths.

    ``in_proj`` maps each token to its query, key and value (weight rows ``[q; k; v]``),
    ``out_proj`` maps the heads' concatenated outputs back. Both are ``nn.Linear`` modules
    called as modules, so standard tools that swap linear layers (dynamic int8
    quantization, :meth:`usdrl.USDRL.quantize`) apply. The ``state_dict`` keeps
    ``nn.MultiheadAttention``'s names, ``in_proj_weight`` and ``in_proj_bias`` (reference
    checkpoints and saved models load unchanged). Input and output are ``(n, l, d)``.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj.weight)
        nn.init.zeros_(self.in_proj.bias)
        nn.init.zeros_(self.out_proj.bias)
        self.register_state_dict_post_hook(_rename_keys({"in_proj.weight": "in_proj_weight",
                                                         "in_proj.bias": "in_proj_bias"}))
        self.register_load_state_dict_pre_hook(_rename_keys({"in_proj_weight": "in_proj.weight",
                                                             "in_proj_bias": "in_proj.bias"}))

    @property
    def in_proj_weight(self) -> nn.Parameter:
        """``(3d, d)``, as ``nn.MultiheadAttention.in_proj_weight``."""
        return self.in_proj.weight

    @property
    def in_proj_bias(self) -> nn.Parameter:
        """``(3d,)``, as ``nn.MultiheadAttention.in_proj_bias``."""
        return self.in_proj.bias

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        q, k, v = rearrange(self.in_proj(x), "n l (three h e) -> three n h l e", three=3, h=self.num_heads)
        scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5
        if causal:
            future = torch.ones(scores.shape[-2:], dtype=torch.bool, device=x.device).triu_(1)
            scores = scores.masked_fill(future, float("-inf"))
        out = torch.matmul(scores.softmax(dim=-1), v)
        return self.out_proj(rearrange(out, "n h l e -> n l (h e)"))


def _rename_keys(names: dict[str, str]):
    """A state-dict hook renaming ``prefix + old`` to ``prefix + new`` in place (the state dict is the second
    argument of both the post-save and the pre-load hooks), keeping the keys' order."""
    def hook(module, state_dict, prefix, *args):
        keys = [prefix + old for old in names if prefix + old in state_dict]
        if not keys:
            return
        items = list(state_dict.items())
        state_dict.clear()
        for key, value in items:
            state_dict[prefix + names[key[len(prefix):]] if key in keys else key] = value
    return hook


class MLP(nn.Module):
    """``fc1 -> activation -> fc2`` over the last axis."""

    def __init__(self, dim: int, hidden: int, activation: type[nn.Module]):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = activation()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TokenMixing(nn.Linear):
    """An ``(l, l)`` linear map over the token axis (called through :meth:`TokenMixer._mix`, not as a module).

    Its own type keeps it out of tools that swap ``nn.Linear`` modules by exact type (dynamic
    quantization): the mixer reads its weight, and the ``l x l`` products are a small part of a layer.
    """


class TokenMixer(nn.Module):
    """The dense shift of DSA: ``g = W2 relu(W1 x) + x`` over the token axis.

    ``W1, W2`` are ``(l, l)`` matrices with biases, mixing tokens (not channels). Anchor
    tokens ``j % gap == 0`` keep their input value. With ``causal=True`` both matrices are
    lower-triangular, so output token ``i`` depends on input tokens ``<= i`` only.
    Input and output are ``(n, l, d)``.
    """

    def __init__(self, num_tokens: int, gap: int, causal: bool):
        super().__init__()
        self.mix1 = TokenMixing(num_tokens, num_tokens)
        self.mix2 = TokenMixing(num_tokens, num_tokens)
        index = torch.arange(num_tokens)
        self.register_buffer("anchors", (index % gap == 0)[:, None], persistent=False)
        mask = torch.tril(torch.ones(num_tokens, num_tokens)) if causal else None
        self.register_buffer("causal_mask", mask, persistent=False)

    def _mix(self, layer: TokenMixing, x: torch.Tensor) -> torch.Tensor:
        weight = layer.weight if self.causal_mask is None else layer.weight * self.causal_mask
        weight, bias = weight.to(x.dtype), layer.bias.to(x.dtype)
        # one (l, l) @ (l, d) product per sample, with the bias added by the product itself
        return torch.baddbmm(bias[:, None], weight.expand(x.shape[0], -1, -1), x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = self._mix(self.mix2, F.relu(self._mix(self.mix1, x))) + x
        return torch.where(self.anchors, x, shifted)


class ConvAttentionParams(nn.Module):
    """Parameters of the CA sublayer (its computation lives in :class:`DSTLayer`)."""

    def __init__(self, dim: int, mlp_hidden: int):
        super().__init__()
        self.pointwise = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_hidden, nn.GELU)


class DenseShiftAttentionParams(nn.Module):
    """Parameters of the DSA sublayer (its computation lives in :class:`DSTLayer`)."""

    def __init__(self, dim: int, mlp_hidden: int, num_tokens: int, gap: int, causal: bool):
        super().__init__()
        self.shift = TokenMixer(num_tokens, gap, causal)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_hidden, nn.GELU)


class _Checkpointable(nn.Module):
    """A layer that can recompute parts of its forward pass in the backward pass.

    With ``grad_checkpointing`` set (and gradients enabled), :meth:`_run` keeps only the
    inputs of ``fn`` and recomputes its activations when the gradients are needed (with
    the same random draws); otherwise it simply calls ``fn``.
    """

    grad_checkpointing = False

    def _run(self, fn, *args):
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)


class DSTLayer(_Checkpointable):
    """Dense spatio-temporal layer: ``alpha * CA(x) + (1 - alpha) * DSA(x)``.

    One attention module serves CA and both DSA branches. With DP = drop path::

        CA:   u  = x + relu(PW(x))
              a  = x + DP(attn(LN1(u)))            # residual on x, not u
              CA = DP(MLP(LN2(a)))                 # no residual around the MLP
        DSA:  g  = dense shift of x (anchor tokens restored)
              b1 = g + DP(attn(LN1'(g)));  b1 += DP(MLP'(LN2'(b1)))
              b2 = x + DP(attn(LN1'(x)));  b2 += DP(MLP'(LN2'(b2)))
              DSA = (b1 + b2) / 2

    Input and output are ``(n, l, d)``.
    """

    def __init__(self, dim, num_heads, mlp_hidden, num_tokens, gap, alpha, drop_path, causal=False):
        super().__init__()
        self.alpha = alpha
        self.causal = causal
        self.attn = Attention(dim, num_heads)
        self.ca = ConvAttentionParams(dim, mlp_hidden)
        self.dsa = DenseShiftAttentionParams(dim, mlp_hidden, num_tokens, gap, causal)
        self.drop_path = DropPath(drop_path)

    def _conv_attention(self, x: torch.Tensor) -> torch.Tensor:
        ca, dp = self.ca, self.drop_path
        u = x + F.relu(ca.pointwise(x))
        a = x + dp(self.attn(ca.norm1(u), causal=self.causal))
        return dp(ca.mlp(ca.norm2(a)))

    def _dsa_branch(self, h: torch.Tensor) -> torch.Tensor:
        dsa, dp = self.dsa, self.drop_path
        h = h + dp(self.attn(dsa.norm1(h), causal=self.causal))
        return h + dp(dsa.mlp(dsa.norm2(h)))

    def _shifted_dsa_branch(self, x: torch.Tensor) -> torch.Tensor:
        return self._dsa_branch(self.dsa.shift(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self._forward_batched(x)
        # Checkpointing recomputes CA and each DSA branch separately: a third of a layer at a time.
        ca_out = self._run(self._conv_attention, x)
        dsa_sum = self._run(self._shifted_dsa_branch, x) + self._run(self._dsa_branch, x)  # DSA = dsa_sum / 2
        return torch.add(self.alpha * ca_out, dsa_sum, alpha=0.5 * (1.0 - self.alpha))

    def _forward_batched(self, x: torch.Tensor) -> torch.Tensor:
        """The forward pass in eval mode (no drop path, whose draws differ per branch): the attention
        module serves CA and both DSA branches, so its three inputs run as one batch of ``3n``, and the
        two DSA branches, which share every weight, as one of ``2n``; only their sum is used, and the
        last MLP layer is linear, so it runs once on the mean of the two branches' hidden activations:
        ``fc2(a) + fc2(b) = 2 fc2((a + b) / 2)``. The same values as the training path (up to rounding),
        with fewer and larger matrix products."""
        ca, dsa = self.ca, self.dsa
        u = x + F.relu(ca.pointwise(x))
        h = torch.cat([dsa.shift(x), x])                       # the inputs of the two DSA branches
        attended = self.attn(torch.cat([ca.norm1(u), dsa.norm1(h)]), causal=self.causal).unflatten(0, (3, -1))
        ca_out = ca.mlp(ca.norm2(x + attended[0]))
        h = h + attended[1:].flatten(0, 1)
        hidden = dsa.mlp.act(dsa.mlp.fc1(dsa.norm2(h))).unflatten(0, (2, -1))     # (2, n, l, mlp_hidden)
        dsa_sum = h.unflatten(0, (2, -1)).sum(0) + 2 * dsa.mlp.fc2(hidden.mean(0))
        return torch.add(self.alpha * ca_out, dsa_sum, alpha=0.5 * (1.0 - self.alpha))


class TransformerLayer(_Checkpointable):
    """A post-norm transformer layer with a ReLU feed-forward (the STTR baseline).

    ``x = LN1(x + attn(x)); x = LN2(x + FFN(x))``. Input and output are ``(n, l, d)``.
    """

    def __init__(self, dim, num_heads, mlp_hidden, drop_path, causal=False):
        super().__init__()
        self.causal = causal
        self.attn = Attention(dim, num_heads)
        self.ffn = MLP(dim, mlp_hidden, nn.ReLU)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.drop_path = DropPath(drop_path)

    def _layer(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.drop_path(self.attn(x, causal=self.causal)))
        return self.norm2(x + self.drop_path(self.ffn(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(self._layer, x)


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """``(length, dim)``: ``PE[p, 2i] = sin(p / 10000^(2i/dim))``, ``PE[p, 2i+1] = cos(...)``."""
    position = torch.arange(length, dtype=torch.float64)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)[:, : dim // 2]
    return table.float()


def _embedding(input_dim: int, dim: int) -> nn.Sequential:
    """``Linear -> LayerNorm -> ReLU -> Linear``: tokens ``(n, l, input_dim)`` to ``(n, l, dim)``."""
    return nn.Sequential(nn.Linear(input_dim, dim), nn.LayerNorm(dim), nn.ReLU(), nn.Linear(dim, dim))


class Stream(nn.Module):
    """Embedding plus layers of one stream: tokens ``(n, l, d_in)`` to ``(n, l, d)``.

    A single-modality stream has one ``embed``. A multi-modal stream has one embedding
    per modality (``embeds``) and ``fuse``: the fused view averages the three embedded
    token sequences and applies a bias-free linear map (early fusion). The position
    encoding ``pos (1, l, d)`` is added before every layer (``repeat_pos``) or before the first.
    """

    def __init__(self, input_dim: int, dim: int, layers: list[nn.Module], repeat_pos: bool, multimodal: bool):
        super().__init__()
        if multimodal:
            self.embeds = nn.ModuleDict({name: _embedding(input_dim, dim) for name in MODALITIES})
            self.fuse = nn.Linear(dim, dim, bias=False)
        else:
            self.embed = _embedding(input_dim, dim)
        self.layers = nn.ModuleList(layers)
        self.repeat_pos = repeat_pos

    def embed_tokens(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Embed ``{modality: (n, l, d_in)}``: one modality, or all three for the fused view."""
        if not hasattr(self, "embeds"):
            (only,) = tokens.values()
            return self.embed(only)
        if len(tokens) == 1:
            ((name, only),) = tokens.items()
            return self.embeds[name](only)
        return self.fuse(torch.stack([self.embeds[name](tokens[name]) for name in MODALITIES]).mean(0))

    def forward(self, tokens: dict[str, torch.Tensor], pos: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(tokens)
        for i, layer in enumerate(self.layers):
            if i == 0 or self.repeat_pos:
                x = x + pos
            x = layer(x)
        return x


class Encoder(nn.Module):
    """The two-stream skeleton encoder (``config.encoder``: ``"dste"`` or ``"sttr"``).

    ``forward(x, view)`` takes joint coordinates ``(n, c, t, v, m)``, computes the view's
    modality input(s) from them (``view`` is one of ``config.views``; default
    ``config.default_view``) and returns ``(y_t, y_s)`` of shapes ``(n, t, d)`` and
    ``(n, m*v, d)``.
    """

    def __init__(self, config: USDRLConfig):
        super().__init__()
        self.config = config
        d, repeat, multi = config.hidden_size, config.encoder == "dste", config.modality == "multi"
        self.layout = get_layout(config.layout)
        self.temporal = Stream(config.temporal_input_dim, d,
                               self._layers(config, config.temporal_tokens, config.causal), repeat, multi)
        self.spatial = Stream(config.spatial_input_dim, d, self._layers(config, config.spatial_tokens, False),
                              repeat, multi)
        self.spatial_pos = nn.Parameter(torch.zeros(1, config.spatial_tokens, d))
        table = sinusoid_table(max(200, config.temporal_tokens), d)[None, : config.temporal_tokens]
        self.register_buffer("temporal_pos", table, persistent=False)
        self.reset_parameters()

    @staticmethod
    def _layers(config: USDRLConfig, num_tokens: int, causal: bool) -> list[nn.Module]:
        d, h, hidden = config.hidden_size, config.num_heads, config.mlp_hidden_size
        if config.encoder == "dste":
            return [DSTLayer(d, h, hidden, num_tokens, config.gap, config.alpha, config.drop_path, causal)
                    for _ in range(config.num_layers)]
        return [TransformerLayer(d, h, hidden, config.drop_path, causal) for _ in range(config.num_layers)]

    def reset_parameters(self) -> None:
        """The reference initialisation: truncated-normal (std 0.02) linear weights and
        spatial position encoding, zero biases, unit LayerNorms, Xavier-uniform attention
        input projections; the CA point-wise projection keeps PyTorch's default."""
        # kept as initialised: the CA point-wise projections and the attention input projections (Xavier)
        kept = {id(m.ca.pointwise) for m in self.modules() if isinstance(m, DSTLayer)}
        kept |= {id(m.in_proj) for m in self.modules() if isinstance(m, Attention)}
        for module in self.modules():
            if isinstance(module, nn.Linear) and id(module) not in kept:
                nn.init.trunc_normal_(module.weight, std=0.02, a=-2.0, b=2.0)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.spatial_pos, std=0.02, a=-2.0, b=2.0)

    def forward(self, x: torch.Tensor, view: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        view = view or self.config.default_view
        if view not in self.config.views:
            raise ConfigError(f"this encoder embeds {', '.join(self.config.views)}; got view {view!r}")
        modalities = MODALITIES if view == "fused" else (view,)
        inputs = {name: apply_modality(x, name, self.layout) for name in modalities}
        y_t = self.temporal({name: rearrange(v, "n c t v m -> n t (m v c)") for name, v in inputs.items()},
                            self.temporal_pos.to(x.dtype))
        y_s = self.spatial({name: rearrange(v, "n c t v m -> n (m v) (t c)") for name, v in inputs.items()},
                           self.spatial_pos)
        return y_t, y_s


def global_feature(y_t: torch.Tensor, y_s: torch.Tensor) -> torch.Tensor:
    """``[max_t y_t ; max_s y_s]``: ``(n, 2d)``."""
    return torch.cat([y_t.amax(dim=1), y_s.amax(dim=1)], dim=-1)


def dense_feature(y_t: torch.Tensor, y_s: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """Per-frame features ``(n, t, 2d)``: ``[y_t[:, i] ; pooled y_s[:, i]]``.

    The spatial tokens are average-pooled (adaptive, along the token axis) to ``t``
    positions and concatenated to the temporal tokens position by position, as in the
    reference detection path. Spatial position ``i`` is not frame ``i``: it is a summary
    of nearby joints, so this half carries clip-level context. In causal mode that
    context would leak future frames, so only ``y_t`` is returned: ``(n, t, d)``.
    """
    if causal:
        return y_t
    pooled = F.adaptive_avg_pool1d(rearrange(y_s, "n l d -> n d l"), y_t.shape[1])
    return torch.cat([y_t, rearrange(pooled, "n d t -> n t d")], dim=-1)
