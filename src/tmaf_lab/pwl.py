"""``pwl``: a continuous, per-channel, learnable piecewise-linear activation (lab rival of TMAF).

The family of DeepSplines (Bohra et al. 2020), PWLU (Zhou et al. 2021) and KAN's splines, cut
to TMAF's own grid so that the comparison isolates TMAF's *form*, not learnability:

    f_i(y) = integral_0^y a_i(t) dt,    a_i(t) = a_{i,k} for t in I_k,

with the intervals of diagonal TMAF, I_0 = (-inf, s_1], I_k = (s_k, s_{k+1}], I_m = (s_m, inf),
on the same breakpoints (default :data:`tmaf.DEFAULT_BREAKPOINTS`, m = 9 on [-2, 2]) and the
same parameters per channel: the m+1 slopes a_{i,k}. On I_k, f_i(y) = a_{i,k} y + c_{i,k}, where
the intercepts c follow from the slopes by continuity and f_i(0) = 0. Diagonal TMAF with levels
a is alpha_i(y) y = a_{i,k} y on I_k: the same slopes with every intercept forced to 0, hence
a jump at each breakpoint where the slope changes; ``pwl`` is its continuous twin.

Start: ``init="relu"`` sets slopes 0 left of 0 and 1 right of it (0 must be a breakpoint), which
is exactly ``torch.relu`` (bit for bit in float32, float64 and bfloat16; tested), like TMAF's relu init.

Fast path (plain torch ops): the interval index (on a uniform grid ceil(y / h) instead of a
binary search), two gathers and one multiply-add forward (:func:`pwl_fwd`); backward
(:func:`pwl_bwd`) one gather and two ``bincount`` histograms for the slope and intercept
gradients, in :class:`PWLFunction`; the intercepts' dependence on the slopes is left to
autograd. :func:`piecewise_linear_reference` is the literal sum over intervals used to test it.
Limits: an input of -inf where the outer slope is 0 gives NaN (0 * inf), unlike ``torch.relu``;
no double backward.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["PWLFunction", "PiecewiseLinear", "interval_index", "piecewise_linear",
           "piecewise_linear_reference", "pwl_basis", "pwl_bwd", "pwl_fwd", "pwl_intercepts",
           "uniform_grid"]

INITS = ("relu", "identity")


def _check_breakpoints(bp: Tensor) -> None:
    if not isinstance(bp, Tensor) or not bp.is_floating_point() or bp.dim() != 1 or bp.numel() < 1:
        raise ValueError("pwl: breakpoints must be a 1-D floating-point tensor of shape (m,), m >= 1, "
                         f"got {bp!r}")
    if not bool(torch.isfinite(bp).all()) or (bp.numel() > 1 and not bool((bp.diff() > 0).all())):
        raise ValueError(f"pwl: breakpoints must be finite and strictly increasing, got {bp.tolist()}")


def _channel_dim(x: Tensor, channel_dim: int) -> int:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"pwl: expected a floating-point tensor, got "
                        f"{x.dtype if isinstance(x, Tensor) else type(x).__name__}")
    if x.dim() == 0:
        raise ValueError("pwl: expected an input with a channel dimension, got a 0-d tensor")
    if isinstance(channel_dim, bool) or not isinstance(channel_dim, int) \
            or not -x.dim() <= channel_dim < x.dim():
        raise ValueError(f"pwl: channel_dim={channel_dim!r} is out of range for an input of shape "
                         f"{tuple(x.shape)}")
    return channel_dim % x.dim()


def pwl_basis(breakpoints: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """B (m+1, m+1) with intercepts c = a @ B for slopes a (C, m+1): f = a_k y + c_k on I_k.

    f(s_j) = sum_k a_k L_k(s_j), L_k(y) = clamp(y, I_k) - clamp(0, I_k); interval k is anchored
    at its left breakpoint (I_0 at s_1), so c_k = f(anchor_k) - a_k anchor_k. Depends on the
    breakpoints only (the module keeps it as a buffer).
    """
    bp = breakpoints.to(dtype or breakpoints.dtype)
    inf = bp.new_tensor([math.inf])
    lo, hi = torch.cat([-inf, bp]), torch.cat([bp, inf])  # (m+1,) interval ends
    overlap = (torch.minimum(torch.maximum(bp[:, None], lo), hi)
               - torch.minimum(torch.maximum(bp.new_zeros(1), lo), hi))  # (m, m+1): L_k(s_j)
    anchor = torch.cat([bp[:1], bp])  # (m+1,)
    sel = torch.cat([bp.new_zeros(1, dtype=torch.long), torch.arange(bp.numel(), device=bp.device)])
    return overlap.T[:, sel] - torch.diag(anchor)


def pwl_intercepts(slopes: Tensor, breakpoints: Tensor, basis: Tensor | None = None) -> Tensor:
    """Intercepts c (C, m+1) with f = a_k y + c_k on I_k, from slopes a (C, m+1), bp (m,)."""
    basis = pwl_basis(breakpoints, slopes.dtype) if basis is None else basis.to(slopes.dtype)
    return slopes @ basis + 0.0  # + 0.0 turns -0.0 into +0.0 (ReLU-exact zeros)


def uniform_grid(breakpoints: Tensor) -> tuple[float, int] | None:
    """(h, z) when the breakpoints are s_k = (k - z) h (uniform, 0 among them), else None.

    Computed once on the host by the module, so the forward never syncs with a GPU.
    """
    bp = breakpoints.detach().double().cpu()
    if bp.numel() < 2 or not bool((bp == 0).any()):
        return None
    h = float(bp[1] - bp[0])
    z = int((bp < 0).sum())
    grid = (torch.arange(bp.numel(), dtype=torch.float64) - z) * h
    return (h, z) if bool(((grid - bp).abs() <= 1e-6 * h).all()) else None


def interval_index(x: Tensor, breakpoints: Tensor, grid: tuple[float, int] | None = None) -> Tensor:
    """k with x in I_k = (s_k, s_{k+1}] (number of breakpoints < x), int64, shape of x.

    ``grid`` = (h, z) from :func:`uniform_grid` replaces the binary search by ceil(x / h) + z,
    several times faster; the sign of x / h is exact, so the split at 0 is exact, and an x
    within rounding of another breakpoint may land in the neighbouring interval, where f
    takes the same value (f is continuous). NaN goes to interval 0 (the output stays NaN).
    """
    if grid is None:
        wide = torch.promote_types(x.dtype, breakpoints.dtype)  # compare in the wider dtype
        return torch.bucketize(x.to(wide), breakpoints.to(wide).contiguous())
    (h, z), m = grid, breakpoints.shape[-1]
    u = torch.div(x.detach(), h).ceil_().nan_to_num_(nan=-z).clamp_(-z, m - z)
    return u.add_(z).long()


def pwl_fwd(x: Tensor, slopes: Tensor, intercepts: Tensor, idx: Tensor) -> Tensor:
    """a[idx] x + c[idx] with idx the flat (channel, interval) index of each element."""
    a, c = slopes.to(x.dtype), intercepts.to(x.dtype)
    return torch.addcmul(torch.take(c, idx), torch.take(a, idx), x)


def pwl_bwd(g: Tensor, x: Tensor, slopes: Tensor, idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients (x, slopes, intercepts): a[idx] g, and per-bin sums of g x and of g.

    The bin sums are ``bincount`` histograms (shared-memory bins on CUDA, where scatter-adds
    into C (m+1) addresses would contend), accumulated in float32 or wider.
    """
    flat, n = idx.reshape(-1), slopes.numel()
    acc = torch.promote_types(g.dtype, torch.float32)
    gx = g * torch.take(slopes.to(g.dtype), idx)
    ga = torch.bincount(flat, weights=(g.to(acc) * x.to(acc)).reshape(-1), minlength=n)
    gc = torch.bincount(flat, weights=g.to(acc).reshape(-1), minlength=n)
    return gx, ga.view_as(slopes).to(slopes.dtype), gc.view_as(slopes).to(slopes.dtype)


class PWLFunction(torch.autograd.Function):
    """Autograd for :func:`pwl_fwd` / :func:`pwl_bwd`; ``idx`` gets no gradient.
    Double backward is not supported."""

    @staticmethod
    def forward(ctx, x: Tensor, slopes: Tensor, intercepts: Tensor, idx: Tensor) -> Tensor:
        ctx.save_for_backward(x, slopes, idx)
        return pwl_fwd(x, slopes, intercepts, idx)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor):
        x, slopes, idx = ctx.saved_tensors
        gx, ga, gc = pwl_bwd(g.contiguous(), x, slopes, idx)
        return (gx if ctx.needs_input_grad[0] else None, ga, gc, None)


def piecewise_linear(x: Tensor, slopes: Tensor, breakpoints: Tensor, channel_dim: int = 1,
                     grid: tuple[float, int] | None = None, basis: Tensor | None = None) -> Tensor:
    """f(x) per channel: a_{i,k} x + c_{i,k} with k the interval of x (right-closed, like TMAF).

    Args:
        x: (..., C, ...) input; C along ``channel_dim`` (any C when ``slopes`` has one row).
        slopes: (C, m+1) or (1, m+1) shared slopes.
        breakpoints: (m,) strictly increasing (values are checked by the module, not here).
        grid: (h, z) when the breakpoints are uniform and hold 0 (:func:`uniform_grid`; the
            module passes it), None for any grid.
        basis: :func:`pwl_basis` of the breakpoints (computed when None).
    Returns: same shape and dtype as ``x``.
    """
    cd = _channel_dim(x, channel_dim)
    C, m1 = slopes.shape
    if breakpoints.shape != (m1 - 1,):
        raise ValueError(f"pwl: slopes (C, m+1) = {tuple(slopes.shape)} need breakpoints of shape "
                         f"({m1 - 1},), got {tuple(breakpoints.shape)}")
    if C != 1 and x.shape[cd] != C:
        raise ValueError(f"pwl: {C} channels of slopes but the input has {x.shape[cd]} along "
                         f"channel_dim={channel_dim} (shape {tuple(x.shape)})")
    idx = interval_index(x, breakpoints, grid)
    if C > 1:
        view = [1] * x.dim()
        view[cd] = C
        idx.add_(torch.arange(0, C * m1, m1, device=x.device).view(view))
    return PWLFunction.apply(x, slopes, pwl_intercepts(slopes, breakpoints, basis), idx)


def piecewise_linear_reference(x: Tensor, slopes: Tensor, breakpoints: Tensor,
                               channel_dim: int = 1) -> Tensor:
    """Literal definition, slow: f_i(y) = sum_k a_{i,k} (clamp(y, I_k) - clamp(0, I_k))."""
    cd = _channel_dim(x, channel_dim)
    xm = x.movedim(cd, -1)
    edges = [-math.inf, *breakpoints.tolist(), math.inf]
    cols = []
    for i in range(xm.shape[-1]):
        y = xm[..., i]
        a = slopes[i if slopes.shape[0] > 1 else 0]
        f = torch.zeros_like(y)
        for k in range(len(edges) - 1):
            lo, hi = edges[k], edges[k + 1]
            f = f + a[k] * (y.clamp(lo, hi) - min(max(0.0, lo), hi))
        cols.append(f)
    return torch.stack(cols, dim=-1).movedim(-1, cd)


class PiecewiseLinear(nn.Module):
    """Per-channel continuous piecewise-linear activation; drop-in for ``nn.ReLU``.

    Args:
        num_channels: C (1: one set of slopes shared by all channels, like ``nn.PReLU()``).
        breakpoints: (m,) shared grid; default :data:`tmaf.DEFAULT_BREAKPOINTS`.
        init: "relu" (exact ReLU; needs 0 among the breakpoints) or "identity".
        channel_dim: channel axis of the input (1 for (N, C, ...), -1 for (N, ..., C)).
    Parameters: ``slopes`` (C, m+1). Buffer: ``breakpoints`` (m,).
    """

    def __init__(self, num_channels: int = 1, breakpoints=None, init: str = "relu",
                 channel_dim: int = 1, device=None, dtype=None) -> None:
        super().__init__()
        if isinstance(num_channels, bool) or not isinstance(num_channels, int) or num_channels < 1:
            raise ValueError(f"pwl: num_channels must be an int >= 1, got {num_channels!r}")
        if init not in INITS:
            raise ValueError(f"pwl: unknown init {init!r}; expected one of {INITS}")
        if breakpoints is None:
            import tmaf

            breakpoints = tmaf.DEFAULT_BREAKPOINTS
        bp = torch.as_tensor(breakpoints, dtype=dtype or torch.get_default_dtype()).detach().clone()
        _check_breakpoints(bp)
        if init == "relu" and not bool((bp == 0).any()):
            raise ValueError(f"pwl: init='relu' needs 0 among the breakpoints, got {bp.tolist()}")
        self.num_channels, self.init, self.channel_dim = num_channels, init, channel_dim
        self.register_buffer("breakpoints", bp.to(device))
        self.grid = uniform_grid(bp)  # fast interval index on uniform grids (recomputed on load)
        self.register_buffer("basis", pwl_basis(bp).to(device), persistent=False)
        self.slopes = nn.Parameter(torch.empty(num_channels, bp.numel() + 1, device=device,
                                               dtype=dtype))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.init == "identity":
            self.slopes.fill_(1.0)
            return
        right = torch.arange(self.slopes.shape[1], device=self.slopes.device) > int(
            (self.breakpoints < 0).sum())
        self.slopes.copy_(right.to(self.slopes.dtype).expand_as(self.slopes))

    def forward(self, x: Tensor) -> Tensor:
        return piecewise_linear(x, self.slopes, self.breakpoints, self.channel_dim, self.grid,
                                self.basis)

    @torch.no_grad()
    def curves(self, y: Tensor) -> Tensor:
        """f_i(y) on a 1-D grid ``y`` (G,): returns (C, G)."""
        y = torch.as_tensor(y, dtype=self.slopes.dtype, device=self.slopes.device).reshape(1, -1)
        return piecewise_linear(y.expand(self.slopes.shape[0], -1).T.contiguous(), self.slopes,
                                self.breakpoints, 1, self.grid, self.basis).T

    def extra_repr(self) -> str:
        bp = self.breakpoints
        return (f"num_channels={self.num_channels}, breakpoints={bp.numel()} in "
                f"[{bp.min().item():g}, {bp.max().item():g}], init={self.init!r}, "
                f"channel_dim={self.channel_dim}")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if prefix + "breakpoints" in state_dict:
            _check_breakpoints(state_dict[prefix + "breakpoints"])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.grid = uniform_grid(self.breakpoints)
        self.basis = pwl_basis(self.breakpoints).to(self.basis.device)
