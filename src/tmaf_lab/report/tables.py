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
import csv
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

from tmaf_lab.cli import OneLineErrorParser, command_main
from tmaf_lab.files import atomic_write_text
from tmaf_lab.mdtable import markdown_table
from tmaf_lab.report import gpt_tables
from tmaf_lab.report.text_runs import loss_cell as _loss_cell
from tmaf_lab.report.text_runs import seeds_text as _seeds_text
from tmaf_lab.report.text_runs import text_results as _text_results

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


TMAF_ARMS = ("diagonal", "tridiagonal")  # compared with their continuous twin, pwl, too


def _seed_accuracies(folder: Path) -> dict[str, dict[int, float]]:
    """{arm: {seed: test accuracy}} of the finished runs ``folder/<arm>/seed<S>/results.json``;
    arms with their own learning rate (``<act>-tmaf-lr...``, ``<act>-act-lr...``) are left out."""
    from tmaf_lab.report.stats import sort_activations

    if not folder.is_dir():
        raise ValueError(f"table source {folder} is not a folder")
    runs: dict[str, dict[int, float]] = {}
    for path in sorted(folder.glob("*/seed*/results.json")):
        arm = path.parent.parent.name
        if "-" not in arm:
            runs.setdefault(arm, {})[int(path.parent.name[4:])] = float(
                json.loads(path.read_text())["test_acc"])
    if "relu" not in runs:
        raise ValueError(f"table source {folder} has no finished relu run to pair with")
    return {arm: runs[arm] for arm in sort_activations(runs)}


def _pp(x: float) -> str:
    """A difference in percentage points, signed, 3 decimals, with a true minus sign."""
    return f"{x:+.3f}".replace("-", "−")


def _paired_cell(values: dict[int, float], ref: dict[int, float] | None) -> str:
    """``+0.040 [−0.040, +0.120]`` (pp, 95 % t interval), bold when it excludes 0."""
    from tmaf_lab.report.stats import paired

    if ref is None:
        return ""
    p = paired({s: 100 * v for s, v in values.items()}, {s: 100 * v for s, v in ref.items()})
    if p.n < 2:
        return f"{_pp(p.mean)} (n={p.n})"
    text = f"{_pp(p.mean)} [{_pp(p.low)}, {_pp(p.high)}]"
    return f"**{text}**" if p.low > 0 or p.high < 0 else text


def paired_accuracy_table(sources: list[Path]) -> str:
    """Per data set (one source folder each, side by side): the test accuracy in % of every
    seed, the paired difference to ReLU and, for TMAF, to pwl, with 95 % t intervals."""
    per_source = [_seed_accuracies(f) for f in sources]
    arms = list(dict.fromkeys(a for runs in per_source for a in runs))
    heads, rows = ["activation"], []
    for folder, runs in zip(sources, per_source, strict=True):
        seeds = {s for v in runs.values() for s in v}
        heads += [f"{DATASETS.get(folder.name, folder.name)}, seeds {_seeds_text(seeds)}",
                  "− ReLU", "− pwl"]
    for arm in arms:
        row = [arm]
        for runs in per_source:
            values = runs.get(arm, {})
            row.append(", ".join(f"{100 * values[s]:.2f}" for s in sorted(values)))
            row.append(_paired_cell(values, runs["relu"]) if arm != "relu" and values else "")
            rival = runs.get("pwl") if arm in TMAF_ARMS and values else None
            row.append(_paired_cell(values, rival))
        rows.append(tuple(row))
    return markdown_table(heads, rows, align="l" * len(heads))


TARGETS = {"sin1": "sin(pi x)", "sin4": "sin(4 pi x)", "sin16": "sin(16 pi x)",
           "sin32": "sin(32 pi x)", "chirp": "chirp", "sin2d": "sin2d"}


def _ratio_number(r: float) -> str:
    """A ratio to 2 significant digits, whole numbers from 10 on."""
    return f"{r:#.2g}" if r < 10 else f"{r:.0f}"


def _ratio_text(rec: dict) -> str:
    """2 significant digits, ``(n.s.)`` where the 95 % interval contains 1."""
    text = _ratio_number(rec["ratio"])
    return text if rec["verdict"] in ("better", "worse") else f"{text} (n.s.)"


def _verdict_text(verdicts: list[str]) -> str:
    words = ["no difference" if v not in ("better", "worse") else v for v in verdicts]
    return words[0] if len(set(words)) == 1 else " / ".join(words)


def fitting_ratio_table(stats_json: Path, activation: str = "diagonal") -> str:
    """Per fitting target: ``activation``'s geometric-mean error ratio to ReLU and to pwl at each
    width (``w32 / w64``), from a ``tmaf report`` stats.json over ``w<W>/<target>`` groups."""
    if not stats_json.is_file():
        raise ValueError(f"table source {stats_json} is not a file")
    recs = [r for r in json.loads(stats_json.read_text())["records"]
            if r.get("kind") == "approx" and r["activation"] == activation]
    by = {tuple(r["group"].split("/", 1)): r for r in recs}  # (width, target) -> record
    widths = sorted({w for w, _ in by}, key=lambda w: int(w.lstrip("w")))
    rows = []
    for key, name in TARGETS.items():
        cells = [by.get((w, key)) for w in widths]
        if any(c is None for c in cells):
            continue
        rows.append((name, " / ".join(_ratio_text(c["ratio_vs_relu"]) for c in cells),
                     _verdict_text([c["ratio_vs_relu"]["verdict"] for c in cells]),
                     " / ".join(_ratio_text(c["ratio_vs_pwl"]) for c in cells)))
    if not rows:
        raise ValueError(f"{stats_json} has no fitting records of {activation!r} at every width")
    name = "TMAF" if activation == "diagonal" else activation
    return markdown_table(["target", f"{name} / ReLU", "verdict vs ReLU", f"{name} / pwl"], rows,
                          align="llll")


def text_run_table(folder: Path) -> str:
    """Per arm (``folder/<arm>/seed<S>/results.json`` of text runs): the seeds, validation and
    test loss (nats/char, mean over seeds), test bits/char, and training seconds per run."""
    from tmaf_lab.seedstats import mean_std

    rows = []
    for arm, rs in _text_results(folder).items():
        mean = {k: mean_std([r[k] for r in rs])[0] for k in ("val_loss", "test_loss", "test_bpc")}
        rows.append((arm, ",".join(str(r["seed"]) for r in rs), rs[0]["steps"], rs[0]["params"],
                     f"{mean['val_loss']:.4f}", f"{mean['test_loss']:.4f}", f"{mean['test_bpc']:.3f}",
                     ", ".join(f"{r['train_seconds']:.0f}" for r in rs)))
    return markdown_table(["activation", "seeds", "steps", "parameters", "val nats/char",
                           "test nats/char", "test bits/char", "train s per run"], rows,
                          align="llrrrrrr")


def text_curve_table(folder: Path, every: int = 300) -> str:
    """Validation loss (nats/char, the fixed curve windows) every ``every`` steps, one column
    per arm of ``folder`` (the mean over its finished runs ``<arm>/seed<S>``, each run's
    metrics.jsonl)."""
    from tmaf_lab.report.stats import order_key

    curves: dict[str, dict[int, dict[int, float]]] = {}  # arm -> step -> seed -> loss
    for path in sorted(folder.glob("*/seed*/metrics.jsonl")):
        if not (path.parent / "results.json").is_file():
            continue  # an unfinished run
        arm, seed = path.parent.parent.name, int(path.parent.name[4:])
        for line in path.read_text().splitlines():
            if line.strip() and (r := json.loads(line))["step"] % every == 0:
                curves.setdefault(arm, {}).setdefault(r["step"], {})[seed] = r["val_loss"]
    if not curves:
        raise ValueError(f"table source {folder} has no text run curve (<arm>/seed<S>/metrics.jsonl)")
    arms = sorted(curves, key=order_key)
    seeds = {a: sorted({s for by in curves[a].values() for s in by}) for a in arms}
    steps = sorted({s for a in arms for s in curves[a]})
    rows = [(step, *(f"{sum(v.values()) / len(v):.4f}"
                     if len(v := curves[a].get(step, {})) == len(seeds[a]) else ""
                     for a in arms)) for step in steps]
    return markdown_table(["step", *(f"{a}, seeds {_seeds_text(set(seeds[a]))}" for a in arms)],
                          rows)


#: the final evaluation's columns: (model, test-time augmentation level) -> heading
FINAL_LEVELS = {("ema", "flip-translate"): "final (average, flips + shifts)",
                ("net", "off"): "net, no TTA", ("net", "flip"): "net, flips",
                ("net", "flip-translate"): "net, flips + shifts",
                ("ema", "off"): "average, no TTA"}


def final_level_table(folders: list[Path], root: Path) -> str:
    """One row per finished image run below each of ``folders`` (its ``results.json``, named by
    its path below ``root``): test accuracy at each level of the final evaluation (the trained
    net and the weight average, without and with test-time augmentation), epochs and training
    seconds."""
    rows = []
    for folder in folders:
        if not folder.is_dir():
            raise ValueError(f"table source {folder} is not a folder")
    for path in sorted(p for folder in folders for p in folder.glob("**/results.json")):
        r = _with_final(path)
        rows.append((_run_link(path.parent, root),
                     *(f"{100 * r['final'][net][level]['acc']:.2f} %"
                       for net, level in FINAL_LEVELS), r["epochs"],
                     f"{r['train_seconds']:.0f}"))
    if not rows:
        raise ValueError(f"table sources {', '.join(map(str, folders))} have no finished run "
                         "(results.json)")
    return markdown_table(["run", *FINAL_LEVELS.values(), "epochs", "train s"], rows,
                          align="l" + "r" * (len(FINAL_LEVELS) + 2))


#: (level of the final evaluation, what it leaves out of the recipe)
IN_RUN_EFFECTS = ((("ema", "off"), "test-time augmentation (weight average, no flips or shifts)"),
                  (("ema", "flip"), "the one-pixel shifts of the TTA (weight average, flips only)"),
                  (("net", "flip-translate"), "the weight average (trained net, flips + shifts)"))
#: options that name a run, not what it trains
_RUN_OPTIONS = {"--out", "--seeds", "--seed", "--resume", "--threads", "--device"}


def _options(argv: list[str]) -> dict[str, str]:
    """{option: value} of a ``tmaf train`` argv (a flag: ''), run-naming options left out."""
    opts, i = {}, 0
    while i < len(argv):
        if argv[i].startswith("--"):
            has_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
            opts[argv[i]] = argv[i + 1] if has_value else ""
            i += 2 if has_value else 1
        else:
            i += 1
    return {k: v for k, v in opts.items() if k not in _RUN_OPTIONS}


def _finished_image_run(folder: Path) -> tuple[dict, list[str]]:
    """(results.json, config.json argv) of a finished image run with a final evaluation."""
    results, config = folder / "results.json", folder / "config.json"
    for path in (results, config):
        if not path.is_file():
            raise ValueError(f"{folder} is not a finished run: no {path.name}")
    return _with_final(results), json.loads(config.read_text())["argv"]


def _with_final(path: Path) -> dict:
    """An image run's results.json, which must hold its final evaluation."""
    r = json.loads(path.read_text())
    if "final" not in r:
        raise ValueError(f"{path} has no final evaluation (results.json 'final')")
    return r


def _run_link(folder: Path, root: Path) -> str:
    name = folder.relative_to(root).as_posix()
    return f"[{name}]({name}/results.json)"


def _pilot_sources(here: Path, arg: str) -> tuple[Path, Path, Path | None]:
    """The folders of a pilot_effects marker's ``RECIPE_RUN:ABLATIONS[:STUDY]``."""
    parts = arg.split(":")
    if not 2 <= len(parts) <= 3 or not all(parts):
        raise ValueError(f"table:pilot_effects {arg}: expected RECIPE_RUN:ABLATIONS[:STUDY] "
                         "(folders relative to the README)")
    return here / parts[0], here / parts[1], here / parts[2] if len(parts) == 3 else None


def pilot_effects_table(recipe: Path, ablations: Path, study: Path | None, root: Path) -> str:
    """The measured effect of each technique of a recipe on one run: rows for what the final
    evaluation of the ``recipe`` run leaves out in turn (TTA, its shifts, the weight average;
    with ``study``, a folder of ``<arm>/seed<S>`` runs, also that effect over all its runs with
    a 95 % t interval), then one row per finished run below ``ablations`` (the recipe with the
    options its config.json argv changes). Effect: the recipe's test accuracy minus the
    changed one's, in points (positive: the technique helps)."""
    from tmaf_lab.report.stats import paired

    if not ablations.is_dir():
        raise ValueError(f"table source {ablations} is not a folder")
    base, base_argv = _finished_image_run(recipe)
    base_opts = _options(base_argv)
    final = 100 * base["final"]["ema"]["flip-translate"]["acc"]
    study_runs = [_with_final(p) for p in sorted(study.glob("*/seed*/results.json"))
                  ] if study else []
    if study and not study_runs:
        raise ValueError(f"table source {study} has no finished run (<arm>/seed<S>/results.json)")
    def level_accs(net: str, level: str) -> dict[int, float]:
        return {i: 100 * r["final"][net][level]["acc"] for i, r in enumerate(study_runs)}

    study_final = level_accs("ema", "flip-translate")
    rows = [("none (the recipe)", _run_link(recipe, root), f"{final:.2f}", "", "")]
    for (net, level), what in IN_RUN_EFFECTS:
        over = ""
        if study_runs:
            p = paired(study_final, level_accs(net, level))
            over = (f"{_pp(p.mean)} [{_pp(p.low)}, {_pp(p.high)}] (n={p.n})" if p.n > 1
                    else f"{_pp(p.mean)} (n=1)")
        acc = 100 * base["final"][net][level]["acc"]
        rows.append((f"without {what}", _run_link(recipe, root), f"{acc:.2f}", _pp(final - acc), over))
    for path in sorted(ablations.glob("**/results.json")):
        r, argv = _finished_image_run(path.parent)
        changed = {k: v for k, v in _options(argv).items() if base_opts.get(k) != v}
        if not changed:
            raise ValueError(f"{path.parent}: its command changes nothing in the recipe run's "
                             f"({recipe})")
        text = " ".join(f"{k} {v}".strip() for k, v in changed.items())
        acc = 100 * r["final"]["ema"]["flip-translate"]["acc"]
        rows.append((f"`{text}`", _run_link(path.parent, root), f"{acc:.2f}", _pp(final - acc), ""))
    return markdown_table(["change from the recipe", "run", "test %", "recipe − this (pp)",
                           "over the study's runs (pp, 95 % t)"], rows, align="llrrl")


def image_paired_table(folder: Path) -> str:
    """Per arm of ``folder`` (``<arm>/seed<S>/results.json`` of image runs): the test accuracy
    in % of every seed and its mean, the paired difference to ReLU, to GELU and, for TMAF, to
    its continuous twin, in points with 95 % t intervals over the common seeds."""
    runs = _seed_accuracies(folder)
    rows = []
    for arm, values in runs.items():
        twin = runs.get(CONTINUOUS_TWIN.get(arm, ""))
        rows.append((arm, _seeds_text(set(values)),
                     ", ".join(f"{100 * values[s]:.2f}" for s in sorted(values)),
                     f"{100 * sum(values.values()) / len(values):.2f}",
                     "" if arm == "relu" else _paired_cell(values, runs["relu"]),
                     "" if arm == "gelu" or "gelu" not in runs else _paired_cell(values, runs["gelu"]),
                     _paired_cell(values, twin) if twin else ""))
    return markdown_table(["activation", "seeds", "test % per seed", "mean %", "− ReLU", "− GELU",
                           "− continuous twin"], rows, align="lllrlll")


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
        change = f"{math.exp(sum(map(math.log, pairs)) / len(pairs)):.2f}" if pairs else ""
        rows.append((*key, *cells, change))
    return markdown_table(["isa", "shape", "phase", "kernel", *(f"{label} {r}" for label, r in cols),
                           f"{labels[-1]} / {labels[0]}"], rows, align="llll" + "r" * (len(cols) + 1))


def _labels(arg: str) -> list[str]:
    """The LABELS of a kernel_rounds marker's ``FOLDER:LABELS`` (two or more, comma list)."""
    labels = [a for a in arg.partition(":")[2].split(",") if a]
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


#: each TMAF arm's continuous twin (same grid, same parameter count, continuous in y)
CONTINUOUS_TWIN = {"diagonal": "pwl", "tridiagonal": "continuous_tridiagonal"}


def text_paired_table(folder: Path, reference: str = "gelu") -> str:
    """Per arm of ``folder``: the test loss (nats/char) of every seed, the paired difference to
    the ``reference`` arm, to ReLU and, for TMAF, to its continuous twin, with 95 % t intervals
    over the common seeds (negative: lower loss, better)."""
    runs = _text_results(folder)
    if reference not in runs:
        raise ValueError(f"table source {folder} has no finished {reference} run to pair with")
    loss = {arm: {r["seed"]: float(r["test_loss"]) for r in rs} for arm, rs in runs.items()}
    rows = []
    for arm, values in loss.items():
        rows.append((arm, _seeds_text(set(values)), ", ".join(f"{values[s]:.4f}" for s in values),
                     "" if arm == reference else _loss_cell(values, loss[reference]),
                     "" if arm in ("relu", reference) else _loss_cell(values, loss.get("relu")),
                     _loss_cell(values, loss.get(CONTINUOUS_TWIN.get(arm, "")))))
    return markdown_table(["activation", "seeds", "test nats/char per seed",
                           f"− {reference.upper() if reference == 'gelu' else reference}",
                           "− ReLU", "− continuous twin"], rows, align="llllll")


def _fit_runs(folders: list[Path]) -> dict[str, dict[str, list[dict]]]:
    """target -> activation -> runs, merged over ``folders`` (each holding <target>/results.json
    of ``tmaf approx`` runs of one protocol), each run with its ``_folder``, ``_target`` and
    ``_steps``; an activation found in two folders is an error."""
    out: dict[str, dict[str, list[dict]]] = {}
    for folder in folders:
        if not folder.is_dir():
            raise ValueError(f"table source {folder} is not a folder")
        for key in TARGETS:
            path = folder / key / "results.json"
            if not path.is_file():
                continue
            arms = out.setdefault(key, {})
            study = json.loads(path.read_text())
            for r in study["runs"]:
                act = r["activation"]
                if act in arms and arms[act][0]["_folder"] != folder:
                    raise ValueError(f"activation {act!r} of {key} is in {folder} and "
                                     f"{arms[act][0]['_folder']}")
                arms.setdefault(act, []).append({**r, "_folder": folder, "_target": key,
                                                 "_steps": int(study["steps"])})
    return out


def _ratio_cell(values: dict[int, float], ref: dict[int, float]) -> str:
    """Geometric-mean ratio [95 % interval] over the paired seeds, bold when it excludes 1."""
    from tmaf_lab.report.stats import ratio_record

    num = _ratio_number
    rec = ratio_record(values, ref, lower_is_better=True)
    if rec["n"] < 2 or rec["ratio"] != rec["ratio"]:
        return f"{num(rec['ratio'])} (n={rec['n']})"
    text = f"{num(rec['ratio'])} [{num(rec['low'])}, {num(rec['high'])}]"
    return f"**{text}**" if rec["verdict"] in ("better", "worse") else text


def fit_ratio_table(folders: list[Path], arms: list[str] | None = None,
                    reference: str = "relu") -> str:
    """Per fitting target: the reference's mean relative L2 error and each activation's (of
    ``arms``, default all) geometric-mean error ratio to it over the paired seeds, 95 % t
    intervals (bold where the interval excludes 1), from ``tmaf approx`` runs of one protocol
    in several folders; a target enters once every activation shown has run on it."""
    runs = _fit_runs(folders)
    acts: list[str] = []
    for found in runs.values():
        acts += [a for a in found if a not in acts and a != reference]
    if arms:
        missing = [a for a in arms if a not in acts and a != reference]
        if missing:
            raise ValueError(f"no runs of {', '.join(missing)} in {', '.join(map(str, folders))}")
        acts = [a for a in arms if a != reference]
    rows = []
    for key, found in runs.items():
        if reference not in found or any(a not in found for a in acts):
            continue  # a target not yet run with every activation shown
        err = {a: {int(r["seed"]): float(r["rel_l2"]) for r in rs if not r.get("diverged")}
               for a, rs in found.items()}
        ref = err[reference]
        rows.append((TARGETS[key], f"{sum(ref.values()) / len(ref):.3g}",
                     *(_ratio_cell(err[a], ref) for a in acts)))
    if not rows:
        raise ValueError(f"no {reference} runs in {', '.join(map(str, folders))}")
    return markdown_table(["target", f"{reference} rel L2", *(f"{a} / {reference}" for a in acts)],
                          rows, align="l" * (2 + len(acts)))


def fit_cost_table(folders: list[Path]) -> str:
    """Per activation: width, parameters (of the 1-D targets) and the mean training seconds per
    1000 steps over all its runs (runs made at different times: orientation, not a paired
    speed measurement)."""
    per: dict[str, list[dict]] = {}
    for found in _fit_runs(folders).values():
        for act, rs in found.items():
            per.setdefault(act, []).extend(rs)
    rows = []
    for act, rs in per.items():
        one_d = [r for r in rs if r["_target"] != "sin2d"] or rs
        per_k = [1000 * float(r["train_seconds"]) / r["_steps"] for r in rs]
        rows.append((act, str(one_d[0]["width"]), str(one_d[0]["params"]),
                     f"{sum(per_k) / len(per_k):.2f}", str(len(rs))))
    return markdown_table(["activation", "width", "parameters", "train s / 1000 steps", "runs"],
                          rows, align="lrrrr")


#: name -> (folder of the README, the marker's ARG) -> table. tuning: ARG is the folder of the
#: --val-split runs; paired_accuracy: ARG is a comma list of run folders, one per data set
#: (side by side), e.g. ``cnn/mnist,cnn/fashion-mnist``.
GENERATORS: dict[str, Callable[[Path, str], str]] = {
    "tuning": lambda here, arg: tuning_table(here / arg),
    "paired_accuracy": lambda here, arg: paired_accuracy_table([here / a for a in arg.split(",")]),
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
        here / arg.partition(":")[0], [r for r in arg.partition(":")[2].split(",") if r]),
    "text_scale": lambda here, arg: gpt_tables.text_scale_table(here / arg),
    # ARG: a comma list of folders of <target>/results.json of one fitting protocol
    # [:ARMS[:REFERENCE]]: the activations shown (comma list) and the one they are divided by
    "fit_ratios": lambda here, arg: fit_ratio_table(
        [here / a for a in arg.split(":")[0].split(",")],
        *([a.split(",") if a else None for a in arg.split(":")[1:2]] + arg.split(":")[2:3])),
    "fit_costs": lambda here, arg: fit_cost_table([here / a for a in arg.split(":")[0].split(",")]),
    # ARG: a comma list of folders of image runs with a final evaluation (recipe cpu-cifar)
    "final_levels": lambda here, arg: final_level_table([here / a for a in arg.split(",")], here),
    # ARG: RECIPE_RUN:ABLATIONS[:STUDY]: the recipe's run folder, a folder of runs of the recipe
    # with one change each, and optionally the study's folder of <arm>/seed<S> runs
    "pilot_effects": lambda here, arg: pilot_effects_table(*_pilot_sources(here, arg), here),
    # ARG: a folder of image runs <arm>/seed<S>
    "image_paired": lambda here, arg: image_paired_table(here / arg),
    # ARG: a comma list of tmaf bench --quick output folders (targets.csv)
    "targets": lambda here, arg: targets_table([here / a for a in arg.split(",")], here),
    # ARG: FOLDER:LABELS, LABELS a comma list (before first, after last) of <label>-<isa>-<round>
    "kernel_rounds": lambda here, arg: kernel_rounds_table(here / arg.partition(":")[0],
                                                           _labels(arg)),
    # ARG: the fits.json / gpt2.json of `tmaf match fits|gpt2`
    "match_fits": lambda here, arg: _match_study().fits_table(here / arg),
    "match_gpt2": lambda here, arg: _match_study().gpt2_table(here / arg),
}


def _match_study():
    from tmaf_lab import match as match_study

    return match_study


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
