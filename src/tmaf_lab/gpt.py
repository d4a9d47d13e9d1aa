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
Initialisation (GPT-2's): weights N(0, 0.02), the two residual projections of each block
N(0, 0.02 / sqrt(2 L)).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["GPT", "gpt"]


#: (channels) -> (activation module, whether it needs (B*T, C) instead of (B, T, C) input)
TokenActFactory = Callable[[int], tuple[nn.Module, bool]]


class MLP(nn.Module):
    """W_2 sigma(W_1 x) with hidden width 4d."""

    def __init__(self, width: int, act: TokenActFactory) -> None:
        super().__init__()
        self.fc = nn.Linear(width, 4 * width, bias=False)
        self.act, self.flatten = act(4 * width)
        self.proj = nn.Linear(4 * width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        h = self.act(h.reshape(-1, h.shape[-1])).view_as(h) if self.flatten else self.act(h)
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
    def __init__(self, width: int, heads: int, act: TokenActFactory) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width, bias=False)
        self.attn = SelfAttention(width, heads)
        self.ln2 = nn.LayerNorm(width, bias=False)
        self.mlp = MLP(width, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Token + position embeddings, ``depth`` pre-LN blocks, final LN, weight-tied head."""

    def __init__(self, vocab: int, context: int, act: TokenActFactory, width: int = 128,
                 depth: int = 4, heads: int = 4) -> None:
        super().__init__()
        for name, v in (("vocab", vocab), ("context", context), ("width", width),
                        ("depth", depth), ("heads", heads)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"gpt: {name} must be an int >= 1, got {v!r}")
        self.context = context
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads, act) for _ in range(depth))
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
        depth: int = 4, heads: int = 4) -> GPT:
    """``create_model`` entry: ``in_shape`` = (context,), ``num_classes`` = vocabulary size."""
    return GPT(num_classes, in_shape[0], act, width, depth, heads)
