"""CSV output and a Markdown summary of a ``tmaf bench`` run, with its speed targets
(:mod:`tmaf_lab.bench.speed_targets`) as a table.

Every ratio is a same-run paired median against eager ``nn.ReLU`` (see :mod:`benchmarks.timing`);
with several seeds a target's value is the median over seeds.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from tmaf_lab.mdtable import markdown_table
from tmaf_lab.runmeta import atomic_write_text

from .speed_targets import SAVED_TARGET, TARGET_NAMES, group_rows, median_of, targets


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
    cells = group_rows(rows, ("candidate", "shape"))
    body = []
    for name in names:
        line = [name]
        for shape in shapes:
            rs = cells.get((name, shape))
            line.append("" if not rs else fmt({"median_ms": median_of(rs, "median_ms"),
                                                "ratio": median_of(rs, col)}))
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
