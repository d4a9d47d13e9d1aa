"""Tables of image-classifier runs (``tmaf tables`` generators ``tuning``, ``paired_accuracy``,
``final_levels``, ``pilot_effects`` and ``image_paired``).

Test accuracies of the ``<arm>/seed<S>`` runs of a study, paired by seed with 95 % t intervals;
the validation accuracy per learned-activation learning rate; each level of a run's final
evaluation (trained net or weight average, with and without test-time augmentation); and the
measured effect of each technique of a recipe.
"""

from __future__ import annotations

from pathlib import Path

from tmaf_lab.mdtable import markdown_table
from tmaf_lab.report.stats import CONTINUOUS_TWIN
from tmaf_lab.report.text_runs import seeds_text as _seeds_text
from tmaf_lab.runs import CONFIG, RESULTS, find_runs, read_config, read_results

DATASETS = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}


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
    for run in find_runs(folder, "*/seed*"):
        arm = run.parent.name
        if "-" not in arm:
            runs.setdefault(arm, {})[int(run.name[4:])] = float(read_results(run)["test_acc"])
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
    for run in sorted((r for folder in folders for r in find_runs(folder)),
                      key=lambda r: r / RESULTS):
        r = _with_final(run)
        rows.append((_run_link(run, root),
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
    for name in (RESULTS, CONFIG):
        if not (folder / name).is_file():
            raise ValueError(f"{folder} is not a finished run: no {name}")
    return _with_final(folder), read_config(folder)["argv"]


def _with_final(folder: Path) -> dict:
    """An image run's results.json, which must hold its final evaluation."""
    r = read_results(folder)
    if "final" not in r:
        raise ValueError(f"{folder / RESULTS} has no final evaluation (results.json 'final')")
    return r


def _run_link(folder: Path, root: Path) -> str:
    name = folder.relative_to(root).as_posix()
    return f"[{name}]({name}/results.json)"


def pilot_sources(here: Path, arg: str) -> tuple[Path, Path, Path | None]:
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
    study_runs = [_with_final(run) for run in find_runs(study, "*/seed*")] if study else []
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
    for run in find_runs(ablations):
        r, argv = _finished_image_run(run)
        changed = {k: v for k, v in _options(argv).items() if base_opts.get(k) != v}
        if not changed:
            raise ValueError(f"{run}: its command changes nothing in the recipe run's "
                             f"({recipe})")
        text = " ".join(f"{k} {v}".strip() for k, v in changed.items())
        acc = 100 * r["final"]["ema"]["flip-translate"]["acc"]
        rows.append((f"`{text}`", _run_link(run, root), f"{acc:.2f}", _pp(final - acc), ""))
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
