"""Where a trained model's TMAF inputs lie: the fraction outside each layer's grid, on test data.

    tmaf coverage RUN_DIR... --out DIR

For every ``tmaf train`` run folder below the given paths that holds ``checkpoint.pt`` (the
final one of a finished run), the model is rebuilt from config.json (its grids shaped like the
checkpoint's, so calibrated (C, m) grids load), run in eval mode on the test set, and
``tmaf.outside_fraction`` gives, per TMAF layer, the fraction of input values below the
channel's first or above its last breakpoint (where the layer is linear). Runs without TMAF
layers or without a checkpoint are listed as skipped. Writes ``DIR/coverage.json`` (per run)
and ``DIR/coverage.md`` (mean over seeds per data set, activation and calibration setting).

Checkpoints are not committed, so a run measured earlier may have none here: the rows already
in ``DIR/coverage.json`` are kept unless the run is measured again (``--fresh`` drops them).
Each row records the command that measured it (``argv``).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import torch

from tmaf_lab.cli import OneLineErrorParser, command_main, usage_error
from tmaf_lab.data import DataError
from tmaf_lab.files import atomic_write_text, write_json
from tmaf_lab.mdtable import markdown_table
from tmaf_lab.report.stats import arm_name
from tmaf_lab.runs import CONFIG, find_runs, read_config

EVAL_BATCH = 1000


def load_trained(run_dir: Path):
    """(model in eval mode, config dict, ImageData) of a finished run folder."""
    from tmaf_lab.data import load_dataset
    from tmaf_lab.models import create_model
    from tmaf_lab.train import checkpoint as ckpt

    cfg = read_config(run_dir)["config"]
    state = ckpt.load(run_dir)
    if state is None:
        raise ValueError(f"{run_dir}: no {ckpt.NAME}")
    data = load_dataset(cfg["dataset"]).subset(None, cfg.get("test_subset"))
    kwargs = {"width": cfg["width"]} if cfg.get("width") else {}
    model = create_model(cfg["model"], data.image_shape, data.num_classes, cfg["activation"],
                         **kwargs)
    ckpt.match_grids(model, state["model"])
    model.load_state_dict(state["model"])
    return model.eval(), cfg, data


def run_coverage(run_dir: Path) -> dict:
    import tmaf
    from tmaf_lab.train.batches import normalise

    model, cfg, data = load_trained(run_dir)
    if next(tmaf.tmaf_modules(model), None) is None:
        raise ValueError(f"{run_dir}: {cfg['activation']} has no TMAF layer")
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    batches = (normalise(data.test_x[i:i + EVAL_BATCH], mean, std)
               for i in range(0, len(data.test_y), EVAL_BATCH))
    layers = tmaf.outside_fraction(model, batches)
    return {"run": str(run_dir), "dataset": cfg["dataset"], "model": cfg["model"],
            "activation": arm_name(cfg["activation"], cfg), "seed": cfg["seed"],
            "calibrate": cfg.get("calibrate", 0), "layers": layers,
            "mean": sum(layers.values()) / len(layers)}


def summary_table(rows: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["dataset"], r["model"], r["activation"], r["calibrate"]].append(r)
    out = []
    for (ds, model, act, cal), rs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        names = list(rs[0]["layers"])
        per_layer = [sum(r["layers"][n] for r in rs) / len(rs) for n in names]
        out.append((ds, model, act, f"--calibrate {cal}" if cal else "fixed", len(rs),
                    ", ".join(f"{100 * v:.1f}" for v in per_layer),
                    f"{100 * sum(r['mean'] for r in rs) / len(rs):.1f}"))
    return markdown_table(["data set", "model", "activation", "grid", "runs",
                           "outside per layer (%)", "mean (%)"], out)


def _parser() -> OneLineErrorParser:
    p = OneLineErrorParser(prog="tmaf coverage",
                           description=__doc__.split("\n")[0])
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--fresh", action="store_true",
                   help="drop the rows of an existing OUT/coverage.json instead of keeping the "
                        "runs not measured this time")
    return p


def main(argv: list[str] | None = None) -> int:
    return command_main(_parser, lambda args: _coverage(args, argv), argv)


def earlier_rows(path: Path) -> list[dict]:
    """The per-run rows of an existing coverage.json (none if the file is absent), each with
    the command that measured it."""
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
        rows = data["runs"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: expected a coverage.json with a 'runs' list ({e}); "
                         "rerun with --fresh to replace it") from e
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "run" in r for r in rows):
        raise ValueError(f"{path}: 'runs' must be a list of rows with a 'run' folder; "
                         "rerun with --fresh to replace it")
    # rows written before each row recorded its command: the file's command measured them
    return [{"argv": data.get("argv"), **r} for r in rows]


def _coverage(args, argv: list[str] | None) -> int:
    folders = sorted({run for path in args.paths for run in find_runs(path)})
    invocation = list(sys.argv if argv is None else argv)
    kept = [] if args.fresh else earlier_rows(args.out / "coverage.json")
    rows, skipped = [], []
    for folder in folders:
        if not (folder / CONFIG).is_file():
            continue
        try:
            rows.append({**run_coverage(folder), "argv": invocation})
        except (ValueError, KeyError, OSError, DataError) as e:
            skipped.append({"run": str(folder), "reason": str(e)})
    measured = {r["run"] for r in rows}
    kept = [r for r in kept if r["run"] not in measured]
    kept_runs = {r["run"] for r in kept}
    skipped = [s for s in skipped if s["run"] not in kept_runs]
    if not rows:
        return usage_error(f"no finished TMAF training run with a checkpoint under "
                           f"{', '.join(map(str, args.paths))}")
    rows = sorted(rows + kept, key=lambda r: r["run"])
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "coverage.json", {"runs": rows, "skipped": skipped,
                                            "argv": invocation})
    text = ("# Inputs outside the TMAF grids, trained models, test set\n\n"
            "Fraction of each TMAF layer's input values below the channel's first or above its "
            "last breakpoint (there the layer is linear), mean over the runs.\n\n"
            + summary_table(rows)
            + f"\n{len(rows) - len(kept)} run(s) measured by this command, {len(kept)} kept "
              f"from the earlier coverage.json; {len(skipped)} run folder(s) skipped "
              "(coverage.json lists each run, the command that measured it and the skipped "
              "folders' reasons).\n")
    atomic_write_text(args.out / "coverage.md", text)
    print(text)
    return 0
