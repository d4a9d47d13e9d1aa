"""Per-call cost and kernel-only ratios of the native backend, one CSV row per measurement.

Two measurements, both same-process paired medians (rounds interleaved, ratio per round):

- ``overhead``: a module call forward + backward (``y = act(x); y.backward(g)``) of
  ``tmaf.DiagonalTMAF(C)`` / ``TridiagonalTMAF(C)`` against ``nn.ReLU`` on small (N, C) layers,
  where the fixed cost of a call dominates; ``extra_us`` is TMAF's median minus ReLU's;
- ``kernel``: the operators alone, ``banded_fwd`` against ``torch.relu`` and ``banded_bwd``
  against ``threshold_backward``, on inputs allocated once.

The kernels' instruction set is the one ``tmaf`` picked (cap it with ``TMAF_CPU_ISA``), and every
row records it, so runs of several ISAs (or of two checkouts, via PYTHONPATH) go into one file:

    TMAF_CPU_ISA=avx2 tmaf bench percall --label after --threads 1,2 --out FILE.csv
    tmaf bench percall --table --out FILE.csv     # FILE.md: the rows side by side
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

LAYERS = ((256, 32), (256, 512))
KERNEL_SHAPES = (("64x64x32x32", (64, 64, 32, 32), False), ("4096x1024", (4096, 1024), False),
                 ("32x64x56x56-cl", (32, 64, 56, 56), True))


def paired(fns: dict[str, Callable[[], object]], rounds: int, calls: int) -> dict[str, list[float]]:
    """Seconds per call of each function, ``rounds`` interleaved samples of ``calls`` calls."""
    for f in fns.values():
        f(), f()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                f()
            samples[k].append((time.perf_counter() - t0) / calls)
    return samples


def _ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def overhead_rows(rounds: int) -> list[dict]:
    import tmaf

    rows = []
    for n, c in LAYERS:
        x, g = torch.randn(n, c, requires_grad=True), torch.randn(n, c)
        acts = {"relu": nn.ReLU(), "diagonal": tmaf.DiagonalTMAF(c),
                "tridiagonal": tmaf.TridiagonalTMAF(c)}

        def step(act, x=x, g=g):
            return lambda: act(x).backward(g)

        s = paired({k: step(a) for k, a in acts.items()}, rounds, 100)
        base = statistics.median(s["relu"])
        rows += [{"what": "overhead", "shape": f"{n}x{c}", "phase": "fwd_bwd", "kind": k, "m": 9,
                  "median_us": 1e6 * statistics.median(v), "relu_us": 1e6 * base,
                  "extra_us": 1e6 * statistics.median(a - b for a, b in zip(v, s["relu"], strict=True)),
                  "ratio": _ratio(v, s["relu"])} for k, v in s.items() if k != "relu"]
    return rows


def kernel_rows(rounds: int) -> list[dict]:
    rows = []
    for name, shape, channels_last in KERNEL_SHAPES:
        gen = torch.Generator().manual_seed(0)
        x, g = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
        if channels_last:
            x, g = (t.contiguous(memory_format=torch.channels_last) for t in (x, g))
        y, C = torch.relu(x), shape[1]
        fwd = {"relu": lambda x=x: torch.relu(x)}
        bwd = {"relu": lambda g=g, y=y: torch.ops.aten.threshold_backward(g, y, 0)}
        for kind, b, m in (("diagonal", 0, 9), ("diagonal", 0, 17), ("tridiagonal", 1, 9)):
            bp = torch.linspace(-2, 2, m)
            lv = torch.rand(C, 2 * b + 1, m + 1, generator=gen) * 2 - 0.5
            fwd[f"{kind}-m{m}"] = lambda x=x, bp=bp, lv=lv: torch.ops.tmaf.banded_fwd(x, bp, lv, 1)
            bwd[f"{kind}-m{m}"] = lambda g=g, x=x, bp=bp, lv=lv: torch.ops.tmaf.banded_bwd(g, x, bp, lv, 1)
        for phase, fns in (("fwd", fwd), ("bwd", bwd)):
            s = paired(fns, rounds, 3)
            rows += [{"what": "kernel", "shape": name, "phase": phase, "kind": k.split("-m")[0],
                      "m": int(k.split("-m")[1]), "median_us": 1e6 * statistics.median(v),
                      "relu_us": 1e6 * statistics.median(s["relu"]), "extra_us": float("nan"),
                      "ratio": _ratio(v, s["relu"])} for k, v in s.items() if k != "relu"]
    return rows


def before_after_table(rows: list[dict]) -> str:
    """Markdown: one line per (measurement, shape, phase, kind, m), one column per (isa, label,
    threads) in the file's order; overhead rows give extra_us, kernel rows the ratio."""
    from tmaf_lab.mdtable import markdown_table

    cols = list(dict.fromkeys((r["isa"], r["label"], r["threads"]) for r in rows))
    keys = list(dict.fromkeys((r["what"], r["shape"], r["phase"], r["kind"], r["m"]) for r in rows))
    cell = {(r["what"], r["shape"], r["phase"], r["kind"], r["m"], r["isa"], r["label"], r["threads"]): r
            for r in rows}

    def fmt(r: dict | None) -> str:
        if r is None:
            return ""
        if r["what"] == "overhead":
            return f"+{float(r['extra_us']):.0f} us ({float(r['ratio']):.2f}x)"
        return f"{float(r['ratio']):.2f}x"

    return markdown_table(["measurement", "shape", "phase", "kind", "m"]
                          + [f"{isa} {label} {t}t" for isa, label, t in cols],
                          [[*k, *(fmt(cell.get((*k, *c))) for c in cols)] for k in keys],
                          align="lllll" + "r" * len(cols))


def build_parser() -> argparse.ArgumentParser:
    from tmaf_lab.cli import OneLineErrorParser

    p = OneLineErrorParser(prog="tmaf bench percall", description=__doc__.split("\n")[0],
                           allow_abbrev=False)
    p.add_argument("--out", type=Path, required=True, help="CSV file, appended to")
    p.add_argument("--label", default="", help="a name for this build (e.g. before, after)")
    p.add_argument("--threads", default="1", help="comma list of thread counts (default 1)")
    p.add_argument("--rounds", type=int, default=11)
    p.add_argument("--table", action="store_true",
                   help="write the before/after table of --out to <out>.md instead of timing")
    return p


def run(args) -> int:
    import tmaf

    if args.table:
        with open(args.out, newline="") as f:
            table = before_after_table(list(csv.DictReader(f)))
        args.out.with_suffix(".md").write_text(table + "\n")
        print(table)
        return 0
    if not tmaf.native_available():
        raise ValueError(f"the native operators are needed: {tmaf.native_status()}")
    rows = []
    for t in (int(v) for v in args.threads.split(",")):
        torch.set_num_threads(t)
        for row in overhead_rows(args.rounds) + kernel_rows(args.rounds):
            rows.append({"label": args.label, "isa": torch.ops.tmaf.native_isa(), "threads": t,
                         **row})
            print(", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in rows[-1].items()), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    new = not args.out.exists()
    with open(args.out, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        if new:
            w.writeheader()
        w.writerows(rows)
    return 0


def main(argv: list[str] | None = None) -> int:
    from tmaf_lab.cli import command_main

    return command_main(build_parser, run, argv)
