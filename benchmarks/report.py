"""CSV output, the issue's targets (met / missed with the measured ratio), a Markdown summary."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

from tmaf_lab.runmeta import atomic_write_text

TARGET_M = 8  # breakpoints for the target table (DEFAULT_BREAKPOINTS has 9); else the largest m


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


def _find(rows: Sequence[dict], **match) -> dict | None:
    for row in rows:
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def targets(act_rows: Sequence[dict], train_rows: Sequence[dict]) -> list[dict]:
    """One row per (target, shape or model, TMAF backend): measured ratio, threshold, met."""
    out = []
    ms = {r["m"] for r in act_rows if r["m"]}
    m = TARGET_M if TARGET_M in ms or not ms else max(ms)
    shapes = list(dict.fromkeys(r["shape"] for r in act_rows))
    checks = [  # (target, kind, phase, column, threshold)
        ("diagonal fwd+bwd vs eager ReLU", "diagonal", "fwd_bwd", "ratio_vs_relu_eager", 1.0),
        ("diagonal fwd+bwd vs compiled ReLU", "diagonal", "fwd_bwd", "ratio_vs_relu_compile", 1.3),
        ("tridiagonal fwd+bwd vs eager ReLU", "tridiagonal", "fwd_bwd", "ratio_vs_relu_eager", 2.0),
        ("diagonal saved bytes vs eager ReLU", "diagonal", "fwd", "saved_act_bytes_vs_relu_eager",
         1.0),
        ("tridiagonal saved bytes vs eager ReLU", "tridiagonal", "fwd",
         "saved_act_bytes_vs_relu_eager", 1.0),
    ]
    for target, kind, phase, col, limit in checks:
        for shape in shapes:
            for backend in ("compiled", "eager"):
                row = _find(act_rows, shape=shape, kind=kind, mode=backend, m=m, phase=phase)
                if row is None:
                    continue
                value = row[col]
                if math.isnan(value):  # e.g. no compiled ReLU in the eager backend's group
                    continue
                out.append({"target": target, "where": f"{shape}, m={m}", "backend": backend,
                            "measured": value, "threshold": limit,
                            "met": bool(value <= limit)})
    for row in train_rows:
        if row["model"] == "resnet18" and row["activation"].startswith("diagonal/"):
            backend = row["activation"].split("/")[1]
            out.append({"target": "ResNet-18 train step, diagonal vs ReLU",
                        "where": f"batch {row['batch']}", "backend": backend,
                        "measured": row["ratio_vs_relu"], "threshold": 1.10,
                        "met": bool(row["ratio_vs_relu"] <= 1.10)})
    return out


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def markdown(act_rows: Sequence[dict], train_rows: Sequence[dict], target_rows: Sequence[dict],
             compile_rows: Sequence[dict]) -> str:
    """Tables: targets; fwd+bwd ratios per shape; train steps; compile cost."""
    parts = []
    if target_rows:
        parts.append(_table(["target", "where", "backend", "measured", "limit", "met"], [
            [t["target"], t["where"], t["backend"], f"{t['measured']:.2f}x", f"{t['threshold']}x",
             "yes" if t["met"] else "**no**"] for t in target_rows]))
    for phase in ("fwd_bwd", "fwd"):
        rows = [r for r in act_rows if r["phase"] == phase]
        if not rows:
            continue
        shapes = list(dict.fromkeys(r["shape"] for r in rows))
        names = list(dict.fromkeys(r["candidate"] for r in rows))
        body = []
        for name in names:
            cells = [name]
            for shape in shapes:  # eager ReLU is in every group: show the "fast" group's
                r = _find(rows, shape=shape, candidate=name)
                cells.append("" if r is None else
                             f"{r['median_ms']:.2f} ms ({r['ratio_vs_relu_eager']:.2f}x)")
            body.append(cells)
        title = "forward+backward" if phase == "fwd_bwd" else "forward (autograd recording)"
        parts.append(f"**{title}**: median time per call (paired ratio to eager ReLU)\n\n"
                     + _table(["candidate"] + shapes, body))
    if train_rows:
        parts.append(_table(["model", "batch", "activation", "median step", "vs ReLU"], [
            [r["model"], str(r["batch"]), r["activation"], f"{r['median_ms']:.1f} ms",
             f"{r['ratio_vs_relu']:.2f}x"] for r in train_rows]))
    if compile_rows:
        parts.append(_table(["candidate", "shape", "inductor cache", "first call", "second call"], [
            [r["candidate"], r["shape"], r["inductor_cache"], f"{r['first_call_s']:.2f} s",
             f"{1e3 * r['second_call_s']:.1f} ms"] for r in compile_rows]))
    return "\n\n".join(parts) + "\n"


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
    target_rows = targets(act, train)
    write_csv(out / "targets.csv", target_rows)
    atomic_write_text(out / "summary.md", markdown(act, train, target_rows,
                                                   read_csv(out / "compile_cost.csv")))


if __name__ == "__main__":  # python -m benchmarks.report results/bench/cpu
    import sys

    rewrite(Path(sys.argv[1]))
