"""Pick the learned-activation learning rate on a validation split, never on the test set.

    tmaf tuning ROOT [--out DIR]

Reads every ``tmaf train --val-split N`` run below ROOT (results.json with ``val_acc``; its
``--tmaf-lr`` from config.json, the base ``--lr`` when unset), groups them by data set, model
and activation, and for each group prints the validation accuracy per learning rate (mean over
the seeds run) and the best one (ties: the learning rate closest to the base ``--lr`` on a log
scale, so no tuning wins by accident). Writes ``DIR/tuning.json`` and ``DIR/tuning.md``
(default DIR = ROOT). Runs evaluated on the test set are refused: tuning must not see it.

``--changed`` writes nothing and prints one line ``DATASET MODEL ACTIVATION LR`` per group
whose best learning rate is not the base ``--lr`` (what ``tmaf study tuning --part final`` trains
on the test set; a group whose best rate is the base one already has its test runs).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from tmaf_lab.cli import OneLineErrorParser, command_main
from tmaf_lab.files import atomic_write_text, write_json
from tmaf_lab.mdtable import markdown_table
from tmaf_lab.runs import find_runs, read_config, read_results


def read_runs(root: Path) -> list[dict]:
    """One record per run: dataset, model, activation, seed, lr, tmaf_lr, val_acc, folder."""
    runs = []
    for run in find_runs(root):
        res = read_results(run)
        if "test_acc" in res:
            raise ValueError(f"{run} was evaluated on the test set; tuning reads only "
                             f"--val-split runs")
        if "val_acc" not in res:
            continue
        cfg = read_config(run)["config"]
        act_lr = cfg.get("act_lr", cfg.get("tmaf_lr"))  # tmaf_lr: the name in older runs
        lr = act_lr if act_lr is not None else cfg["lr"]
        runs.append({"dataset": res["dataset"], "model": res["model"],
                     "activation": res["activation"], "seed": res["seed"], "base_lr": cfg["lr"],
                     "tmaf_lr": lr, "val_acc": res["val_acc"], "run": str(run)})
    return runs


def best_rates(runs: list[dict]) -> list[dict]:
    """Per (dataset, model, activation): mean val_acc per tmaf_lr and the best tmaf_lr."""
    groups: dict[tuple, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    base: dict[tuple, float] = {}
    for r in runs:
        key = (r["dataset"], r["model"], r["activation"])
        groups[key][r["tmaf_lr"]].append(r["val_acc"])
        base[key] = r["base_lr"]
    out = []
    for key in sorted(groups):
        means = {lr: sum(v) / len(v) for lr, v in sorted(groups[key].items())}
        best = max(means, key=lambda lr: (means[lr], -abs(math.log(lr / base[key]))))
        out.append({"dataset": key[0], "model": key[1], "activation": key[2],
                    "val_acc": {str(lr): acc for lr, acc in means.items()},
                    "seeds": {str(lr): len(v) for lr, v in groups[key].items()},
                    "best_tmaf_lr": best, "base_lr": base[key]})
    return out


def build_parser() -> OneLineErrorParser:
    p = OneLineErrorParser(prog="tmaf tuning", description=__doc__.split("\n")[0])
    p.add_argument("root", type=Path)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--changed", action="store_true",
                   help="print DATASET MODEL ACTIVATION LR where the best rate is not --lr")
    return p


def run(args) -> int:
    if not args.root.is_dir():
        raise ValueError(f"{args.root} is not a folder")
    best = best_rates(read_runs(args.root))
    if not best:
        raise ValueError(f"no --val-split run (results.json with val_acc) under {args.root}")
    if args.changed:
        for b in best:
            if b["best_tmaf_lr"] != b["base_lr"]:
                print(b["dataset"], b["model"], b["activation"], b["best_tmaf_lr"])
        return 0
    rows = [(b["dataset"], b["model"], b["activation"],
             ", ".join(f"{lr}: {100 * acc:.2f}" for lr, acc in b["val_acc"].items()),
             b["best_tmaf_lr"]) for b in best]
    text = ("# Learned-activation learning rate, tuned on a validation split\n\n"
            + markdown_table(["data set", "model", "activation",
                              "validation accuracy (%) per --tmaf-lr", "best"], rows,
                             align="llllr"))
    out = args.out or args.root
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "tuning.json", best)
    atomic_write_text(out / "tuning.md", text)
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main(build_parser, run, argv)
