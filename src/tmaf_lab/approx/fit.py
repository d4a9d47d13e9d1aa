"""The approximation fit: fit one target with an MLP per activation, same budget for all.

Reads top to bottom: config -> data (fixed training sample, dense held-out grid) ->
model (an MLP whose activation comes from ``tmaf.get_act_layer``) -> Adam loop ->
metrics on the grid. Choices that apply to every activation alike:

- inputs are mapped from ``domain`` to [-1, 1]; targets are standardised with the
  training mean/std (errors are reported in the target's own units);
- Linear weights use He (Kaiming-normal, fan-in) init with zero bias (``init="he"``), so
  hidden pre-activations start at unit scale, inside the TMAF breakpoint grid [-R, R];
- seed s fixes the training sample, the minibatches (drawn with replacement; identical for
  every activation) and the model init; Adam with cosine learning-rate decay, ``steps`` steps;
- ``match_params``: each activation gets the width whose total parameter count
  (activation levels included) is closest to a ReLU MLP of ``width``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from tmaf_lab.approx.expr import ExprError
from tmaf_lab.approx.targets import Target, check_finite, check_not_singular, grid_points
from tmaf_lab.seedstats import mean_std

DTYPES = {"float32": torch.float32, "float64": torch.float64}
REFERENCE_ACT = "relu"


@dataclass(frozen=True)
class ApproxConfig:
    """Everything one ``tmaf approx`` invocation does (saved as config.json)."""

    targets: tuple[str, ...] = ("smooth", "highfreq", "multiscale")
    dim: int | None = None  # None: from the target (2 iff it uses y)
    domain: tuple[float, float] = (-1.0, 1.0)
    activations: tuple[str, ...] = ("relu", "prelu", "diagonal", "tridiagonal")
    width: int = 32
    depth: int = 3  # hidden layers
    init: str = "he"  # Linear init: "he" (Kaiming-normal, zero bias) | "torch" (PyTorch default)
    match_params: bool = True
    steps: int = 1000
    lr: float = 3e-3
    tmaf_lr: float | None = None  # None: same lr as everything else
    batch: int = 256
    seeds: tuple[int, ...] = (0, 1, 2)  # seed values (not a count)
    dtype: str = "float32"
    breakpoints: int = 9  # TMAF breakpoints, uniform on [-bp_range, bp_range]
    bp_range: float = 2.0
    calibrate: bool = False  # tmaf.calibrate every TMAF layer on the training sample before step 1
    recalibrate_every: int = 0  # also after every K-th step (not the last): grids follow training
    n_train: int = 4096
    n_test: int = 4001  # grid points per axis for 1-D; 2-D uses n_test_2d per axis
    n_test_2d: int = 101
    history_points: int = 25
    threads: int = 0  # torch intra-op threads (0: torch's default)
    plots: bool = True
    out: str = "runs/approx"
    dry_run: bool = False


@dataclass
class TargetData:
    """Training sample and held-out grid for one target and seed (inputs in [-1, 1])."""

    x_train: torch.Tensor  # (n_train, dim)
    y_train: torch.Tensor  # (n_train,) standardised
    x_test: torch.Tensor  # (n_test, dim)
    y_test: torch.Tensor  # (n_test,) in target units
    mean: float
    std: float
    grid: torch.Tensor = field(repr=False)  # (n_test, dim) in domain units, for plots


def act_layer_of(name: str, cfg: ApproxConfig) -> Callable[[int], nn.Module]:
    """Layer factory for activation ``name``; TMAF names and pwl get the config's breakpoints."""
    import tmaf
    from tmaf_lab.models import act_factory, is_learned_name

    if is_learned_name(name):
        return act_factory(name, breakpoints=tmaf.uniform_breakpoints(
            cfg.breakpoints, -cfg.bp_range, cfg.bp_range))
    return act_factory(name)


def build_mlp(name: str, in_dim: int, width: int, cfg: ApproxConfig) -> nn.Sequential:
    """in_dim -> [Linear(width) -> act] x depth -> Linear(1); one activation per call site."""
    make_act = act_layer_of(name, cfg)
    layers: list[nn.Module] = []
    fan_in = in_dim
    for _ in range(cfg.depth):
        layers += [nn.Linear(fan_in, width), make_act(width)]
        fan_in = width
    layers.append(nn.Linear(fan_in, 1))
    if cfg.init == "he":
        for m in layers:
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
    elif cfg.init != "torch":
        raise ValueError(f"init must be 'he' or 'torch', got {cfg.init!r}")
    model = nn.Sequential(*layers)
    # built in float32; rational-activations' Rational cannot be moved, even to float32
    return model if DTYPES[cfg.dtype] == torch.float32 else model.to(DTYPES[cfg.dtype])


def count_params(model: nn.Module) -> int:
    """All trainable parameters, activation levels/slopes included."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def match_width(name: str, in_dim: int, cfg: ApproxConfig) -> tuple[int, int]:
    """(width, params): the width whose parameter count is closest to ReLU at ``cfg.width``.

    Parameter count grows monotonically with width, so the scan stops at the first
    width above the reference; widths an activation cannot have (``banded<b>`` needs
    width > b) are skipped. Ties go to the smaller model. The match is as close as one
    width step allows: within 5% for the default sizes, coarser for tiny or "full" models.
    """
    ref = count_params(build_mlp(REFERENCE_ACT, in_dim, cfg.width, cfg))
    best: tuple[int, int] | None = None
    for w in range(1, 4 * cfg.width + 1):
        try:
            p = count_params(build_mlp(name, in_dim, w, cfg))
        except ValueError:
            continue  # e.g. bandwidth > width - 1
        if best is None or abs(p - ref) < abs(best[1] - ref):
            best = (w, p)
        if p > ref:
            break
    if best is None:
        raise ValueError(f"activation {name!r} cannot be built at any width 1..{4 * cfg.width}")
    return best


def make_data(target: Target, cfg: ApproxConfig, seed: int) -> TargetData:
    """Uniform random training sample (seeded) and a dense grid, both via the target."""
    low, high = cfg.domain
    gen = torch.Generator().manual_seed(10_000 + seed)
    pts = low + (high - low) * torch.rand(cfg.n_train, target.dim, generator=gen,
                                          dtype=torch.float64)
    n_axis = cfg.n_test if target.dim == 1 else cfg.n_test_2d
    grid = grid_points(target.dim, n_axis, low, high)
    y_tr, y_te = target(pts), target(grid)
    check_finite(target, pts, y_tr)
    check_finite(target, grid, y_te)
    check_not_singular(target, grid, y_te)
    if float(y_te.norm()) <= 1e-12 * y_te.numel() ** 0.5:
        raise ExprError(f"target {target.text!r} is zero on the whole evaluation grid, so its "
                        "relative L2 error is undefined; change --domain or the expression")
    mean, std = float(y_tr.mean()), float(y_tr.std())
    std = std if std > 1e-12 else 1.0
    dt = DTYPES[cfg.dtype]

    def to_unit(p: torch.Tensor) -> torch.Tensor:
        return ((2 * p - (low + high)) / (high - low)).to(dt)

    return TargetData(to_unit(pts), ((y_tr - mean) / std).to(dt), to_unit(grid), y_te,
                      mean, std, grid)


@torch.no_grad()
def predict(model: nn.Module, data: TargetData) -> torch.Tensor:
    """Model output on the grid, float64, in target units."""
    out = torch.cat([model(chunk) for chunk in data.x_test.split(8192)])[:, 0]
    return out.double() * data.std + data.mean


def metrics(pred: torch.Tensor, data: TargetData) -> dict[str, float]:
    """rel_l2 = ||pred - f|| / ||f||, rmse and max |pred - f| over the held-out grid."""
    err = pred - data.y_test
    norm = float(data.y_test.norm())
    return {"rel_l2": float(err.norm()) / norm if norm > 0 else float("nan"),
            "rmse": float(err.pow(2).mean().sqrt()),
            "max_err": float(err.abs().max())}


def recalibrate(model: nn.Module, data: TargetData, opt: torch.optim.Optimizer,
                seed: int) -> dict[str, float] | None:
    """Mid-training ``tmaf.calibrate``: new per-channel grids at the current inputs' quantiles,
    levels refitted by least squares (the function changes by ``rel_change``), and the Adam
    state of the levels reset (its moments belonged to the old intervals). Returns the mean
    over layers of calibrate's statistics, or None without TMAF layers."""
    import tmaf

    stats = calibrate_grids(model, data, seed)
    if stats is None:
        return None
    for _, mod in tmaf.tmaf_modules(model):
        opt.state.pop(mod.levels, None)
    return {k: sum(s[k] for s in stats.values()) / len(stats)
            for k in ("rel_change", "outside_old", "outside_new")}


def train(model: nn.Module, data: TargetData, cfg: ApproxConfig, seed: int,
          on_steps: Callable[[int], None] | None = None,
          recalibrations: list[dict] | None = None) -> tuple[list[dict], float, bool]:
    """Adam + cosine decay on minibatches; returns (history, training seconds, diverged).

    History holds the held-out rel_l2 at ``history_points`` evenly spaced steps;
    evaluation time is excluded from the training seconds. A non-finite loss stops the
    run and sets ``diverged`` (the run is then reported with its NaN errors, not dropped).
    With ``cfg.recalibrate_every`` = K > 0 the grids are recalibrated after every K-th step
    but the last (:func:`recalibrate`; its time counts as training), and each one's
    statistics are appended to ``recalibrations`` with its step.
    """
    from tmaf_lab.models import optimizer_groups

    groups = optimizer_groups(model, act_lr=cfg.tmaf_lr)
    opt = torch.optim.Adam(groups, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * s / cfg.steps)))
    gen = torch.Generator().manual_seed(20_000 + seed)
    n = data.x_train.shape[0]
    every = max(1, cfg.steps // max(1, cfg.history_points))
    history, seconds, done = [], 0.0, 0
    for step in range(1, cfg.steps + 1):
        t0 = time.perf_counter()
        idx = torch.randint(n, (min(cfg.batch, n),), generator=gen)
        loss = (model(data.x_train[idx])[:, 0] - data.y_train[idx]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if cfg.recalibrate_every and step % cfg.recalibrate_every == 0 and step < cfg.steps:
            rec = recalibrate(model, data, opt, seed + step)
            if rec is not None and recalibrations is not None:
                recalibrations.append({"step": step, **rec})
        seconds += time.perf_counter() - t0
        if not math.isfinite(loss.item()):
            if on_steps is not None:
                on_steps(cfg.steps - done)
            return history, seconds, True
        if step % every == 0 or step == cfg.steps:
            history.append({"step": step, "rel_l2": metrics(predict(model, data), data)["rel_l2"]})
            if on_steps is not None:
                on_steps(step - done)
            done = step
    return history, seconds, False


def sample_curves(model: nn.Module, cfg: ApproxConfig, n: int = 201) -> dict:
    """Learned activation shapes of the first/last learned layer: TMAF's diagonal curves
    alpha_i(y) y, or the continuous form's F_i(y) (pwl)."""
    import tmaf

    mods = [m for _, m in tmaf.tmaf_modules(model)]
    if not mods:
        return {}
    r = 1.5 * cfg.bp_range
    y = torch.linspace(-r, r, n, dtype=DTYPES[cfg.dtype])
    out = {}
    for label, mod in (("first layer", mods[0]), ("last layer", mods[-1])):
        with torch.no_grad():
            c = mod.curves(y)  # (C, 2b+1, n)
        out[label] = c[:, c.shape[1] // 2, :].double()
    out["y"] = y.double()
    return out


def calibrate_grids(model: nn.Module, data: TargetData, seed: int) -> dict[str, dict] | None:
    """``tmaf.calibrate`` on the whole training sample (None for a model without TMAF layers).

    At the exact ReLU start the model's function is unchanged; only the grids move."""
    import tmaf

    jump = [name for name, m in tmaf.tmaf_modules(model) if m.form == "jump"]
    if not jump:  # no TMAF, or only the continuous form (pwl), which calibration does not refit
        return None
    return tmaf.calibrate(model, data.x_train, max_samples=data.x_train.shape[0], seed=seed,
                          layers=jump)


def outside_grid(model: nn.Module, data: TargetData) -> list[float]:
    """Per TMAF layer: fraction of held-out pre-activations outside [s_1, s_m] of their channel.

    There alpha is constant, so the activation is linear; a large fraction means the
    breakpoint grid does not cover the pre-activations the trained model produces.
    """
    import tmaf

    if next(tmaf.tmaf_modules(model), None) is None:
        return []
    return list(tmaf.outside_fraction(model, data.x_test).values())


def summarise(runs: Sequence[dict], activations: Sequence[str]) -> dict[str, dict]:
    """Mean and (sample) std over seeds per activation, plus the ratio to ReLU's mean."""
    summary: dict[str, dict] = {}
    for act in activations:
        rows = [r for r in runs if r["activation"] == act]
        if not rows:
            continue
        entry: dict = {"width": rows[0]["width"], "params": rows[0]["params"], "seeds": len(rows)}
        for key in ("rel_l2", "rmse", "max_err", "train_seconds"):
            entry[f"{key}_mean"], entry[f"{key}_std"] = mean_std(r[key] for r in rows)
        summary[act] = entry
    if REFERENCE_ACT in summary:
        ref = summary[REFERENCE_ACT]["rel_l2_mean"]
        for entry in summary.values():
            entry["rel_l2_vs_relu"] = entry["rel_l2_mean"] / ref if ref > 0 else float("nan")
    return summary
