"""Tables of function-fitting runs (``tmaf tables`` generators ``fitting_ratios``,
``fit_ratios`` and ``fit_costs``): per target, each activation's geometric-mean error ratio to a
reference with its 95 % t interval over the paired seeds, and the cost of the fits.
"""

from __future__ import annotations

import json
from pathlib import Path

from tmaf_lab.mdtable import markdown_table
from tmaf_lab.runs import is_finished, read_results

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


def _fit_runs(folders: list[Path]) -> dict[str, dict[str, list[dict]]]:
    """target -> activation -> runs, merged over ``folders`` (each holding <target>/results.json
    of ``tmaf approx`` runs of one protocol), each run with its ``_folder``, ``_target`` and
    ``_steps``; an activation found in two folders is an error."""
    out: dict[str, dict[str, list[dict]]] = {}
    for folder in folders:
        if not folder.is_dir():
            raise ValueError(f"table source {folder} is not a folder")
        for key in TARGETS:
            if not is_finished(folder / key):
                continue
            arms = out.setdefault(key, {})
            study = read_results(folder / key)
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
