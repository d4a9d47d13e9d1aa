"""Tables in the results READMEs, generated from the files beside them.

A generated table sits between markers in the Markdown::

    <!-- table:NAME ARG -->
    | ... the table ... |
    <!-- /table -->

``NAME`` is a generator of :data:`GENERATORS`; ``ARG`` is a folder relative to the README.
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
from tmaf_lab.mdtable import markdown_table

DATASETS = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
BLOCK = re.compile(r"(<!-- table:(\S+) (\S+) -->\n)(.*?)(<!-- /table -->)", re.S)


def _rate(lr: float) -> str:
    """3e-4, 1e-3, 1e-2 as the README writes them."""
    mant, exp = f"{lr:.0e}".split("e")
    return f"{mant}e{int(exp)}"


def tuning_table(root: Path) -> str:
    """Validation accuracy in % per learned-activation learning rate (columns) for each data
    set and activation (rows), best in bold; from the --val-split runs below ``root``."""
    from tmaf_lab.train.tuning import best_rates, read_runs

    best = best_rates(read_runs(root))
    rates = sorted({float(r) for b in best for r in b["val_acc"]})
    base = {b["base_lr"] for b in best}
    order = {"prelu": 0, "pwl": 1, "diagonal": 2, "tridiagonal": 3}
    best.sort(key=lambda b: (list(DATASETS).index(b["dataset"]), order.get(b["activation"], 9)))
    rows = []
    for b in best:
        cells = []
        for lr in rates:
            acc = b["val_acc"].get(str(lr))
            text = "" if acc is None else f"{100 * acc:.2f}"
            cells.append(f"**{text}**" if lr == b["best_tmaf_lr"] else text)
        rows.append((DATASETS.get(b["dataset"], b["dataset"]), b["activation"], *cells))
    heads = [_rate(lr) + (" (recipe)" if lr in base else "") for lr in rates]
    return markdown_table(["data set", "activation", *heads], rows,
                          align="ll" + "r" * len(rates))


GENERATORS: dict[str, Callable[[Path], str]] = {"tuning": tuning_table}


def regenerate(text: str, here: Path) -> str:
    """``text`` with every marked table rebuilt from its source (folders relative to here)."""
    def build(m: re.Match) -> str:
        name, arg = m.group(2), m.group(3)
        if name not in GENERATORS:
            raise ValueError(f"table:{name}: unknown generator; expected one of "
                             f"{', '.join(GENERATORS)}")
        return m.group(1) + GENERATORS[name](here / arg) + m.group(5)

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
