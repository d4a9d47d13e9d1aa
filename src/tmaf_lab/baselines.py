"""The transformer baselines a learned activation is read against: ReLU², LeakyReLU(0.5)²,
xIELU and the SwiGLU gate.

- ``relu2``: ReLU(x)² (So et al. 2021, "Primer"; the activation of modded-nanogpt's record
  line and of nanochat).
- ``leaky_relu2``: LeakyReLU(x, 0.5)², i.e. x² for x > 0 and 0.25 x² for x <= 0.
- ``xielu``: xIELU (Huang et al. 2024, arXiv 2411.13010, "Deriving Activation Functions Using
  Integration"; the activation of Apertus), with two trainable scalars per layer::

      alpha_p = softplus(a_p),  alpha_n = beta + softplus(a_n)
      xIELU(x) = alpha_p x² + beta x                          x > 0
                 alpha_n (expm1(min(x, eps)) - x) + beta x    x <= 0

  with beta = 0.5, eps = -1e-6 and a_p, a_n set so that alpha_p = alpha_n = 0.8 at
  initialisation (the published values; transformers' ``XIELUActivation`` is the same formula).
- ``swiglu``: SiLU(a) * b for an input whose last axis holds [a, b] (Shazeer 2020): (..., 2h)
  -> (..., h). It is not an elementwise activation: the GPT builds a gated MLP around it
  (:mod:`tmaf_lab.gpt`), and no other model takes it.

ReLU² and LeakyReLU² have no parameters; xIELU's two scalars are learned-activation
parameters (trained at the weights' learning rate without weight decay, as TMAF levels).
Inputs of any shape; autograd through plain torch operations.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ReLUSquared", "LeakyReLUSquared", "XIELU", "SwiGLU", "xielu", "BASELINES", "GATED"]


class ReLUSquared(nn.Module):
    """ReLU(x)²."""

    def __init__(self, num_channels: int | None = None) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).square()


class LeakyReLUSquared(nn.Module):
    """LeakyReLU(x, slope)², slope 0.5 by default."""

    def __init__(self, num_channels: int | None = None, negative_slope: float = 0.5) -> None:
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.negative_slope).square()

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope:g}"


def _softplus_inverse(y: float) -> float:
    return math.log(math.expm1(y))


def xielu(x: torch.Tensor, a_p: torch.Tensor, a_n: torch.Tensor, beta: float = 0.5,
          eps: float = -1e-6) -> torch.Tensor:
    """xIELU with raw parameters ``a_p``, ``a_n`` (the formula in the module docstring)."""
    alpha_p = F.softplus(a_p)
    alpha_n = beta + F.softplus(a_n)
    neg = (torch.expm1(torch.clamp(x, max=eps)) - x) * alpha_n + beta * x
    return torch.where(x > 0, alpha_p * x * x + beta * x, neg)


class XIELU(nn.Module):
    """xIELU with its two trainable scalars ``a_p``, ``a_n`` (shape (1,)); ``alpha_p`` and
    ``alpha_n`` are the values they stand for. One module per call site."""

    def __init__(self, num_channels: int | None = None, alpha_p_init: float = 0.8,
                 alpha_n_init: float = 0.8, beta: float = 0.5, eps: float = -1e-6,
                 device=None, dtype=None) -> None:
        super().__init__()
        if not alpha_p_init > 0 or not alpha_n_init > beta:
            raise ValueError(f"xielu: needs alpha_p_init > 0 and alpha_n_init > beta, got "
                             f"{alpha_p_init}, {alpha_n_init} (beta {beta})")
        self.beta, self.eps = float(beta), float(eps)
        self.alpha_p_init, self.alpha_n_init = float(alpha_p_init), float(alpha_n_init)
        kw = {"device": device, "dtype": dtype}
        self.a_p = nn.Parameter(torch.empty(1, **kw))
        self.a_n = nn.Parameter(torch.empty(1, **kw))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.a_p.fill_(_softplus_inverse(self.alpha_p_init))
            self.a_n.fill_(_softplus_inverse(self.alpha_n_init - self.beta))

    @property
    def alpha_p(self) -> torch.Tensor:
        return F.softplus(self.a_p.detach())

    @property
    def alpha_n(self) -> torch.Tensor:
        return self.beta + F.softplus(self.a_n.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return xielu(x, self.a_p, self.a_n, self.beta, self.eps)

    def extra_repr(self) -> str:
        return f"beta={self.beta:g}, eps={self.eps:g}, init alpha_p={self.alpha_p_init:g}, " \
               f"alpha_n={self.alpha_n_init:g}"


class SwiGLU(nn.Module):
    """(..., 2h) -> (..., h): SiLU of the first half times the second half (last axis)."""

    def __init__(self, num_channels: int | None = None) -> None:
        super().__init__()
        if num_channels is not None and num_channels % 2:
            raise ValueError(f"swiglu: the gated input has an even channel count (2h), got "
                             f"{num_channels}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2:
            raise ValueError(f"swiglu: the last axis holds [gate, value] (2h); got {x.shape[-1]}")
        a, b = x.chunk(2, dim=-1)
        return F.silu(a) * b


#: name -> module class (called with the channel count, as tmaf's layer factories)
BASELINES: dict[str, type[nn.Module]] = {"relu2": ReLUSquared, "leaky_relu2": LeakyReLUSquared,
                                         "xielu": XIELU, "swiglu": SwiGLU}
#: names that need a gated MLP (input 2h channels, output h)
GATED = ("swiglu",)
