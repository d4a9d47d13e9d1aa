"""The speed targets: their definitions (limits per activation, kernel, call overhead, first
call, saved bytes, training step) and their evaluation on a run's rows (met / missed with the
measured ratio).

Every ratio is a same-run paired median against eager ``nn.ReLU`` (see :mod:`benchmarks.timing`);
with several seeds a target's value is the median over seeds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .candidates import TMAF_BACKENDS

TARGET_M = 9  # tmaf.DEFAULT_BREAKPOINTS
TARGET_M_HIGH = 17
FIRST_CALL_LIMIT_MS = 10.0
MODEL_NAMES = {"mlp": "MNIST MLP", "resnet18": "CIFAR ResNet-18",
               "airbench": "CIFAR airbench (cpu-cifar)", "gpt": "GPT (cpu-gpt)"}


@dataclass(frozen=True)
class ActTarget:
    """A per-activation target: ratio ``phase`` time / eager ReLU for ``kind`` at ``m``."""

    name: str
    kind: str
    m: int
    phase: str
    layout: str  # outer | inner | layer (a small (N, C) input, see is_small_layer)
    limit: Callable[[int], float]  # threads -> limit


SMALL_LAYER_ELEMS = 1 << 17  # (256, 512): where the fixed cost of a call dominates

ACT_TARGETS = (
    ActTarget("diagonal fwd+bwd, channels outer", "diagonal", TARGET_M, "fwd_bwd", "outer",
              lambda t: 1.25 if t == 1 else 1.15),
    ActTarget("diagonal forward, channels outer", "diagonal", TARGET_M, "fwd", "outer",
              lambda t: 1.05),
    ActTarget(f"diagonal fwd+bwd m={TARGET_M_HIGH}, channels outer", "diagonal", TARGET_M_HIGH,
              "fwd_bwd", "outer", lambda t: 1.5),
    ActTarget("diagonal fwd+bwd, channels innermost", "diagonal", TARGET_M, "fwd_bwd", "inner",
              lambda t: 1.5),
    ActTarget("tridiagonal fwd+bwd, channels outer", "tridiagonal", TARGET_M, "fwd_bwd", "outer",
              lambda t: 2.0),
    ActTarget("tridiagonal fwd+bwd, channels innermost", "tridiagonal", TARGET_M, "fwd_bwd",
              "inner", lambda t: 2.0),
    ActTarget("small (N, C) layer fwd+bwd", "diagonal", TARGET_M, "fwd_bwd", "layer",
              lambda t: 1.5),
)
#: kernel-only targets, channels outer: (name, phase, limit) against torch.relu / threshold_backward
KERNEL_TARGETS = (("diagonal forward kernel / torch.relu, channels outer", "fwd", 1.05),
                  ("diagonal backward kernel / threshold_backward, channels outer", "bwd", 1.35))
OVERHEAD_TARGET = "per-call overhead fwd+bwd vs nn.ReLU (small layer)"
#: the continuous form's native fwd+bwd over the jump form's, same kind of band, same run
CONTINUOUS_TARGETS = (("continuous / jump diagonal fwd+bwd", "diagonal", 1.05),
                      ("continuous / jump tridiagonal fwd+bwd", "tridiagonal", 1.05))
SAVED_TARGET = "saved bytes for backward = ReLU's"
FIRST_TARGET = "first call of a new shape"
#: training step / ReLU's, every model measured (the GPT included; every arm of the GPT study,
#: continuous forms too, against ReLU and ReLU²: tmaf_lab.bench.gpt_arms, same limit)
TRAIN_LIMITS = {"diagonal": 1.05, "tridiagonal": 1.05}
KERNEL_TARGET_NAMES = [name for name, _, _ in KERNEL_TARGETS]
TARGET_NAMES = ([t.name for t in ACT_TARGETS] + KERNEL_TARGET_NAMES
                + [name for name, _, _ in CONTINUOUS_TARGETS]
                + [OVERHEAD_TARGET, SAVED_TARGET, FIRST_TARGET]
                + [f"training step, {k}" for k in TRAIN_LIMITS])


def is_small_layer(shape: str) -> bool:
    """A 2-D (N, C) shape of at most SMALL_LAYER_ELEMS elements, e.g. "256x512"."""
    dims = shape.split("x")
    return len(dims) == 2 and all(d.isdigit() for d in dims) and (
        int(dims[0]) * int(dims[1]) <= SMALL_LAYER_ELEMS)


def _layout(row: dict) -> str:
    """The row's layout (CSVs of older runs have no column: derive it from the shape)."""
    if "layout" in row:
        return row["layout"]
    shape = str(row["shape"])
    return "outer" if shape.count("x") > 1 and not shape.endswith("-cl") else "inner"


def group_rows(rows: Iterable[dict], keys: Sequence[str]) -> dict[tuple, list[dict]]:
    """Rows grouped by ``keys`` (in first-seen order): the seeds of one measurement together."""
    out: dict[tuple, list[dict]] = {}
    for row in rows:
        out.setdefault(tuple(row.get(k, 0) for k in keys), []).append(row)
    return out


def median_of(rows: Sequence[dict], col: str) -> float:
    values = [float(r[col]) for r in rows if not math.isnan(float(r[col]))]
    return statistics.median(values) if values else float("nan")


def _backends(*row_sets: Sequence[dict]) -> list[str]:
    """The TMAF backends measured, ``native`` first; not ``reference`` (the test oracle)."""
    seen = {r.get("mode") for rows in row_sets for r in rows
            if r.get("kind") in ("diagonal", "tridiagonal")}
    seen |= {r["activation"].split("/")[1] for rows in row_sets for r in rows
             if "/" in str(r.get("activation", ""))}
    return [b for b in TMAF_BACKENDS if b in seen and b != "reference"]


def _target(name: str, where: str, threads, backend: str, value: float, unit: str,
            limit: float | None, seeds: int) -> dict:
    """One target row; ``limit`` None: a measurement reported beside the targets (no limit)."""
    return {"target": name, "where": where, "threads": threads, "backend": backend,
            "measured": value, "unit": unit, "limit": limit,
            "met": None if limit is None else bool(value <= limit + 1e-12), "seeds": seeds}


def kernel_targets(kernel_rows: Sequence[dict]) -> list[dict]:
    """The native kernels alone against ATen's ReLU kernels, diagonal, m = 9, channels outer."""
    groups = group_rows(kernel_rows, ("shape", "threads", "phase", "kind", "m", "layout"))
    shapes = list(dict.fromkeys(r["shape"] for r in kernel_rows))
    threads = sorted({r["threads"] for r in kernel_rows})
    out = []
    for name, phase, limit in KERNEL_TARGETS:
        for shape in shapes:
            for t in threads:
                rows = groups.get((shape, t, phase, "diagonal", TARGET_M, "outer"))
                if rows:
                    out.append(_target(name, shape, t, "native",
                                       median_of(rows, "ratio_vs_relu_kernel"), "x", limit,
                                       len(rows)))
    return out


def continuous_targets(act_rows: Sequence[dict]) -> list[dict]:
    """The continuous form's native fwd+bwd time over the jump form's (the ratio of their
    paired ratios to ReLU, measured in the same rounds), m = 9, every shape and thread count."""
    groups = group_rows(act_rows, ("shape", "threads", "phase", "kind", "mode", "m"))
    out = []
    for name, kind, limit in CONTINUOUS_TARGETS:
        for (shape, t, phase, k, mode, m), rows in groups.items():
            if (phase, k, mode, m) != ("fwd_bwd", f"continuous_{kind}", "native", TARGET_M):
                continue
            jump = groups.get((shape, t, phase, kind, mode, m))
            if jump:
                ratio = (median_of(rows, "ratio_vs_relu_eager")
                         / median_of(jump, "ratio_vs_relu_eager"))
                out.append(_target(name, shape, t, "native", ratio, "x", limit, len(rows)))
    return out


def overhead_targets(act_rows: Sequence[dict], backends: Sequence[str]) -> list[dict]:
    """The fixed cost of a call on a small layer: TMAF's fwd+bwd median minus eager ReLU's, in us."""
    groups = group_rows(act_rows, ("shape", "threads", "phase", "kind", "mode", "m"))
    out = []
    for (shape, t, phase, kind, mode, m), rows in groups.items():
        if phase == "fwd_bwd" and kind == "diagonal" and m == TARGET_M and mode in backends \
                and is_small_layer(shape):
            relu = groups.get((shape, t, phase, "relu", "eager", 0))
            if relu:
                extra = 1e3 * (median_of(rows, "median_ms") - median_of(relu, "median_ms"))
                out.append(_target(OVERHEAD_TARGET, shape, t, mode, extra, "us", None, len(rows)))
    return out


def targets(act_rows: Sequence[dict], train_rows: Sequence[dict],
            first_rows: Sequence[dict] = (), kernel_rows: Sequence[dict] = (),
            isa: str = "") -> list[dict]:
    """One row per (target, shape or model, threads, TMAF backend): measured, limit, met, and
    the native kernels' instruction set ``isa``.

    Backends in ``TMAF_BACKENDS`` order (``native`` first, the default on CPU; ``reference``
    left out); only what the run measured.
    """
    return [{**row, "isa": isa} for row in _targets(act_rows, train_rows, first_rows, kernel_rows)]


def _targets(act_rows, train_rows, first_rows, kernel_rows) -> list[dict]:
    out = []
    backends = _backends(act_rows, train_rows, first_rows)
    keys = ("shape", "threads", "phase", "kind", "mode", "m")
    act = group_rows(act_rows, keys)
    shapes = list(dict.fromkeys(r["shape"] for r in act_rows))
    threads = sorted({r.get("threads", 0) for r in act_rows})
    layouts = {r["shape"]: _layout(r) for r in act_rows}
    for tg in ACT_TARGETS:
        for backend in backends:
            for shape in shapes:
                if not (is_small_layer(shape) if tg.layout == "layer"
                        else layouts[shape] == tg.layout):
                    continue
                for t in threads:
                    rows = act.get((shape, t, tg.phase, tg.kind, backend, tg.m))
                    if rows:
                        out.append(_target(tg.name, shape, t, backend,
                                           median_of(rows, "ratio_vs_relu_eager"), "x",
                                           tg.limit(t), len(rows)))
    for backend in backends:  # bytes do not depend on the thread count: the first one timed
        for kind in ("diagonal", "tridiagonal"):
            for shape in shapes:
                rows = next((act[k] for t in threads
                             if (k := (shape, t, "fwd", kind, backend, TARGET_M)) in act), None)
                if rows:
                    out.append(_target(SAVED_TARGET, f"{shape}, {kind}", "any", backend,
                                       median_of(rows, "saved_act_bytes_vs_relu_eager"), "x",
                                       1.0, len(rows)))
    first = group_rows([{**r, "base_shape": r.get("base_shape", r["shape"])} for r in first_rows],
                    ("base_shape", "threads", "kind", "mode", "m"))
    for backend in backends:  # the median over the fresh shapes (and seeds) of each base shape
        for (shape, t, kind, mode, m), rows in first.items():
            if mode == backend and m == TARGET_M:
                out.append(_target(FIRST_TARGET, f"{shape}-like, {kind}", t, backend,
                                   median_of(rows, "first_call_ms"), "ms", FIRST_CALL_LIMIT_MS,
                                   len(rows)))
    out += (kernel_targets(kernel_rows) + continuous_targets(act_rows)
            + overhead_targets(act_rows, backends))
    contiguous = [r for r in train_rows if r.get("memory_format", "contiguous") == "contiguous"]
    train = group_rows(contiguous, ("model", "batch", "threads", "activation"))
    for kind, limit in TRAIN_LIMITS.items():
        for backend in backends:
            for (model, batch, t, activation), rows in train.items():
                if activation == f"{kind}/{backend}":
                    out.append(_target(f"training step, {kind}",
                                       f"{MODEL_NAMES.get(model, model)}, batch {batch}", t,
                                       backend, median_of(rows, "ratio_vs_relu"), "x", limit,
                                       len(rows)))
    return out
