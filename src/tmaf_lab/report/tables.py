"""Tables in the results READMEs, generated from the files beside them.

A generated table sits between markers in the Markdown::

    <!-- table:NAME ARG -->
    | ... the table ... |
    <!-- /table -->

``NAME`` is a generator of :data:`GENERATORS`; ``ARG`` is a folder relative to the README.
The generators live with what they read: :mod:`~tmaf_lab.report.image_tables` (image
classifiers), :mod:`~tmaf_lab.report.text_tables` and :mod:`~tmaf_lab.report.gpt_tables` (GPT
runs), :mod:`~tmaf_lab.report.fit_tables` (function fitting) and
:mod:`~tmaf_lab.report.speed_tables` (benchmarks).
``tmaf tables FILE.md ...`` rewrites every marked table in place; ``--check`` changes
nothing and exits 1 when a committed table differs from what its source files give.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

from tmaf_lab.cli import OneLineErrorParser, command_main
from tmaf_lab.files import atomic_write_text
from tmaf_lab.lists import parse_list
from tmaf_lab.report import gpt_tables
from tmaf_lab.report.fit_tables import fit_cost_table, fit_ratio_table, fitting_ratio_table
from tmaf_lab.report.image_tables import (
    final_level_table,
    image_paired_table,
    paired_accuracy_table,
    pilot_effects_table,
    pilot_sources,
    tuning_table,
)
from tmaf_lab.report.speed_tables import (
    kernel_round_labels,
    kernel_rounds_table,
    lookup_runs_table,
    targets_table,
)
from tmaf_lab.report.text_tables import text_curve_table, text_paired_table, text_run_table

BLOCK = re.compile(r"(<!-- table:(\S+) (\S+) -->\n)(.*?)(<!-- /table -->)", re.S)


def _folders(here: Path, text: str) -> list[Path]:
    """The folders of a marker's comma list, relative to ``here`` (the README's folder)."""
    return [here / name for name in parse_list(text, what="folders")]


#: name -> (folder of the README, the marker's ARG) -> table. tuning: ARG is the folder of the
#: --val-split runs; paired_accuracy: ARG is a comma list of run folders, one per data set
#: (side by side), e.g. ``cnn/mnist,cnn/fashion-mnist``.
GENERATORS: dict[str, Callable[[Path, str], str]] = {
    "tuning": lambda here, arg: tuning_table(here / arg),
    "paired_accuracy": lambda here, arg: paired_accuracy_table(_folders(here, arg)),
    # ARG: a tmaf report stats.json over fitting groups w<W>/<target>
    # ARG: STATS[:ACTIVATION] (default diagonal)
    "fitting_ratios": lambda here, arg: fitting_ratio_table(here / arg.split(":")[0],
                                                            *arg.split(":")[1:2]),
    # ARG: a folder of text runs <arm>/seed<S>
    "text_runs": lambda here, arg: text_run_table(here / arg),
    "text_curve": lambda here, arg: text_curve_table(here / arg),
    "text_paired": lambda here, arg: text_paired_table(here / arg),
    # ARG: FOLDER:REF1,REF2 (tmaf_lab.report.gpt_tables)
    "text_paired_refs": lambda here, arg: gpt_tables.text_paired_refs_table(
        here / arg.partition(":")[0], list(parse_list(arg.partition(":")[2], allow_empty=True))),
    "text_scale": lambda here, arg: gpt_tables.text_scale_table(here / arg),
    # ARG: FOLDER:REF, runs started with --start-from, paired with the arm REF
    "text_finetune": lambda here, arg: gpt_tables.text_finetune_table(
        here / arg.partition(":")[0], arg.partition(":")[2]),
    # ARG: a comma list of folders of <target>/results.json of one fitting protocol
    # [:ARMS[:REFERENCE]]: the activations shown (comma list) and the one they are divided by
    "fit_ratios": lambda here, arg: fit_ratio_table(
        _folders(here, arg.split(":")[0]),
        *([list(parse_list(a)) if a else None for a in arg.split(":")[1:2]] + arg.split(":")[2:3])),
    "fit_costs": lambda here, arg: fit_cost_table(_folders(here, arg.split(":")[0])),
    # ARG: a comma list of folders of image runs with a final evaluation (recipe cpu-cifar)
    "final_levels": lambda here, arg: final_level_table(_folders(here, arg), here),
    # ARG: RECIPE_RUN:ABLATIONS[:STUDY]: the recipe's run folder, a folder of runs of the recipe
    # with one change each, and optionally the study's folder of <arm>/seed<S> runs
    "pilot_effects": lambda here, arg: pilot_effects_table(*pilot_sources(here, arg), here),
    # ARG: a folder of image runs <arm>/seed<S>
    "image_paired": lambda here, arg: image_paired_table(here / arg),
    # ARG: a comma list of tmaf bench --quick output folders (targets.csv)
    "targets": lambda here, arg: targets_table(_folders(here, arg), here),
    # ARG: a comma list of tmaf bench --parts act output folders (activations.csv)
    "lookup_runs": lambda here, arg: lookup_runs_table(_folders(here, arg), here),
    # ARG: FOLDER:LABELS, LABELS a comma list (before first, after last) of <label>-<isa>-<round>
    "kernel_rounds": lambda here, arg: kernel_rounds_table(here / arg.partition(":")[0],
                                                           kernel_round_labels(arg)),
    # ARG: the fits.json / gpt2.json of `tmaf match fits|gpt2`
    "match_fits": lambda here, arg: _match().fits_table(here / arg),
    "match_gpt2": lambda here, arg: _match().gpt2_table(here / arg),
}


def _match():
    from tmaf_lab import match

    return match


def regenerate(text: str, here: Path) -> str:
    """``text`` with every marked table rebuilt from its source (folders relative to here)."""
    def build(m: re.Match) -> str:
        name, arg = m.group(2), m.group(3)
        if name not in GENERATORS:
            raise ValueError(f"table:{name}: unknown generator; expected one of "
                             f"{', '.join(GENERATORS)}")
        return m.group(1) + GENERATORS[name](here, arg) + m.group(5)

    return BLOCK.sub(build, text)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(prog="tmaf tables", description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="Markdown files with table markers")
    p.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 when a table differs from its source")
    return p


def run(args) -> int:
    stale = []
    for path in args.files:
        text = path.read_text()
        new = regenerate(text, path.parent)
        if new != text:
            stale.append(path)
            if not args.check:
                atomic_write_text(path, new)
    for path in stale:
        print(f"{'differs' if args.check else 'rewrote'}: {path}")
    return 1 if stale and args.check else 0


def main(argv: list[str] | None = None) -> int:
    return command_main(build_parser, run, argv)
