"""Seed statistics and number formatting for the report.

Conventions (stated in every report): std is the sample standard deviation (n-1; 0 for
one seed), and "X - ReLU" is the difference of the means with its standard error
sqrt(s_x^2/n_x + s_r^2/n_r); a difference within NOISE_SE standard errors is reported as
"within noise" (with 2-3 seeds the standard error itself is rough, so this is a screen,
not a significance test).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tmaf_lab.seedstats import mean_std

# Display order: references first, then TMAF variants, then anything else alphabetically.
ORDER = ("relu", "prelu", "leaky_relu", "gelu", "silu", "tanh", "diagonal", "tridiagonal")
NOISE_SE = 2.0  # |difference| <= 2 standard errors: "within noise"


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float
    n: int

    @property
    def sem2(self) -> float:
        return self.std**2 / self.n if self.n else float("nan")


def stat(values: Iterable[float]) -> Stat:
    xs = [float(v) for v in values]
    return Stat(*mean_std(xs), len(xs))


def diff(a: Stat, ref: Stat) -> tuple[float, float]:
    """(mean_a - mean_ref, standard error of that difference)."""
    return a.mean - ref.mean, math.sqrt(a.sem2 + ref.sem2)


def order_key(activation: str) -> tuple[int, str]:
    if activation in ORDER:
        return ORDER.index(activation), activation
    return len(ORDER), activation


def sort_activations(names: Iterable[str]) -> list[str]:
    return sorted(set(names), key=order_key)


def fmt(x: float, digits: int = 3) -> str:
    """Compact number: fixed for moderate magnitudes, scientific for tiny or huge ones."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if x != 0 and (abs(x) < 1e-4 or abs(x) >= 1e9):
        return f"{x:.{digits - 1}e}"
    if abs(x) >= 10**digits:
        return f"{x:.0f}"
    return f"{x:.{digits}g}"


def fmt_stat(s: Stat, scale: float = 1.0, digits: int = 3) -> str:
    if s.n == 0:
        return "n/a"
    if s.n == 1:
        return f"{fmt(s.mean * scale, digits)} (n=1)"
    return f"{fmt(s.mean * scale, digits)} ± {fmt(s.std * scale, digits)}"


def fmt_signed(d: float, se: float, scale: float = 1.0, digits: int = 3) -> str:
    """A difference with an explicit sign and its standard error, e.g. ``-0.012 ± 0.004``."""
    if not math.isfinite(d):
        return "n/a"
    sign = "+" if d * scale > 0 else ("−" if d * scale < 0 else "±")
    body = f"{sign}{fmt(abs(d * scale), digits)}"
    if math.isfinite(se) and se > 0:
        body += f" ± {fmt(se * scale, digits)}"
    return body


def verdict(d: float, se: float, lower_is_better: bool) -> str:
    """'better' / 'worse' than the reference, or 'within noise' when |d| <= NOISE_SE * se."""
    if not math.isfinite(d):
        return ""
    if d == 0 or (math.isfinite(se) and abs(d) <= NOISE_SE * se):
        return "within noise"
    better = d < 0 if lower_is_better else d > 0
    return "better" if better else "worse"


def mean_of(rows: Sequence[dict], key: str) -> float:
    vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return sum(vals) / len(vals) if vals else float("nan")
