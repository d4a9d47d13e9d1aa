"""A small causal character-level GPT whose MLP activation is chosen by name.

Shapes: tokens (B, T) int64 with T <= ``context`` -> logits (B, T, V).

    x_0 = E[tok] + P[0..T-1]                                   (B, T, d)
    x_{l+1/2} = x_l + W_o Attn(LN(x_l))                       causal, ``heads`` heads
    x_{l+1}   = x_{l+1/2} + W_2 sigma(W_1 LN(x_{l+1/2}))      W_1: d -> 4d, W_2: 4d -> d
    logits = LN(x_L) E^T                                      head tied to the embedding

Attention is :func:`torch.nn.functional.scaled_dot_product_attention` with ``is_causal=True``.
No biases, no dropout. ``sigma`` comes from a :data:`TokenActFactory` (the lab's
``models.token_act_factory`` turns a name into one): activations that take ``channel_dim``
(TMAF, pwl) get ``channel_dim=-1`` and see (B, T, 4d) with channels innermost; the others
(elementwise ones, PReLU) see the same values as (B*T, 4d).

Gated MLP (``gated=True``, SwiGLU): W_2 (SiLU(W_g LN(x)) * (W_v LN(x))) with hidden width
h = round(8d/3), so its 3 d h weights match the plain MLP's 8 d^2 (341 at d = 128: 130,944
against 131,072 per block); W_g and W_v are one (2h, d) matrix and the activation splits it.

Initialisation ``init="gpt2"`` (GPT-2's): weights N(0, 0.02), the two residual projections of
each block N(0, 0.02 / sqrt(2 L)). ``init="unit"``: the same, except the MLP's input matrix
W_1 (W_g, W_v) ~ N(0, 1/d): after the LayerNorm (unit variance per token) the MLP
pre-activations start at standard deviation about 1, where GELU, ReLU² or a TMAF grid on
[-2, 2] are not nearly linear (at 0.02 and d = 128 their std is about 0.23).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["GPT", "gpt", "INITS", "gated_hidden"]

INITS = ("gpt2", "unit")


#: (channels) -> (activation module, whether it needs (B*T, C) instead of (B, T, C) input)
TokenActFactory = Callable[[int], tuple[nn.Module, bool]]


def gated_hidden(width: int) -> int:
    """The gated MLP's hidden width at the plain MLP's parameter count: round(8 width / 3)."""
    return round(8 * width / 3)


class MLP(nn.Module):
    """W_2 sigma(W_1 x) with hidden width 4d; gated: W_1 is (2h, d), sigma maps 2h -> h."""

    def __init__(self, width: int, act: TokenActFactory, gated: bool = False) -> None:
        super().__init__()
        hidden = gated_hidden(width) if gated else 4 * width
        self.fc = nn.Linear(width, 2 * hidden if gated else hidden, bias=False)
        self.act, self.flatten = act(self.fc.out_features)
        self.proj = nn.Linear(hidden, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        h = self.act(h.reshape(-1, h.shape[-1])).view(*h.shape[:-1], -1) if self.flatten \
            else self.act(h)
        return self.proj(h)


class SelfAttention(nn.Module):
    """Causal multi-head self-attention: (B, T, d) -> (B, T, d)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"gpt: width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for z in self.qkv(x).split(d, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, act: TokenActFactory, gated: bool = False) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width, bias=False)
        self.attn = SelfAttention(width, heads)
        self.ln2 = nn.LayerNorm(width, bias=False)
        self.mlp = MLP(width, act, gated)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Token + position embeddings, ``depth`` pre-LN blocks, final LN, weight-tied head;
    ``gated``: SwiGLU-style MLPs; ``init``: "gpt2" or "unit" (module docstring)."""

    def __init__(self, vocab: int, context: int, act: TokenActFactory, width: int = 128,
                 depth: int = 4, heads: int = 4, gated: bool = False, init: str = "gpt2") -> None:
        super().__init__()
        for name, v in (("vocab", vocab), ("context", context), ("width", width),
                        ("depth", depth), ("heads", heads)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"gpt: {name} must be an int >= 1, got {v!r}")
        if init not in INITS:
            raise ValueError(f"gpt: init must be one of {', '.join(INITS)}, got {init!r}")
        self.context, self.init = context, init
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads, act, gated) for _ in range(depth))
        self.ln = nn.LayerNorm(width, bias=False)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.tok.weight
        self._init(depth)

    def _init(self, depth: int) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
        for blk in self.blocks:
            for w in (blk.attn.proj.weight, blk.mlp.proj.weight):
                nn.init.normal_(w, 0.0, 0.02 / math.sqrt(2 * depth))
            if self.init == "unit":
                fc = blk.mlp.fc.weight
                nn.init.normal_(fc, 0.0, 1.0 / math.sqrt(fc.shape[1]))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, t = tokens.shape
        if t > self.context:
            raise ValueError(f"gpt: {t} tokens exceed the context of {self.context}")
        x = self.tok(tokens) + self.pos(torch.arange(t, device=tokens.device))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, n: int, generator: torch.Generator,
                 temperature: float = 1.0) -> torch.Tensor:
        """Append ``n`` tokens sampled from softmax(logits / temperature) to ``prompt`` (T0,)."""
        out = prompt.clone()
        for _ in range(n):
            logits = self(out[-self.context:][None])[0, -1].float() / temperature
            nxt = torch.multinomial(torch.softmax(logits, -1).cpu(), 1, generator=generator)
            out = torch.cat([out, nxt.to(out.device)])
        return out


def gpt(in_shape: tuple[int, ...], num_classes: int, act: TokenActFactory, width: int = 128,
        depth: int = 4, heads: int = 4, gated: bool = False, init: str = "gpt2") -> GPT:
    """``create_model`` entry: ``in_shape`` = (context,), ``num_classes`` = vocabulary size."""
    return GPT(num_classes, in_shape[0], act, width, depth, heads, gated, init)
