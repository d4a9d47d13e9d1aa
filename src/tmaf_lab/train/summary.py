"""Mean +- sample std over seeds, as summary.json and summary.md next to the seed folders."""

from __future__ import annotations

import json
from pathlib import Path

from ..files import atomic_write_text, write_json
from ..mdtable import markdown_table
from ..runs import read_config
from ..seedstats import mean_std


def write_summary(out: Path, results: list[dict]) -> dict:
    """Write ``out/summary.json`` ("kind": "summary") and ``out/summary.md``."""
    first = results[0]
    if "test_acc" not in first:
        return write_loss_summary(out, results)
    acc = mean_std([r["test_acc"] for r in results])
    loss = mean_std([r["test_loss"] for r in results])
    secs = mean_std([r["train_seconds"] for r in results])
    summary = {"kind": "summary", "dataset": first["dataset"], "model": first["model"],
               "activation": first["activation"], "epochs": first["epochs"],
               "params": first["params"], "seeds": [r["seed"] for r in results],
               "n": len(results), "test_acc_mean": acc[0], "test_acc_std": acc[1],
               "test_loss_mean": loss[0], "test_loss_std": loss[1],
               "train_seconds_mean": secs[0], "train_seconds_std": secs[1],
               "runs": [f"seed{r['seed']}/results.json" for r in results]}
    write_json(out / "summary.json", summary)
    md = markdown_table(
        ("dataset", "model", "activation", "epochs", "params", "n", "test acc %", "test loss",
         "train s"),
        [(first["dataset"], first["model"], first["activation"], first["epochs"],
          first["params"], len(results), f"{100 * acc[0]:.2f} +- {100 * acc[1]:.2f}",
          f"{loss[0]:.4f} +- {loss[1]:.4f}", f"{secs[0]:.1f} +- {secs[1]:.1f}")],
        "lllrrrrrr")
    atomic_write_text(out / "summary.md", md)
    print(f"{first['dataset']} {first['model']} {first['activation']}: test acc "
          f"{100 * acc[0]:.2f} +- {100 * acc[1]:.2f} % over {len(results)} seeds -> "
          f"{out / 'summary.json'}")
    return summary


def write_loss_summary(out: Path, results: list[dict]) -> dict:
    """Mean +- std of val/test loss (nats/char and bits/char) for text runs."""
    first = results[0]
    summary = {"kind": "summary", "dataset": first["dataset"], "model": first["model"],
               "activation": first["activation"], "steps": first["steps"],
               "params": first["params"], "seeds": [r["seed"] for r in results],
               "n": len(results), "runs": [f"seed{r['seed']}/results.json" for r in results]}
    for key in ("val_loss", "val_bpc", "test_loss", "test_bpc", "train_seconds"):
        summary[f"{key}_mean"], summary[f"{key}_std"] = mean_std([r[key] for r in results])
    write_json(out / "summary.json", summary)
    md = markdown_table(
        ("dataset", "model", "activation", "steps", "params", "n", "val nats/char",
         "test nats/char", "test bits/char", "train s"),
        [(first["dataset"], first["model"], first["activation"], first["steps"],
          first["params"], len(results), *(
              f"{summary[k + '_mean']:.4f} +- {summary[k + '_std']:.4f}"
              for k in ("val_loss", "test_loss", "test_bpc")),
          f"{summary['train_seconds_mean']:.1f} +- {summary['train_seconds_std']:.1f}")],
        "lllrrrrrrr")
    atomic_write_text(out / "summary.md", md)
    return summary


def table(root: Path) -> str:
    """One Markdown table of every summary.json under ``root`` (sorted; ReLU delta per group)."""
    rows = []
    for p in sorted(Path(root).rglob("summary.json")):
        r = json.loads(p.read_text())
        if r.get("kind") == "summary":
            cfg = read_config((p.parent / r["runs"][0]).parent)
            r["train_images"] = cfg["config"]["subset"] or "all"
            r["width"] = cfg["config"]["width"] or "default"
            rows.append(r)
    order = {"relu": 0, "prelu": 1, "diagonal": 2, "tridiagonal": 3}
    rows.sort(key=lambda r: (r["dataset"], r["model"], order.get(r["activation"], 9)))
    relu = {(r["dataset"], r["model"]): r["test_acc_mean"] for r in rows
            if r["activation"] == "relu"}
    cells = []
    for r in rows:
        base = relu.get((r["dataset"], r["model"]))
        delta = ("" if base is None or r["activation"] == "relu"
                 else f"{100 * (r['test_acc_mean'] - base):+.2f}")
        cells.append((r["dataset"], f"{r['model']} ({r['width']})", r["train_images"],
                      r["activation"], r["epochs"], r["params"], r["n"],
                      f"{100 * r['test_acc_mean']:.2f} +- {100 * r['test_acc_std']:.2f}", delta,
                      f"{r['test_loss_mean']:.4f}", f"{r['train_seconds_mean']:.0f}"))
    return markdown_table(("dataset", "model (width)", "train images", "activation", "epochs",
                           "params", "n", "test acc % (mean +- std)", "vs relu (pp)",
                           "test loss", "train s / run"), cells, "llllrrrrrrr")


def main(argv: list[str] | None = None) -> int:
    """``tmaf summary DIR``: print the table of every summary below DIR."""
    from ..cli import OneLineErrorParser, command_main

    def parser():
        p = OneLineErrorParser(prog="tmaf summary",
                               description="one Markdown table over every summary.json in DIR")
        p.add_argument("dir", nargs="?", default="results/train", type=Path, metavar="DIR")
        return p

    def run(args) -> int:
        if not args.dir.is_dir():
            raise ValueError(f"{str(args.dir)!r} is not a folder")
        print(table(args.dir), end="")
        return 0

    return command_main(parser, run, argv)
