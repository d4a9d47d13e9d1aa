"""Run the fits for each target and write config.json, results.json, CSVs and PNGs.

One target -> its files go straight into ``out``. Several targets -> one sub-folder per
target (each a complete run folder with its own config.json and results.json), plus
``summary.csv`` and ``summary.md`` over all targets in ``out``.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

from tmaf_lab.approx import plots, tables
from tmaf_lab.approx.fit import (
    ApproxConfig,
    build_mlp,
    calibrate_grids,
    count_params,
    make_data,
    match_width,
    metrics,
    outside_grid,
    predict,
    sample_curves,
    summarise,
    train,
)
from tmaf_lab.approx.targets import Target
from tmaf_lab.files import atomic_write_text, write_json
from tmaf_lab.runmeta import save_config

SCHEMA_VERSION = 1


def plan_widths(cfg: ApproxConfig, in_dim: int) -> dict[str, tuple[int, int]]:
    """activation -> (width, params), matched to ReLU at cfg.width when cfg.match_params."""
    plan = {}
    for act in cfg.activations:
        if cfg.match_params:
            plan[act] = match_width(act, in_dim, cfg)
        else:
            plan[act] = (cfg.width, count_params(build_mlp(act, in_dim, cfg.width, cfg)))
    return plan


def preflight(cfg: ApproxConfig, targets: list[Target]) -> None:
    """Fail fast on user mistakes: unbuildable models, targets not finite on the domain."""
    for target in targets:
        plan_widths(cfg, target.dim)
        make_data(target, cfg, seed=0)


def run_target(target: Target, cfg: ApproxConfig, out: Path, argv: list[str], pbar) -> dict:
    """All activations x seeds on one target; writes the run folder, returns results."""
    save_config(out, dataclasses.replace(cfg, targets=(target.name,), dim=target.dim),
                argv, "cpu")
    plan = plan_widths(cfg, target.dim)
    runs, preds, curves = [], {}, {}
    for seed in cfg.seeds:
        data = make_data(target, cfg, seed)
        for act in cfg.activations:
            width, params = plan[act]
            pbar.set_postfix_str(f"{target.name} {act} seed {seed}", refresh=False)
            torch.manual_seed(seed)
            model = build_mlp(act, target.dim, width, cfg)
            calibration = calibrate_grids(model, data, seed) if cfg.calibrate else None
            recals: list[dict] = []
            history, seconds, diverged = train(model, data, cfg, seed, on_steps=pbar.update,
                                               recalibrations=recals)
            pred = predict(model, data)
            runs.append({"activation": act, "seed": seed, "width": width, "params": params,
                         **metrics(pred, data), "train_seconds": seconds,
                         "diverged": diverged, "outside_grid": outside_grid(model, data),
                         "history": history,
                         **({"calibration": calibration} if calibration is not None else {}),
                         **({"recalibrations": recals} if recals else {})})
            if seed == cfg.seeds[0]:  # the figures show the first seed
                preds[act] = pred.float()
                curves[act] = sample_curves(model, cfg)
    summary = summarise(runs, cfg.activations)
    result = {
        "schema": SCHEMA_VERSION, "target": target.name, "expression": target.text,
        "dim": target.dim, "domain": list(cfg.domain), "reference": "relu",
        "reference_width": cfg.width, "match_params": cfg.match_params,
        "steps": cfg.steps, "seeds": list(cfg.seeds), "dtype": cfg.dtype,
        "calibrate": cfg.calibrate, "recalibrate_every": cfg.recalibrate_every,
        "runs": runs, "summary": summary,
    }
    write_json(out / "results.json", result)
    tables.write_csvs(out, target.name, runs, summary)
    if not cfg.plots:
        return result
    title = f"{target.name}: {target.text}"
    first = f" (seed {cfg.seeds[0]})"
    plots.plot_fits(out / "fits.png", title + first, data.grid, data.y_test.float(), preds)
    plots.plot_history(out / "error_vs_step.png", title, runs)
    plots.plot_curves(out / "activations.png", title + first, curves)
    return result


def run_fits(cfg: ApproxConfig, targets: list[Target], argv: list[str]) -> list[dict]:
    """Run every target; print one table per target to stdout; return all results."""
    from tqdm import tqdm

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    multi = len(targets) > 1
    if multi:
        save_config(out, cfg, argv, "cpu")
    total = len(targets) * len(cfg.activations) * len(cfg.seeds) * cfg.steps
    results, rows, text = [], [], []
    with tqdm(total=total, desc="approx", unit="step", file=sys.stderr, dynamic_ncols=True,
              mininterval=1.0) as pbar:
        for target in targets:
            folder = out / target.slug() if multi else out
            res = run_target(target, cfg, folder, argv, pbar)
            results.append(res)
            rows += tables.summary_rows(target.name, res["summary"])
            table = tables.summary_table(target.name, target.text, res["summary"])
            text.append(table)
            pbar.write(table)
    if multi:
        tables.write_summary_csv(out / "summary.csv", rows)
        atomic_write_text(out / "summary.md", "\n".join(text))
    return results
