"""Seed statistics, paired differences with t intervals, verdicts and number formatting.

Conventions (stated in every report): std is the sample standard deviation (n-1; 0 for one
seed). "X - ReLU" is the *paired* difference: for each seed that both X and ReLU ran, d_s =
X_s - ReLU_s (same seed: same data, same data order, same initial weights); the report gives
the mean of d, and its 95 % t interval mean(d) +- t_{0.975, n-1} sd(d) / sqrt(n) over the n
paired seeds. The verdict follows the interval: "better" or "worse" when it excludes 0,
"no difference detected at n = <n>" when it contains 0, "n/a" below two pairs.
Errors (approx) also get the ratio X / ReLU: the geometric mean over the paired seeds,
exp(mean of log(X_s / ReLU_s)), with the 95 % t interval of the log ratios mapped back; its
verdict can differ from the difference's, since one averages on a log scale and the other not.
The t quantiles come from ``scipy.stats.t``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tmaf_lab.seedstats import mean_std

# Display order: references first, the learned rivals, then TMAF variants, then the rest.
ORDER = ("relu2", "relu", "prelu", "leaky_relu", "leaky_relu2", "gelu", "swiglu", "silu", "xielu",
         "tanh", "pwl", "diagonal", "tridiagonal", "continuous_tridiagonal")
#: each TMAF arm's continuous twin (same grid, same parameter count, continuous in y)
CONTINUOUS_TWIN = {"diagonal": "pwl", "tridiagonal": "continuous_tridiagonal"}

def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (df >= 1): the factor
    of a two-sided 95 % t interval (``scipy.stats.t``)."""
    if df < 1:
        raise ValueError(f"t quantile needs df >= 1, got {df}")
    from scipy.stats import t  # lazily: scipy takes a while to import

    return float(t.ppf(0.975, df))


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float
    n: int


def stat(values: Iterable[float]) -> Stat:
    xs = [float(v) for v in values]
    return Stat(*mean_std(xs), len(xs))


@dataclass(frozen=True)
class Paired:
    """Paired difference X - reference over the seeds both ran."""

    n: int
    mean: float
    std: float
    low: float  # 95 % t interval (NaN below two pairs)
    high: float
    seeds: tuple[int, ...]


def paired(values: Mapping[int, float], ref: Mapping[int, float]) -> Paired:
    """Differences values[s] - ref[s] over the common seeds s; their mean and 95 % t interval."""
    seeds = tuple(sorted(set(values) & set(ref)))
    d = [float(values[s]) - float(ref[s]) for s in seeds]
    mean, std = mean_std(d)
    if len(d) < 2:
        return Paired(len(d), mean, std, float("nan"), float("nan"), seeds)
    half = t975(len(d) - 1) * std / math.sqrt(len(d))
    return Paired(len(d), mean, std, mean - half, mean + half, seeds)


def paired_ratio(values: Mapping[int, float], ref: Mapping[int, float]) -> Paired | None:
    """Paired log ratios log(values[s] / ref[s]) over the common seeds: their mean and 95 % t
    interval, still on the log scale (``exp`` of mean, low and high gives the geometric-mean
    ratio and its interval). None when a value is not positive and finite (no log)."""
    seeds = set(values) & set(ref)
    if not all(0 < float(v[s]) < math.inf for v in (values, ref) for s in seeds):
        return None
    return paired({s: math.log(values[s]) for s in seeds}, {s: math.log(ref[s]) for s in seeds})


def _exp(x: float) -> float:
    """exp that gives inf past the float range (a wide interval at n = 2), never raises."""
    return math.exp(x) if x < 709 else math.inf


def ratio_record(values: Mapping[int, float], ref: Mapping[int, float],
                 lower_is_better: bool) -> dict:
    """The geometric-mean ratio values / ref over the paired seeds, its 95 % interval (NaN
    below two pairs or without a log) and the verdict ('better' when the interval lies below 1
    and lower is better)."""
    p = paired_ratio(values, ref)
    if p is None:
        n = len(set(values) & set(ref))
        return {"n": n, "ratio": math.nan, "low": math.nan, "high": math.nan,
                "seeds": sorted(set(values) & set(ref)),
                "verdict": "n/a (a non-finite or zero value)"}
    return {"n": p.n, "ratio": _exp(p.mean), "low": _exp(p.low), "high": _exp(p.high),
            "seeds": list(p.seeds),
            "verdict": verdict(p, lower_is_better)}


def verdict(p: Paired, lower_is_better: bool) -> str:
    """'better' / 'worse' when the 95 % interval excludes 0, else 'no difference detected at
    n = <n>'; 'n/a' with fewer than two paired seeds."""
    if p.n < 2 or not (math.isfinite(p.low) and math.isfinite(p.high)):
        return "n/a (< 2 paired seeds)"
    if p.low > 0 or p.high < 0:
        above = p.low > 0
        return "worse" if above == lower_is_better else "better"
    return f"no difference detected at n = {p.n}"


ARM_SEPARATOR = " ("  # "diagonal (tmaf_lr=0.003)": what arm_name writes, base_activation reads


def arm_name(activation: str, config: Any) -> str:
    """The activation, plus its own learning rate where ``--tmaf-lr`` (in a run's resolved
    config) differs from ``--lr``: ``diagonal (tmaf_lr=0.003)``. Runs of one study are
    compared arm by arm, so a tuned rate is never averaged with the untuned runs."""
    cfg = config if isinstance(config, dict) else {}
    lr, base = cfg.get("act_lr", cfg.get("tmaf_lr")), cfg.get("lr")  # tmaf_lr: older runs
    try:
        same = lr is None or float(lr) == float(base)
    except (TypeError, ValueError):
        same = False
    return activation if same else f"{activation}{ARM_SEPARATOR}tmaf_lr={lr})"


def base_activation(arm: str) -> str:
    """``diagonal (tmaf_lr=0.003)`` -> ``diagonal``; a plain activation name is returned as is."""
    return arm.split(ARM_SEPARATOR, 1)[0]


def order_key(arm: str) -> tuple[int, str, str]:
    """Sort key: :data:`ORDER`, then by name; an activation's plain arm before its tuned ones."""
    act = base_activation(arm)
    return (ORDER.index(act) if act in ORDER else len(ORDER)), act, arm


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


def fmt_signed(d: float, scale: float = 1.0, digits: int = 3) -> str:
    """A number with an explicit sign, e.g. ``+0.012`` or ``−0.3``."""
    if d is None or not math.isfinite(d):
        return "n/a"
    sign = "+" if d * scale > 0 else ("−" if d * scale < 0 else "±")
    return f"{sign}{fmt(abs(d * scale), digits)}"


def fmt_interval(p: Paired, scale: float = 1.0, digits: int = 3) -> str:
    """``[low, high]`` of a paired difference, signed; 'n/a' below two pairs."""
    if not (math.isfinite(p.low) and math.isfinite(p.high)):
        return "n/a"
    return f"[{fmt_signed(p.low, scale, digits)}, {fmt_signed(p.high, scale, digits)}]"


def fmt_ratio(rec: dict) -> str:
    """``ratio [low, high]`` of a :func:`ratio_record`; the ratio alone below two pairs."""
    if not math.isfinite(rec["ratio"]):
        return "n/a"
    if not (math.isfinite(rec["low"]) and math.isfinite(rec["high"])):
        return fmt(rec["ratio"])
    return f"{fmt(rec['ratio'])} [{fmt(rec['low'])}, {fmt(rec['high'])}]"


def mean_of(rows: Sequence[dict], key: str) -> float:
    vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return sum(vals) / len(vals) if vals else float("nan")
