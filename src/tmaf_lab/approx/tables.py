"""Text outputs of the fits: the Markdown table printed to stdout and the CSV files."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from tmaf_lab.files import atomic_write_text
from tmaf_lab.mdtable import markdown_table

RUN_FIELDS = ("target", "activation", "seed", "width", "params", "rel_l2", "rmse", "max_err",
              "train_seconds")
SUMMARY_FIELDS = ("target", "activation", "width", "params", "seeds", "rel_l2_mean",
                  "rel_l2_std", "rel_l2_vs_relu", "rmse_mean", "rmse_std", "max_err_mean",
                  "max_err_std", "train_seconds_mean")


def _csv_text(rows: Sequence[dict], fields: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def summary_rows(target: str, summary: dict[str, dict]) -> list[dict]:
    return [{"target": target, "activation": act, **entry} for act, entry in summary.items()]


def write_csvs(out_dir: Path, target: str, runs: Sequence[dict], summary: dict[str, dict]) -> None:
    """runs.csv (one row per activation x seed) and summary.csv (one per activation)."""
    atomic_write_text(out_dir / "runs.csv",
                      _csv_text([{"target": target, **r} for r in runs], RUN_FIELDS))
    atomic_write_text(out_dir / "summary.csv",
                      _csv_text(summary_rows(target, summary), SUMMARY_FIELDS))


def write_summary_csv(path: Path, rows: Sequence[dict]) -> None:
    atomic_write_text(path, _csv_text(rows, SUMMARY_FIELDS))


def summary_table(target: str, expression: str, summary: dict[str, dict]) -> str:
    """One Markdown table per target; errors are mean +- std over seeds on the held-out grid."""
    seeds = max((e["seeds"] for e in summary.values()), default=0)
    head = (f"target `{target}` = `{expression}` (mean ± std over {seeds} seed(s), "
            "held-out grid)\n\n")
    rows = []
    for act, e in summary.items():
        ratio = e.get("rel_l2_vs_relu")
        rows.append((act, e["width"], e["params"],
                     f"{e['rel_l2_mean']:.3g} ± {e['rel_l2_std']:.2g}",
                     "" if ratio is None else f"{ratio:.2f}x",
                     f"{e['rmse_mean']:.3g} ± {e['rmse_std']:.2g}", f"{e['max_err_mean']:.3g}",
                     f"{e['train_seconds_mean']:.1f}"))
    return head + markdown_table(("activation", "width", "params", "rel L2", "vs ReLU", "RMSE",
                                  "max err", "train s"), rows)
