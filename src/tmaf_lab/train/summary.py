"""Mean +- sample std over seeds, as summary.json and summary.md next to the seed folders."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from ..runmeta import atomic_write_text, write_json


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def write_summary(out: Path, results: list[dict]) -> dict:
    """Write ``out/summary.json`` ("kind": "summary") and ``out/summary.md``."""
    first = results[0]
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
    md = ("| dataset | model | activation | epochs | params | n | test acc % | test loss | "
          "train s |\n|---|---|---|---|---|---|---|---|---|\n"
          f"| {first['dataset']} | {first['model']} | {first['activation']} | {first['epochs']} "
          f"| {first['params']} | {len(results)} | {100 * acc[0]:.2f} +- {100 * acc[1]:.2f} | "
          f"{loss[0]:.4f} +- {loss[1]:.4f} | {secs[0]:.1f} +- {secs[1]:.1f} |\n")
    atomic_write_text(out / "summary.md", md)
    print(f"{first['dataset']} {first['model']} {first['activation']}: test acc "
          f"{100 * acc[0]:.2f} +- {100 * acc[1]:.2f} % over {len(results)} seeds -> "
          f"{out / 'summary.json'}")
    return summary


def table(root: Path) -> str:
    """One Markdown table of every summary.json under ``root`` (sorted; ReLU delta per group)."""
    rows = []
    for p in sorted(Path(root).rglob("summary.json")):
        r = json.loads(p.read_text())
        if r.get("kind") == "summary":
            cfg = json.loads((p.parent / r["runs"][0]).with_name("config.json").read_text())
            r["train_images"] = cfg["config"]["subset"] or "all"
            r["width"] = cfg["config"]["width"] or "default"
            rows.append(r)
    order = {"relu": 0, "prelu": 1, "diagonal": 2, "tridiagonal": 3}
    rows.sort(key=lambda r: (r["dataset"], r["model"], order.get(r["activation"], 9)))
    relu = {(r["dataset"], r["model"]): r["test_acc_mean"] for r in rows
            if r["activation"] == "relu"}
    lines = ["| dataset | model (width) | train images | activation | epochs | params | n "
             "| test acc % (mean +- std) | vs relu (pp) | test loss | train s / run |",
             "|" + "---|" * 11]
    for r in rows:
        base = relu.get((r["dataset"], r["model"]))
        delta = ("" if base is None or r["activation"] == "relu"
                 else f"{100 * (r['test_acc_mean'] - base):+.2f}")
        lines.append(
            f"| {r['dataset']} | {r['model']} ({r['width']}) | {r['train_images']} | "
            f"{r['activation']} | {r['epochs']} | "
            f"{r['params']} | {r['n']} | {100 * r['test_acc_mean']:.2f} +- "
            f"{100 * r['test_acc_std']:.2f} | {delta} | {r['test_loss_mean']:.4f} | "
            f"{r['train_seconds_mean']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m tmaf_lab.train.summary results/train > SUMMARY.md
    import sys

    print(table(Path(sys.argv[1] if len(sys.argv) > 1 else "results/train")), end="")
