"""Summarise a frequency x width sweep made of several ``tmaf approx`` output folders.

``tmaf approx sweep DIR`` reads every ``DIR/**/results.json``, and writes
``DIR/sweep.md`` (one table: target rows, width x activation columns, rel L2 mean ± std)
and ``DIR/sweep.png`` (rel L2 against the frequency k of the ``sin<k>`` targets, one panel
per reference width). Nothing is recomputed: every number comes from those files.
"""

from __future__ import annotations

import re
from pathlib import Path

from tmaf_lab.cli import OneLineErrorParser, command_main
from tmaf_lab.files import atomic_write_text
from tmaf_lab.mdtable import markdown_table
from tmaf_lab.runs import find_runs, read_results


def collect(root: Path) -> list[dict]:
    """One row per (results.json, activation) with the summary fields and the width setting."""
    rows = []
    for run in find_runs(root):
        res = read_results(run)
        for act, s in res["summary"].items():
            rows.append({"target": res["target"], "expression": res.get("expression", ""),
                         "ref_width": res.get("reference_width"), "match": res.get("match_params"),
                         "activation": act, **s, "folder": str(run.relative_to(root))})
    return rows


def _freq(target: str) -> int | None:
    m = re.fullmatch(r"sin(\d+)", target)
    return int(m.group(1)) if m else None


def markdown(rows: list[dict]) -> str:
    """Rows: (reference width, activation); columns: targets (sin<k> sorted by k)."""
    targets = sorted(dict.fromkeys(r["target"] for r in rows),
                     key=lambda t: (_freq(t) is None, _freq(t) or 0, t))
    keys = list(dict.fromkeys((r["ref_width"], r["activation"]) for r in rows))
    cell = {(r["ref_width"], r["activation"], r["target"]): r for r in rows}
    rows = []
    for w, a in keys:
        found = [cell.get((w, a, t)) for t in targets]
        params = next((r["params"] for r in found if r is not None), "")
        vals = ["" if r is None else f"{r['rel_l2_mean']:.3g} ± {r['rel_l2_std']:.2g}"
                for r in found]
        rows.append((w, a, params, *vals))
    return ("held-out rel L2, mean ± std over seeds; each model's parameter count is matched "
            "to a ReLU MLP of the given width\n\n"
            + markdown_table(("ReLU width", "activation", "params", *targets), rows,
                             "rlr" + "r" * len(targets)))


def plot(rows: list[dict], path: Path) -> bool:
    from tmaf_lab.approx.plots import _plt, save

    rows = [r for r in rows if _freq(r["target"]) is not None]
    widths = sorted({r["ref_width"] for r in rows})
    if not rows:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(widths), figsize=(4.2 * len(widths), 3.6), squeeze=False,
                             sharey=True)
    for ax, w in zip(axes[0], widths, strict=True):
        for act in dict.fromkeys(r["activation"] for r in rows):
            pts = sorted((_freq(r["target"]), r["rel_l2_mean"], r["rel_l2_std"])
                         for r in rows if r["ref_width"] == w and r["activation"] == act)
            if pts:
                k, m, s = zip(*pts, strict=True)
                ax.errorbar(k, m, yerr=s, marker="o", ms=3, capsize=2, lw=1, label=act)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("k in sin(k pi x)")
        ax.set_title(f"params matched to ReLU width {w}", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("held-out rel L2")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)
    return True


def build_parser() -> OneLineErrorParser:
    parser = OneLineErrorParser(prog="tmaf approx sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", metavar="DIR", type=Path, help="folder holding tmaf approx runs")
    return parser


def run(args) -> int:
    root = args.dir
    rows = collect(root)
    if not rows:
        raise ValueError(f"no results.json under {str(root)!r}")
    text = markdown(rows)
    atomic_write_text(root / "sweep.md", text)
    plot(rows, root / "sweep.png")
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main(build_parser, run, argv)
