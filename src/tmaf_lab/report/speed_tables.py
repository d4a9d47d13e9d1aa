"""Tables of speed measurements (``tmaf tables`` generators ``kernel_rounds``, ``targets`` and
``lookup_runs``): kernel-only ratios of builds timed in alternating rounds, the speed targets of
``tmaf bench --quick`` runs side by side, and the banded activations of ``tmaf bench --parts
act`` runs side by side (e.g. one per ``TMAF_COLS_LOOKUP``).
"""

from __future__ import annotations

import csv
import re
import statistics
from pathlib import Path

from tmaf_lab.lists import parse_list
from tmaf_lab.mdtable import markdown_table

ROUND_FOLDER = re.compile(r"(?P<label>[a-z]+)-(?P<isa>[a-z0-9]+)-(?P<round>\d+)")


def kernel_rounds_table(folder: Path, labels: list[str]) -> str:
    """Kernel-only ratios (to ``torch.relu`` / ``threshold_backward``, same run) of builds timed in
    alternating rounds: ``folder/<label>-<isa>-<round>/kernels.csv`` (``tmaf bench --parts
    kernels``), one column per label and round, and the last label over the first (geometric
    mean over the rounds). Rows: ISA, shape, phase, candidate."""
    ratios: dict[tuple, dict[tuple[str, int], float]] = {}
    rounds: set[int] = set()
    if not folder.is_dir():
        raise ValueError(f"table source {folder} is not a folder")
    for sub in sorted(folder.iterdir()):
        m = ROUND_FOLDER.fullmatch(sub.name)
        if not (m and sub.is_dir() and m["label"] in labels):
            continue
        path = sub / "kernels.csv"
        if not path.is_file():
            raise ValueError(f"{sub} has no kernels.csv")
        rounds.add(int(m["round"]))
        with path.open() as f:
            for row in csv.DictReader(f):
                if row["kind"] == "relu":
                    continue
                key = (m["isa"], row["shape"], row["phase"], row["candidate"])
                ratios.setdefault(key, {})[(m["label"], int(m["round"]))] = float(row["ratio_vs_relu_kernel"])
    if not ratios:
        raise ValueError(f"{folder} has no <label>-<isa>-<round>/kernels.csv for labels {labels}")
    cols = [(label, r) for r in sorted(rounds) for label in labels]
    rows = []
    for key in sorted(ratios, key=lambda k: (k[0] != "avx512", k[1], k[2] != "fwd", k[3])):
        got = ratios[key]
        cells = [f"{got[c]:.2f}x" if c in got else "" for c in cols]
        pairs = [got[(labels[-1], r)] / got[(labels[0], r)] for r in sorted(rounds)
                 if (labels[-1], r) in got and (labels[0], r) in got]
        change = f"{statistics.geometric_mean(pairs):.2f}" if pairs else ""
        rows.append((*key, *cells, change))
    return markdown_table(["isa", "shape", "phase", "kernel", *(f"{label} {r}" for label, r in cols),
                           f"{labels[-1]} / {labels[0]}"], rows, align="llll" + "r" * (len(cols) + 1))


def kernel_round_labels(arg: str) -> list[str]:
    """The LABELS of a kernel_rounds marker's ``FOLDER:LABELS`` (two or more, comma list)."""
    labels = list(parse_list(arg.partition(":")[2], what="labels", allow_empty=True))
    if len(labels) < 2:
        raise ValueError(f"table:kernel_rounds {arg}: expected FOLDER:BEFORE,AFTER (two or more "
                         "labels of <label>-<isa>-<round> folders)")
    return labels


def targets_table(folders: list[Path], root: Path) -> str:
    """The speed targets of ``tmaf bench --quick`` runs side by side: one row per (target,
    where), one column per (run folder, threads) with the measured value (bold where the limit
    is missed), then the limit. Folders (relative to ``root``) hold targets.csv; a column is
    named by the folder and the ISA its kernels used."""
    cols: list[tuple[str, str]] = []
    values: dict[tuple[str, str], dict[tuple[str, str], dict]] = {}
    for folder in folders:
        path = folder / "targets.csv"
        if not path.is_file():
            raise ValueError(f"{folder} has no targets.csv (tmaf bench --quick --out {folder})")
        name = folder.relative_to(root).as_posix()
        with path.open() as f:
            for row in csv.DictReader(f):
                col = (name, row["threads"])
                if col not in cols:
                    cols.append(col)
                values.setdefault((row["target"], row["where"]), {})[col] = row
    isa = {name: next(r["isa"] for rows in values.values() for (n, _), r in rows.items() if n == name)
           for name, _ in cols}
    rows = []
    for (target, where), got in values.items():
        cells, limits = [], {}
        for col in cols:
            r = got.get(col)
            if r is None:
                cells.append("")
                continue
            unit = "x" if r["unit"] == "x" else f" {r['unit']}"
            text = f"{float(r['measured']):.2f}{unit}"
            cells.append(f"**{text}**" if r["met"] == "False" else text)
            if r["limit"]:
                sign = "= " if target.startswith("saved") else "<= "
                limits.setdefault(f"{sign}{float(r['limit']):g}{unit}", []).append(col[1])
        limit = (next(iter(limits), "") if len(limits) <= 1 else
                 ", ".join(f"{text} ({'/'.join(dict.fromkeys(ts))} t)" for text, ts in limits.items()))
        rows.append((target, where, *cells, limit))
    header = [f"{name} ({isa[name]}, {t} t)" for name, t in cols]
    return markdown_table(["target", "where", *header, "limit"], rows,
                          align="ll" + "r" * (len(cols) + 1))


def lookup_runs_table(folders: list[Path], root: Path) -> str:
    """The banded candidates of ``tmaf bench --parts act`` runs side by side: one row per
    (shape, phase, kind, m) of every kind but ReLU and the diagonal ones, one column per run
    folder (relative to ``root``) with the paired median ratio to eager ReLU; then one row per
    (shape, phase) with continuous_tridiagonal's median time over tridiagonal's (m = 9)."""
    runs = {}
    for folder in folders:
        path = folder / "activations.csv"
        if not path.is_file():
            raise ValueError(f"table source {path} is missing (tmaf bench --parts act writes it)")
        with path.open() as f:
            runs[folder.relative_to(root).as_posix()] = {
                (r["shape"], r["phase"], r["kind"], r["m"]): (float(r["ratio_vs_relu_eager"]), float(r["median_ms"]))
                for r in csv.DictReader(f)}
    keys = sorted({k for got in runs.values() for k in got if k[2] not in ("relu", "diagonal", "continuous_diagonal")},
                  key=lambda k: (k[0], k[1], k[2], int(k[3])))
    if not keys:
        raise ValueError(f"no banded candidates in {', '.join(runs)}")
    rows = [(shape, phase, f"{kind} m = {m}", *(f"{got[(shape, phase, kind, m)][0]:.2f}x"
                                                if (shape, phase, kind, m) in got else "" for got in runs.values()))
            for shape, phase, kind, m in keys]
    for shape, phase in sorted({k[:2] for k in keys}):
        cells = []
        for got in runs.values():
            c, j = got.get((shape, phase, "continuous_tridiagonal", "9")), got.get((shape, phase, "tridiagonal", "9"))
            cells.append(f"{c[1] / j[1]:.2f}x" if c and j else "")
        rows.append((shape, phase, "continuous / jump tridiagonal (time)", *cells))
    return markdown_table(["shape", "phase", "candidate", *runs], rows, align="lll" + "r" * len(runs))
