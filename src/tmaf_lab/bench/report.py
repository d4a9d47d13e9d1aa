"""CSV output, the speed targets (met / missed with the measured ratio), a Markdown summary.

Every ratio is a same-run paired median against eager ``nn.ReLU`` (see :mod:`benchmarks.timing`);
with several seeds a target's value is the median over seeds.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tmaf_lab.mdtable import markdown_table
from tmaf_lab.runmeta import atomic_write_text

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


def write_csv(path: Path, rows: Sequence[dict]) -> None:
    if not rows:
        return
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def _layout(row: dict) -> str:
    """The row's layout (CSVs of older runs have no column: derive it from the shape)."""
    if "layout" in row:
        return row["layout"]
    shape = str(row["shape"])
    return "outer" if shape.count("x") > 1 and not shape.endswith("-cl") else "inner"


def _groups(rows: Iterable[dict], keys: Sequence[str]) -> dict[tuple, list[dict]]:
    """Rows grouped by ``keys`` (in first-seen order): the seeds of one measurement together."""
    out: dict[tuple, list[dict]] = {}
    for row in rows:
        out.setdefault(tuple(row.get(k, 0) for k in keys), []).append(row)
    return out


def _median(rows: Sequence[dict], col: str) -> float:
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
    groups = _groups(kernel_rows, ("shape", "threads", "phase", "kind", "m", "layout"))
    shapes = list(dict.fromkeys(r["shape"] for r in kernel_rows))
    threads = sorted({r["threads"] for r in kernel_rows})
    out = []
    for name, phase, limit in KERNEL_TARGETS:
        for shape in shapes:
            for t in threads:
                rows = groups.get((shape, t, phase, "diagonal", TARGET_M, "outer"))
                if rows:
                    out.append(_target(name, shape, t, "native",
                                       _median(rows, "ratio_vs_relu_kernel"), "x", limit, len(rows)))
    return out


def continuous_targets(act_rows: Sequence[dict]) -> list[dict]:
    """The continuous form's native fwd+bwd time over the jump form's (the ratio of their
    paired ratios to ReLU, measured in the same rounds), m = 9, every shape and thread count."""
    groups = _groups(act_rows, ("shape", "threads", "phase", "kind", "mode", "m"))
    out = []
    for name, kind, limit in CONTINUOUS_TARGETS:
        for (shape, t, phase, k, mode, m), rows in groups.items():
            if (phase, k, mode, m) != ("fwd_bwd", f"continuous_{kind}", "native", TARGET_M):
                continue
            jump = groups.get((shape, t, phase, kind, mode, m))
            if jump:
                ratio = _median(rows, "ratio_vs_relu_eager") / _median(jump, "ratio_vs_relu_eager")
                out.append(_target(name, shape, t, "native", ratio, "x", limit, len(rows)))
    return out


def overhead_targets(act_rows: Sequence[dict], backends: Sequence[str]) -> list[dict]:
    """The fixed cost of a call on a small layer: TMAF's fwd+bwd median minus eager ReLU's, in us."""
    groups = _groups(act_rows, ("shape", "threads", "phase", "kind", "mode", "m"))
    out = []
    for (shape, t, phase, kind, mode, m), rows in groups.items():
        if phase == "fwd_bwd" and kind == "diagonal" and m == TARGET_M and mode in backends \
                and is_small_layer(shape):
            relu = groups.get((shape, t, phase, "relu", "eager", 0))
            if relu:
                extra = 1e3 * (_median(rows, "median_ms") - _median(relu, "median_ms"))
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
    act = _groups(act_rows, keys)
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
                                           _median(rows, "ratio_vs_relu_eager"), "x",
                                           tg.limit(t), len(rows)))
    for backend in backends:  # bytes do not depend on the thread count: the first one timed
        for kind in ("diagonal", "tridiagonal"):
            for shape in shapes:
                rows = next((act[k] for t in threads
                             if (k := (shape, t, "fwd", kind, backend, TARGET_M)) in act), None)
                if rows:
                    out.append(_target(SAVED_TARGET, f"{shape}, {kind}", "any", backend,
                                       _median(rows, "saved_act_bytes_vs_relu_eager"), "x",
                                       1.0, len(rows)))
    first = _groups([{**r, "base_shape": r.get("base_shape", r["shape"])} for r in first_rows],
                    ("base_shape", "threads", "kind", "mode", "m"))
    for backend in backends:  # the median over the fresh shapes (and seeds) of each base shape
        for (shape, t, kind, mode, m), rows in first.items():
            if mode == backend and m == TARGET_M:
                out.append(_target(FIRST_TARGET, f"{shape}-like, {kind}", t, backend,
                                   _median(rows, "first_call_ms"), "ms", FIRST_CALL_LIMIT_MS,
                                   len(rows)))
    out += (kernel_targets(kernel_rows) + continuous_targets(act_rows)
            + overhead_targets(act_rows, backends))
    contiguous = [r for r in train_rows if r.get("memory_format", "contiguous") == "contiguous"]
    train = _groups(contiguous, ("model", "batch", "threads", "activation"))
    for kind, limit in TRAIN_LIMITS.items():
        for backend in backends:
            for (model, batch, t, activation), rows in train.items():
                if activation == f"{kind}/{backend}":
                    out.append(_target(f"training step, {kind}",
                                       f"{MODEL_NAMES.get(model, model)}, batch {batch}", t,
                                       backend, _median(rows, "ratio_vs_relu"), "x", limit,
                                       len(rows)))
    return out


def _value(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    if unit == "us":
        return f"{value:+.0f} us"
    return f"{value:.2f}x" if unit == "x" else f"{value:.2f} {unit}"


def _limit(t: dict) -> str:
    if t["target"] == SAVED_TARGET:
        return "= ReLU's"
    if t["limit"] in (None, ""):  # reported beside the targets, no limit
        return "-"
    return f"<= {t['limit']:g}{'x' if t['unit'] == 'x' else ' ' + t['unit']}"


def _met(t: dict) -> str:
    return "-" if _limit(t) == "-" else ("yes" if t["met"] else "**no**")


def targets_table(target_rows: Sequence[dict]) -> str:
    """The targets as a Markdown table, with a line naming the targets this run did not measure."""
    table = markdown_table(
        ["target", "where", "threads", "backend", "isa", "measured", "limit", "met"],
        [[t["target"], t["where"], t["threads"], t["backend"], t.get("isa", ""),
          _value(t["measured"], t["unit"]), _limit(t), _met(t)] for t in target_rows],
        align="llrllrrl")
    limited = [t for t in target_rows if _limit(t) != "-"]
    met = sum(bool(t["met"]) for t in limited)
    lines = [table, f"{met} of {len(limited)} met."]
    missing = [n for n in TARGET_NAMES if n not in {t["target"] for t in target_rows}]
    if missing:
        lines.append("Not measured in this run: " + "; ".join(missing) + ".")
    return "\n".join(lines) + "\n"


def _grid(rows: Sequence[dict], col: str, fmt: Callable[[dict], str]) -> str:
    """candidate x shape table, one cell per (candidate, shape): ``fmt`` of the seeds' medians."""
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    names = list(dict.fromkeys(r["candidate"] for r in rows))
    # eager ReLU is timed in every group: show the first group's (the native group's)
    first_group = {r["shape"]: r.get("group") for r in reversed(rows)}
    rows = [r for r in rows if r["candidate"] != "relu/eager"
            or r.get("group") == first_group[r["shape"]]]
    cells = _groups(rows, ("candidate", "shape"))
    body = []
    for name in names:
        line = [name]
        for shape in shapes:
            rs = cells.get((name, shape))
            line.append("" if not rs else fmt({"median_ms": _median(rs, "median_ms"),
                                                "ratio": _median(rs, col)}))
        body.append(line)
    return markdown_table(["candidate"] + shapes, body)


def _ms_ratio(cell: dict) -> str:
    return f"{cell['median_ms']:.3g} ms ({cell['ratio']:.2f}x)"


def markdown(act_rows: Sequence[dict], train_rows: Sequence[dict], target_rows: Sequence[dict],
             compile_rows: Sequence[dict], kernel_rows: Sequence[dict] = (),
             first_rows: Sequence[dict] = (), header: str = "") -> str:
    """Tables: targets; fwd+bwd and forward per thread count; kernels; first call; train steps;
    compile cost."""
    parts = []
    backends = list(dict.fromkeys(t["backend"] for t in target_rows))
    for i, backend in enumerate(backends):
        rows = [t for t in target_rows if t["backend"] == backend]
        title = (f"## Speed targets, {backend} backend" if i == 0
                 else f"## The same targets, {backend} backend (for comparison)")
        parts.append(f"{title}\n\nSame-run paired medians against eager nn.ReLU "
                     "(module call with autograd), float32, m = 9 (tmaf.DEFAULT_BREAKPOINTS) "
                     "unless named; the first call in ms.\n\n" + targets_table(rows))
    for phase, title in (("fwd_bwd", "Forward+backward"), ("fwd", "Forward (autograd recording)")):
        for t in sorted({r.get("threads", 0) for r in act_rows}):
            rows = [r for r in act_rows if r["phase"] == phase and r.get("threads", 0) == t]
            if rows:
                parts.append(f"## {title}, {t} thread(s)\n\nMedian time per call (paired ratio to "
                             "eager ReLU)\n\n" + _grid(rows, "ratio_vs_relu_eager", _ms_ratio))
    for phase, title, base in (("fwd", "forward", "torch.relu"),
                               ("bwd", "backward", "threshold_backward")):
        for t in sorted({r["threads"] for r in kernel_rows}):
            rows = [r for r in kernel_rows if r["phase"] == phase and r["threads"] == t]
            if rows:
                parts.append(f"## Kernels only, {title}, {t} thread(s)\n\nThe native operator "
                             f"against {base} on preallocated inputs: median time per call "
                             "(paired ratio)\n\n"
                             + _grid(rows, "ratio_vs_relu_kernel", _ms_ratio))
    if first_rows:
        parts.append("## First call of a new shape\n\n" + markdown_table(
            ["shape", "threads", "candidate", "first call", "steady call", "extra"],
            [[r["shape"], r["threads"], r["candidate"], f"{r['first_call_ms']:.2f} ms",
              f"{r['steady_ms']:.2f} ms", f"{r['extra_ms']:.2f} ms"] for r in first_rows],
            align="lrlrrr"))
    if train_rows:
        parts.append("## Training step\n\nvs ReLU and vs GELU: in the same memory format; vs "
                     "contiguous: the same activation's NCHW step.\n\n" + markdown_table(
            ["model", "batch", "threads", "activation", "memory format", "median step",
             "vs ReLU", "vs GELU", "vs contiguous"],
            [[r["model"], r["batch"], r.get("threads", ""), r["activation"],
              r.get("memory_format", "contiguous"), f"{r['median_ms']:.1f} ms",
              f"{r['ratio_vs_relu']:.2f}x",
              _value(float(r.get("ratio_vs_gelu", "nan") or "nan"), "x"),
              _value(float(r.get("ratio_vs_contiguous", "nan") or "nan"), "x")]
             for r in train_rows],
            align="lrrllrrrr"))
    if compile_rows:
        parts.append("## Compile cost (fresh processes)\n\n" + markdown_table(
            ["candidate", "shape", "inductor cache", "first call", "second call"],
            [[r["candidate"], r["shape"], r["inductor_cache"], f"{r['first_call_s']:.2f} s",
              f"{1e3 * r['second_call_s']:.1f} ms"] for r in compile_rows], align="lllrr"))
    return "\n".join(([header] if header else []) + parts)


def conditions(config: dict) -> str:
    """One paragraph on how the run was made, from its config.json record."""
    env, cfg = config.get("environment", {}), config.get("config", {})
    threads = env.get("threads_timed") or cfg.get("threads") or [env.get("torch_threads")]
    return (f"`{' '.join(config.get('argv', []))}` at commit {config.get('commit', '?')}; "
            f"CPU {env.get('cpu_model', '?')} ({env.get('cpu_count', '?')} cores), native "
            f"kernels: {env.get('native_status', '?')}; threads timed: "
            f"{', '.join(map(str, threads))}; torch {env.get('torch', '?')}, "
            f"Python {env.get('python', '?')}, device {env.get('device', '?')}; started "
            f"{config.get('started', '?')}. Same-run paired ratios; see docs/benchmarks.md "
            "\"How it measures\".\n")


def _parse(value: str):
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(value, value)


def read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


def rewrite(out: Path) -> None:
    """Recompute targets.csv and summary.md from the CSVs of a finished run in ``out``."""
    act, train = read_csv(out / "activations.csv"), read_csv(out / "train_step.csv")
    first = read_csv(out / "first_call.csv")
    config = json.loads((out / "config.json").read_text()) if (out / "config.json").exists() else {}
    target_rows = targets(act, train, first, read_csv(out / "kernels.csv"),
                          config.get("environment", {}).get("native_isa") or "")
    write_csv(out / "targets.csv", target_rows)
    header = conditions(config) if config else ""
    atomic_write_text(out / "summary.md", markdown(
        act, train, target_rows, read_csv(out / "compile_cost.csv"),
        read_csv(out / "kernels.csv"), first, header))


def main(argv: list[str] | None = None) -> int:
    """``tmaf bench report DIR``: :func:`rewrite` the targets and summary of a finished run."""
    from tmaf_lab.cli import OneLineErrorParser, command_main

    def parser():
        p = OneLineErrorParser(prog="tmaf bench report", allow_abbrev=False,
                               description="Recompute targets.csv and summary.md of a finished "
                                           "tmaf bench run from its CSV files.")
        p.add_argument("dir", type=Path, metavar="DIR", help="the run's folder (results/bench/cpu)")
        return p

    def run(args) -> int:
        if not (args.dir / "activations.csv").is_file():
            raise ValueError(f"{args.dir}: expected a tmaf bench run folder (activations.csv)")
        rewrite(args.dir)
        print(f"wrote {args.dir / 'targets.csv'} and {args.dir / 'summary.md'}")
        return 0

    return command_main(parser, run, argv)
