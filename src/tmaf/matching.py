"""A start that keeps a given activation: ``init="match"`` (docs/method.md section 7).

A TMAF term is fitted to an elementwise function f (a name in :data:`FUNCTIONS` or any callable
Tensor -> Tensor), so that a converted model starts computing what it computed before.

**Continuous form** (the levels are slopes, section 6): the term interpolates f at the
breakpoints, u_q = f(s_q), with the slopes between them, and outside the grid the *asymptotic*
slopes of f, lim f(y)/y at -inf and +inf (0 and 1 for GELU and SiLU, 0 and 0 for tanh). Where
that limit is not finite (f grows faster than linearly, e.g. relu2 on the right) no end slope
matches f, and the end slope is the tangent slope f'(s) at the end breakpoint (the best local
match just outside the grid). F(0) = 0 fixes the function, so interpolation is exact when 0 is a
breakpoint and f(0) = 0; otherwise the term is that interpolant shifted to vanish at 0.

**Jump form** (alpha(y) y, section 2): on each inner interval (s_k, s_{k+1}] the level is the
least-squares fit of alpha y to f on the dense sample of :func:`sample` (``SAMPLES`` + 1
evenly spaced points, both ends): t_k = sum y f(y) / sum y^2. Outside the grid the level
is the limit of f(y)/y (the asymptotic slope); where it is not finite, f(s)/s at the end
breakpoint s (the term then meets f just outside the grid), or f'(0) if s = 0.

The asymptotic slope of f is measured, not declared: the secant slopes of f over [R, 2R] at
R = 1e3 S and R = 1e4 S (S = max(1, max |s|)) must agree within 1e-3 (relative, or absolute
below 1); otherwise the slope counts as not finite. A slope below 1e-6 in size is taken as 0.

The error of a fit, :func:`fit_error`, is sup |term(y) - f(y)| over the grid's range
(s_1, s_m], the union of the inner intervals, measured on the same dense sample of each
interval (both ends, the jump form's piece taken to its left end; with one breakpoint, s_1).
Every TMAF term is 0 at y = 0: a function with f(0) != 0 (sigmoid, softplus) cannot be matched
near 0, and the modules warn.

Everything here computes in float64 on the breakpoints' device and returns float64 tensors with
one row per channel of the breakpoints: (m,) breakpoints give one row, (C, m) give C.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ._continuous import intercepts, levels_from_knots

__all__ = ["FUNCTIONS", "SAMPLES", "resolve", "label", "sample", "asymptotic_slopes",
           "jump_levels", "continuous_knots", "start_levels", "term_values", "fit_error"]

#: evenly spaced points per inner interval in the jump form's fit and in :func:`fit_error`
SAMPLES = 256


def relu2(x: Tensor) -> Tensor:
    """relu(x)**2 (Primer's squared ReLU)."""
    return F.relu(x).square()


def gelu_tanh(x: Tensor) -> Tensor:
    """GELU's tanh approximation (transformers' ``gelu_new`` / ``NewGELUActivation``)."""
    return F.gelu(x, approximate="tanh")


def quick_gelu(x: Tensor) -> Tensor:
    """x * sigmoid(1.702 x) (CLIP's QuickGELU)."""
    return x * torch.sigmoid(1.702 * x)


def leaky_relu(x: Tensor) -> Tensor:
    """leaky ReLU with negative slope 0.01 (``nn.LeakyReLU()``)."""
    return F.leaky_relu(x, 0.01)


def identity(x: Tensor) -> Tensor:
    return x


#: The named functions ``init="match"`` can fit, by canonical name.
FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu, "gelu": F.gelu, "gelu_tanh": gelu_tanh, "silu": F.silu, "relu2": relu2,
    "leaky_relu": leaky_relu, "quick_gelu": quick_gelu, "mish": F.mish, "elu": F.elu,
    "selu": F.selu, "celu": F.celu, "relu6": F.relu6, "hardswish": F.hardswish,
    "hardtanh": F.hardtanh, "softsign": F.softsign, "softplus": F.softplus, "tanh": torch.tanh,
    "sigmoid": torch.sigmoid, "identity": identity,
}


def resolve(match) -> Callable[[Tensor], Tensor]:
    """The function for ``match``: a name of :data:`FUNCTIONS` or a callable."""
    if match is None:
        raise ValueError("tmaf: init='match' needs match=: the name of the function to fit (one of "
                         f"{', '.join(FUNCTIONS)}) or a callable Tensor -> Tensor")
    if isinstance(match, str):
        key = match.strip().lower().replace("-", "_")
        if key not in FUNCTIONS:
            raise ValueError(f"tmaf: unknown function to match {match!r}; expected one of "
                             f"{', '.join(FUNCTIONS)}, or a callable Tensor -> Tensor")
        return FUNCTIONS[key]
    if not callable(match):
        raise TypeError(f"tmaf: match= must be a function name or a callable Tensor -> Tensor, got "
                        f"{type(match).__name__}")
    return match


def label(match) -> str:
    """A short printable name of ``match`` for ``extra_repr``."""
    if isinstance(match, str):
        return repr(match)
    name = getattr(match, "__qualname__", None) or type(match).__name__
    return name if isinstance(name, str) else type(match).__name__


def _eval(f: Callable, y: Tensor) -> Tensor:
    """f(y) in float64; a callable that refuses float64 (e.g. a module with float32
    parameters) is evaluated in float32."""
    with torch.no_grad():
        try:
            out = f(y)
        except (RuntimeError, TypeError):
            out = f(y.float())
    if not isinstance(out, Tensor) or out.shape != y.shape:
        raise ValueError(f"tmaf: match= must map a tensor to a tensor of the same shape (an "
                         f"elementwise function); for shape {tuple(y.shape)} it returned "
                         f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}")
    return out.to(torch.float64)


def _grid(breakpoints: Tensor) -> Tensor:
    return breakpoints.detach().to(torch.float64).reshape(-1, breakpoints.shape[-1])


def sample(breakpoints: Tensor) -> Tensor:
    """The dense sample of the grid's range, (rows, m-1, SAMPLES+1): on each inner interval
    k = 1..m-1, s_k + (s_{k+1} - s_k) j / SAMPLES for j = 0..SAMPLES (both ends). With one
    breakpoint, (rows, 1, 1) holding s_1."""
    s = _grid(breakpoints)
    if s.shape[-1] == 1:
        return s[:, :, None].clone()
    j = torch.arange(SAMPLES + 1, dtype=s.dtype, device=s.device) / SAMPLES
    return s[:, :-1, None] + (s[:, 1:] - s[:, :-1])[..., None] * j


def _secant(f: Callable, r: Tensor) -> Tensor:
    v = _eval(f, r)
    return (v[..., 1] - v[..., 0]) / (r[..., 1] - r[..., 0])


def asymptotic_slopes(f: Callable, breakpoints: Tensor) -> tuple[float | None, float | None]:
    """lim f(y)/y at -inf and +inf as measured (module docstring); None where not finite."""
    s = _grid(breakpoints)
    scale = max(1.0, float(s.abs().max()))
    out = []
    for side in (-1.0, 1.0):
        r = side * scale * torch.tensor([[1e3, 2e3], [1e4, 2e4]], dtype=s.dtype, device=s.device)
        near, far = _secant(f, r).tolist()
        ok = math.isfinite(near) and math.isfinite(far) and abs(near - far) <= 1e-3 * max(1.0, abs(far))
        # below 1e-6 a slope is 0 within the probe's accuracy (softsign's decays as 1/R^2)
        out.append((0.0 if abs(far) < 1e-6 else far) if ok else None)
    return out[0], out[1]


def _derivative(f: Callable, s: Tensor) -> Tensor:
    h = 1e-4 * max(1.0, float(s.abs().max()))
    return (_eval(f, s + h) - _eval(f, s - h)) / (2 * h)


def _check_finite(values: Tensor, what: str) -> None:
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"tmaf: init='match': the function to match is not finite {what}")


def jump_levels(f: Callable, breakpoints: Tensor) -> Tensor:
    """The jump form's levels (rows, m+1): least squares inside, limits of f(y)/y outside."""
    s = _grid(breakpoints)
    rows, m = s.shape
    inner = s.new_empty(rows, 0)
    if m > 1:
        y = sample(s)
        fy = _eval(f, y)
        _check_finite(fy, "on the grid's range")
        inner = (y * fy).sum(-1) / y.square().sum(-1)
    left, right = asymptotic_slopes(f, s)
    ends = []
    for limit, edge in ((left, s[:, :1]), (right, s[:, -1:])):
        if limit is not None:
            ends.append(s.new_full((rows, 1), limit))
        else:  # f(s)/s at the edge, f'(0) where the edge is 0
            safe = torch.where(edge == 0, 1.0, edge)
            ends.append(torch.where(edge == 0, _derivative(f, edge), _eval(f, edge) / safe))
    lv = torch.cat([ends[0], inner, ends[1]], dim=-1)
    _check_finite(lv, "at the end breakpoints")
    return lv


def continuous_knots(f: Callable, breakpoints: Tensor) -> tuple[Tensor, Tensor]:
    """The continuous form's values f(s_q) (rows, m) and end slopes (rows, 2)."""
    s = _grid(breakpoints)
    values = _eval(f, s)
    _check_finite(values, "at the breakpoints")
    left, right = asymptotic_slopes(f, s)
    ends = torch.cat([s.new_full((s.shape[0], 1), v) if v is not None else _derivative(f, e)
                      for v, e in ((left, s[:, :1]), (right, s[:, -1:]))], dim=-1)
    _check_finite(ends, "near the end breakpoints")
    return values, ends


def start_levels(f: Callable, breakpoints: Tensor, form: str) -> Tensor:
    """The diagonal term's levels (rows, m+1) of the fit of ``f`` in ``form``."""
    if form == "jump":
        return jump_levels(f, breakpoints)
    values, ends = continuous_knots(f, breakpoints)
    return levels_from_knots(_grid(breakpoints), values, ends)


def term_values(levels: Tensor, breakpoints: Tensor, y: Tensor, form: str) -> Tensor:
    """One term per channel at points ``y`` (rows|C, G), in float64: alpha(y) y (jump) or
    F(y) (continuous). ``levels`` (C, m+1); ``breakpoints`` (m,) or (C, m)."""
    lv = levels.detach().to(torch.float64)
    s = _grid(breakpoints).to(lv.device)
    C = lv.shape[0]
    y = y.to(lv.device, torch.float64).expand(C, -1)
    k = torch.searchsorted(s.expand(C, -1).contiguous(), y.contiguous())  # #{s_q < y}
    out = lv.gather(1, k) * y
    if form == "continuous":
        bp = breakpoints.detach().to(torch.float64)
        out = out + intercepts(bp, lv[:, None])[:, 0].gather(1, k)
    return out


def fit_error(f: Callable, levels: Tensor, breakpoints: Tensor, form: str) -> float:
    """sup |term(y) - f(y)| over the grid's range, measured on :func:`sample`, for the diagonal
    term's ``levels`` (C, m+1) as stored (their own dtype, evaluated in float64).

    Each inner interval's points are evaluated with that interval's piece (so at s_k the
    jump form counts its limit from the right): the maximum over every channel of the closed
    pieces, the supremum over (s_1, s_m] up to the sampling."""
    lv = levels.detach().to(torch.float64)
    y = sample(breakpoints).to(lv.device)  # (rows, m-1, n+1)
    inner = slice(1, -1) if lv.shape[-1] > 2 else slice(0, 1)
    term = lv[:, inner, None] * y
    if form == "continuous":
        c = intercepts(breakpoints.detach().to(torch.float64).to(lv.device), lv[:, None])[:, 0]
        term = term + c[:, inner, None]
    return float((term - _eval(f, y)).abs().max())
