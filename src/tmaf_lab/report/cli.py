"""``tmaf report RUN_DIR... --out DIR``: Markdown + self-contained HTML from run folders.

Each RUN_DIR is a run folder, a ``results.json`` file, or a parent searched recursively.
Writes ``DIR/report.md``, ``DIR/report.html`` (inline CSS, images as data URIs),
``DIR/figures/*.png``, ``DIR/stats.json`` (per study and activation: mean ± std over seeds
and the paired difference to ReLU with its 95 % t interval and verdict) and
``DIR/config.json``. Bad runs are listed under "Skipped".
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tmaf_lab.cli import OneLineErrorParser, UsageError, command_main, usage_error
from tmaf_lab.report.build import build
from tmaf_lab.report.collect import collect
from tmaf_lab.report.document import Heading, Para, to_html, to_markdown
from tmaf_lab.report.layout import Options, display
from tmaf_lab.report.vs_relu import all_records, json_safe

STATS_NOTE = ("mean/std: over seeds (sample std, n-1); vs_relu: paired difference X - relu over "
              "the seeds both ran, 95 % t interval [low, high]; verdict better/worse when the "
              "interval excludes 0; test_acc is a fraction, rel_l2 a relative L2 error")


@dataclass(frozen=True)
class ReportConfig:
    run_dirs: tuple[str, ...]
    out: str
    title: str = "TMAF study report"
    max_images_per_run: int = 6
    max_activation_figures: int = 12
    activation_channels: int = 4
    copy_images: bool = False
    checkpoints: tuple[str, ...] = ()
    plan: bool = False  # list what would be reported, write nothing


def _parser() -> OneLineErrorParser:
    p = OneLineErrorParser(prog="tmaf report", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", required=True, help="output folder for report.md / report.html")
    p.add_argument("--title", default=ReportConfig.title)
    p.add_argument("--max-images-per-run", type=int, default=ReportConfig.max_images_per_run)
    p.add_argument("--max-activation-figures", type=int,
                   default=ReportConfig.max_activation_figures)
    p.add_argument("--activation-channels", type=int, default=ReportConfig.activation_channels,
                   help="channels per layer in learned-activation plots")
    p.add_argument("--copy-images", action="store_true",
                   help="copy the runs' PNGs into DIR/figures (default: report.md links them "
                        "where they are; report.html always embeds them)")
    p.add_argument("--checkpoints", action="append", default=[], metavar="DIR",
                   help="(repeatable) folder with reruns of reported train runs (same config and seed) "
                        "whose checkpoints are used for the learned-activation figures only "
                        "(their numbers are not added to the tables)")
    p.add_argument("--plan", action="store_true",
                   help="list what would be reported; write nothing")
    return p


def parse_args(argv: list[str]) -> ReportConfig:
    return config_of(_parser().parse_args(argv))


def config_of(a) -> ReportConfig:
    for name in ("max_images_per_run", "max_activation_figures", "activation_channels"):
        if getattr(a, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(a, name)}")
    return ReportConfig(tuple(a.run_dirs), a.out, a.title, a.max_images_per_run,
                        a.max_activation_figures, a.activation_channels, a.copy_images,
                        tuple(a.checkpoints), a.plan)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return command_main(_parser, lambda a: report(config_of(a), argv), argv)


def report(cfg: ReportConfig, argv: list[str]) -> int:
    missing = [d for d in (*cfg.run_dirs, *cfg.checkpoints) if not Path(d).exists()]
    if missing:
        return usage_error(f"run folder(s) not found: {', '.join(missing)} "
                           "(expected folders holding results.json files)")
    col = collect(list(cfg.run_dirs))
    if cfg.checkpoints:
        extra = collect(list(cfg.checkpoints))
        col.reruns = extra.train
        col.skipped += extra.skipped
    summary = (f"found {len(col.approx)} approx stud(ies) with "
               f"{sum(len(s.runs) for s in col.approx)} runs, {len(col.train)} train run(s), "
               f"{len(col.skipped)} skipped")
    if cfg.plan:
        print(f"[plan] {summary}; would write {cfg.out}/report.md and report.html")
        for s in col.skipped:
            print(f"  skipped {s.path}: {s.reason}")
        return 0
    from tmaf_lab.files import atomic_write_text
    from tmaf_lab.runmeta import OutputFolderError, check_writable, save_config, write_json

    try:
        out = check_writable(cfg.out)
    except OutputFolderError as e:
        return usage_error(e)
    save_config(out, cfg, ["tmaf", "report", *argv])
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = [Heading(1, cfg.title),
              Para(f"Generated {now} by `tmaf report {' '.join(argv)}` from "
                   f"{', '.join(display(p) for p in col.sources)}.")]
    opt = Options(out, cfg.max_images_per_run, cfg.max_activation_figures,
                  cfg.activation_channels, cfg.copy_images)
    records = all_records(col)
    blocks = build(col, opt, header, records)
    write_json(out / "stats.json", json_safe({"conventions": STATS_NOTE, "records": records}))
    atomic_write_text(out / "report.md", to_markdown(blocks))
    atomic_write_text(out / "report.html", to_html(blocks, out, cfg.title))
    print(f"{summary}\nwrote {out / 'report.md'} and {out / 'report.html'}")
    for s in col.skipped:
        print(f"  skipped {s.path}: {s.reason}")
    return 0
