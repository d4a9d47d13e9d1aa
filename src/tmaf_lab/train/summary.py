"""Mean +- sample std over seeds, as summary.json and summary.md next to the seed folders."""

from __future__ import annotations

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
