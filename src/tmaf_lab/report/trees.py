"""Paired comparison of two run trees: a variant (e.g. calibrated grids) against a base.

    tmaf compare BASE VARIANT --out DIR [--title T] [--activations a,b]

Runs are matched by what they are, not by folder: a ``tmaf train`` run by (dataset, model,
arm, seed) (an arm is the activation, with its own ``--tmaf-lr`` if it has one), a ``tmaf
approx`` run by (target, activation, seed) and its width must agree. Every matched pair ran
the same seed, so the same data, data order and initial weights; only what distinguishes the
trees differs. For each group it reports n, the base and variant means, and

- test accuracy: the paired difference variant - base in percentage points, with its 95 % t
  interval over seeds (``report.stats.paired``);
- relative L2 error: the geometric-mean ratio variant / base, exp(mean log ratio), with the
  95 % t interval of the log ratios mapped back (errors span orders of magnitude, so a ratio
  is the honest scale); below 1 the variant fits better.

The verdict follows the interval ("better", "worse", "no difference detected at n = <n>").
Writes ``DIR/report.md`` and ``DIR/stats.json``; exits 2 on a bad option or no pair found.
"""

from __future__ import annotations

import math
from pathlib import Path

from tmaf_lab.cli import OneLineErrorParser, command_main, usage_error
from tmaf_lab.files import atomic_write_text, write_json
from tmaf_lab.lists import parse_list
from tmaf_lab.mdtable import markdown_table
from tmaf_lab.report.collect import collect
from tmaf_lab.report.stats import fmt, order_key, paired, ratio_record, verdict


class DuplicateRun(ValueError):
    """Two runs of one tree share group and seed: which one to pair is ambiguous."""


def _put(out: dict, where: dict, key: tuple, seed: int, value: float, folder: Path) -> None:
    if seed in out.setdefault(key, {}):
        raise DuplicateRun(f"{'/'.join(map(str, key))} seed {seed} appears twice: in "
                           f"{where[key, seed]} and {folder}; compare folders with one run each")
    out[key][seed], where[key, seed] = value, folder


def train_values(root: Path, acts: set[str] | None) -> dict[tuple, dict[int, float]]:
    """(dataset, model, arm) -> {seed: test accuracy}; ``acts`` filters by activation."""
    out: dict[tuple, dict[int, float]] = {}
    where: dict = {}
    for run in collect([root]).train:
        if acts is None or run.activation in acts:
            _put(out, where, (run.dataset, run.model, run.arm), run.seed, run.test_acc,
                 run.folder)
    return out


def approx_values(root: Path, acts: set[str] | None) -> dict[tuple, dict[int, float]]:
    """(target, width, activation) -> {seed: held-out relative L2 error}."""
    out: dict[tuple, dict[int, float]] = {}
    where: dict = {}
    for study in collect([root]).approx:
        for r in study.runs:
            if acts is None or r["activation"] in acts:
                _put(out, where, (study.target, r.get("width"), r["activation"]), int(r["seed"]),
                     float(r["rel_l2"]), study.folder)
    return out


def compare_groups(base: dict, variant: dict, kind: str) -> list[dict]:
    """One record per group present in both trees with at least one common seed."""
    records = []
    for key in sorted(set(base) & set(variant), key=lambda k: (str(k[:-1]), order_key(k[-1]))):
        b, v = base[key], variant[key]
        seeds = sorted(set(b) & set(v))
        if not seeds:
            continue
        rec = {"group": list(key), "seeds": seeds,
               "base_mean": sum(b[s] for s in seeds) / len(seeds),
               "variant_mean": sum(v[s] for s in seeds) / len(seeds)}
        if kind == "train":
            p = paired({s: 100 * v[s] for s in seeds}, {s: 100 * b[s] for s in seeds})
            rec.update(diff_pp=p.mean, low=p.low, high=p.high, n=p.n,
                       verdict=verdict(p, lower_is_better=False))
        else:
            r = ratio_record({s: v[s] for s in seeds}, {s: b[s] for s in seeds},
                             lower_is_better=True)
            rec.update(ratio=r["ratio"], low=r["low"], high=r["high"], n=r["n"],
                       verdict=r["verdict"])
        records.append(rec)
    return records


def _interval(low: float, high: float, signed: bool) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "n/a"
    f = (lambda x: f"{x:+.3f}") if signed else (lambda x: f"{x:.3f}")
    return f"[{f(low)}, {f(high)}]"


def report_text(title: str, base: Path, variant: Path, train: list[dict],
                approx: list[dict]) -> str:
    parts = [f"# {title}\n", f"Base: `{base}`; variant: `{variant}`. Pairs share the seed (same "
             "data, data order and initial weights). Intervals are 95 % t intervals over the "
             "paired seeds; the verdict follows the interval.\n"]
    if train:
        rows = [(r["group"][0], r["group"][1], r["group"][2], r["n"],
                 f"{100 * r['base_mean']:.2f}", f"{100 * r['variant_mean']:.2f}",
                 f"{r['diff_pp']:+.3f}", _interval(r["low"], r["high"], True), r["verdict"])
                for r in train]
        parts.append("## Test accuracy (%)\n\n" + markdown_table(
            ["data set", "model", "activation", "n", "base", "variant", "variant − base (pp)",
             "95 % interval", "verdict"], rows) + "\n")
    if approx:
        rows = [(r["group"][0], r["group"][1], r["group"][2], r["n"], fmt(r["base_mean"]),
                 fmt(r["variant_mean"]), fmt(r["ratio"]), _interval(r["low"], r["high"], False),
                 r["verdict"]) for r in approx]
        parts.append("## Held-out relative L2 error\n\nRatio = geometric mean over seeds of "
                     "variant / base (below 1: the variant fits better); means are arithmetic."
                     "\n\n" + markdown_table(
                         ["target", "width", "activation", "n", "base", "variant", "ratio",
                          "95 % interval", "verdict"], rows) + "\n")
    return "\n".join(parts)


def _parser() -> OneLineErrorParser:
    p = OneLineErrorParser(prog="tmaf compare",
                           description=__doc__.split("\n")[0])
    p.add_argument("base", type=Path)
    p.add_argument("variant", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--title", default="Paired comparison")
    p.add_argument("--activations", default=None, help="comma list (default: all in both)")
    return p


def main(argv: list[str] | None = None) -> int:
    return command_main(_parser, _compare, argv, errors=(DuplicateRun, ValueError, OSError, KeyError))


def _compare(args) -> int:
    for path in (args.base, args.variant):
        if not path.is_dir():
            return usage_error(f"{path} is not a folder")
    acts = set(parse_list(args.activations, what="activation names")) if args.activations else None
    train = compare_groups(train_values(args.base, acts), train_values(args.variant, acts),
                           "train")
    approx = compare_groups(approx_values(args.base, acts), approx_values(args.variant, acts),
                            "approx")
    if not train and not approx:
        return usage_error(f"no run of {args.variant} has a partner (same group and seed) in "
                           f"{args.base}")
    args.out.mkdir(parents=True, exist_ok=True)
    text = report_text(args.title, args.base, args.variant, train, approx)
    atomic_write_text(args.out / "report.md", text)
    write_json(args.out / "stats.json", {"base": str(args.base), "variant": str(args.variant),
                                         "train": train, "approx": approx})
    print(text)
    return 0
