"""Target functions for the approximation fits: named presets or a user expression.

Every preset is itself an expression string, run through the same safe parser
(:mod:`tmaf_lab.approx.expr`) as ``--target EXPR``, so a preset and the text it
prints are the same thing. ``sin<k>`` (e.g. ``sin24``) is the family
``sin(k*pi*x)`` and ``sin2d<k>`` is ``sin(k*pi*x)*sin(k*pi*y)``, for any integer k.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from tmaf_lab.approx.expr import ExprError, TargetExpr, parse_expr

# name -> (expression, what it probes)
PRESETS: dict[str, tuple[str, str]] = {
    "smooth": ("sin(pi*x)", "smooth, one half-period per unit"),
    "highfreq": ("sin(16*pi*x)", "high frequency: 16 periods on [-1, 1]"),
    "chirp": ("sin(4*pi*(x+1)**2)", "growing frequency, 0 to 8 periods per unit"),
    "multiscale": ("sin(pi*x) + 0.1*sin(32*pi*x)", "smooth plus a small fast oscillation"),
    "localized": ("sin(pi*x) + 0.5*exp(-400*(x-0.3)**2)", "smooth plus a narrow spike at 0.3"),
    "packet": ("exp(-50*x**2)*sin(40*x)", "localised oscillating wave packet"),
    "kink": ("abs(x) - 0.5*abs(x-0.5)", "piecewise linear (a ReLU net can be exact)"),
    "sin2d": ("sin(4*pi*x)*sin(4*pi*y)", "2-D product of oscillations"),
    "expsin2d": ("exp(sin(pi*x) + y**2)", "2-D smooth"),
    "ring2d": ("sin(8*pi*sqrt(x**2 + y**2))", "2-D radial oscillation"),
}
_FAMILIES = (
    (re.compile(r"sin(\d{1,3})"), "sin({k}*pi*x)"),
    (re.compile(r"sin2d(\d{1,3})"), "sin({k}*pi*x)*sin({k}*pi*y)"),
)


@dataclass(frozen=True)
class Target:
    """A resolved target: ``name`` (preset name or the expression), its expression, dim."""

    name: str
    expr: TargetExpr
    dim: int

    @property
    def text(self) -> str:
        return self.expr.text

    def slug(self) -> str:
        """A folder-safe short name (presets keep their name)."""
        s = re.sub(r"[^A-Za-z0-9]+", "_", self.name).strip("_")
        return (s[:40] or "target").lower()

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """Evaluate at ``points`` of shape (N, dim); returns float64 (N,)."""
        if points.ndim != 2 or points.shape[1] != self.dim:
            raise ValueError(f"points must have shape (N, {self.dim}), got {tuple(points.shape)}")
        if self.dim == 1:
            return self.expr(points[:, 0])
        return self.expr(points[:, 0], points[:, 1])


def preset_expression(name: str) -> str | None:
    """The expression text of preset ``name`` (including ``sin<k>``/``sin2d<k>``), or None."""
    if name in PRESETS:
        return PRESETS[name][0]
    for pattern, template in _FAMILIES:
        m = pattern.fullmatch(name)
        if m:
            return template.format(k=int(m.group(1)))
    return None


def resolve_target(spec: str, dim: int | None = None) -> Target:
    """Turn ``--target`` text into a :class:`Target`.

    Args:
        spec: a preset name (see :data:`PRESETS`, ``sin<k>``, ``sin2d<k>``) or an expression.
        dim: 1 or 2, or None to infer it (2 iff the expression uses ``y``).

    Raises:
        ExprError: bad expression, or an expression in ``y`` with ``dim=1``.
    """
    if dim not in (None, 1, 2):
        raise ValueError(f"dim must be 1 or 2, got {dim!r}")
    text = preset_expression(spec.strip())
    expr = parse_expr(text if text is not None else spec,
                      allowed_vars=("x",) if dim == 1 else ("x", "y"))
    use_dim = dim if dim is not None else expr.dim
    return Target(name=spec.strip(), expr=expr, dim=use_dim)


def grid_points(dim: int, n: int, low: float, high: float,
                dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A dense evaluation grid: n points per axis on [low, high]^dim, shape (n**dim, dim)."""
    axis = torch.linspace(low, high, n, dtype=dtype)
    if dim == 1:
        return axis[:, None]
    gx, gy = torch.meshgrid(axis, axis, indexing="xy")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)


def check_finite(target: Target, points: torch.Tensor, values: torch.Tensor) -> None:
    """Raise :class:`ExprError` if the target is NaN/inf anywhere on ``points``."""
    bad = ~torch.isfinite(values)
    if bad.any():
        where = points[bad.nonzero()[0, 0]].tolist()
        raise ExprError(f"target {target.text!r} is not finite at {int(bad.sum())} of "
                        f"{values.numel()} points (e.g. at {[round(v, 4) for v in where]}); "
                        "change --domain or the expression")


SINGULAR_SHARE = 0.5  # one grid point holding more than this share of ||f||^2 ...
SINGULAR_RATIO = 1e3  # ... and |f| there above 1000x the RMS of all other points: "singular"


def check_not_singular(target: Target, points: torch.Tensor, values: torch.Tensor) -> None:
    """Raise :class:`ExprError` if one grid point dominates the target's norm.

    A target such as ``1/x`` on [-1, 1] is finite on the grid (no point is exactly 0) but
    reaches |f| ~ 1e16 next to its pole. One point then holds nearly all of ||f||^2, so the
    relative L2 error of every fit is ~1.000 whatever the activation, and the fits would
    measure nothing. Such a target is refused with the point and the share it holds. (A
    narrow but finite spike on a coarse grid can hold half the norm too; the ratio to the
    other points' RMS tells the two apart.)
    """
    squares = values.double().reshape(-1) ** 2
    total = float(squares.sum())
    if total == 0.0:
        return  # an all-zero target is refused later, with its own reason
    i = int(squares.argmax())
    share = float(squares[i]) / total
    rest = torch.cat([squares[:i], squares[i + 1:]])  # not total - peak: that cancels to 0
    rest_rms = float(rest.mean()) ** 0.5 if rest.numel() else 0.0
    peak = abs(float(values[i]))
    if share > SINGULAR_SHARE and peak > SINGULAR_RATIO * rest_rms:
        where = [round(v, 6) for v in points[i].tolist()]
        raise ExprError(
            f"target {target.text!r} is singular in practice on this domain: at "
            f"{where} it reaches |f| = {peak:.3g} ({peak / max(rest_rms, 1e-300):.2g} times the "
            f"RMS of the other points) and holds {100 * share:.1f}% of ||f||^2 on the "
            f"{values.numel()}-point evaluation grid, so "
            "every fit's relative L2 error would be ~1 whatever the activation; "
            "choose a --domain away from the singularity")
