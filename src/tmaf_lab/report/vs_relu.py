"""Paired comparisons with ReLU, one record per (study or run group, activation).

A record holds the activation's mean ± std over seeds and the paired difference to ReLU
(same seed) with its 95 % t interval and verdict (:mod:`.stats`). The report renders the
records as the "Paired differences to ReLU" tables and saves them as ``stats.json``, the
machine-readable summary of a study.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict

from tmaf.factory import is_tmaf_name
from tmaf_lab.report.collect import ApproxFits, Collection, TrainRun
from tmaf_lab.report.document import Table
from tmaf_lab.report.layout import setting_label, train_groups
from tmaf_lab.report.stats import (
    Paired,
    Stat,
    base_activation,
    fmt,
    fmt_interval,
    fmt_ratio,
    fmt_signed,
    fmt_stat,
    paired,
    ratio_record,
    sort_activations,
    stat,
    verdict,
)

REFERENCE = "relu"
RIVAL = "pwl"  # TMAF - pwl isolates TMAF's form: same grid, same parameters, but continuous


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def rival_arm(arm: str, arms) -> str | None:
    """The pwl arm a TMAF arm is compared with: pwl at the same learning rate; for a tuned
    TMAF arm without one, the group's one tuned pwl arm (each at its own tuned rate); else
    None (also for an arm that is not TMAF)."""
    act = base_activation(arm)
    if not is_tmaf_name(act):
        return None
    same = RIVAL + arm[len(act):]
    if same in arms:
        return same
    tuned = [a for a in arms if base_activation(a) == RIVAL and a != RIVAL]
    return tuned[0] if arm != act and len(tuned) == 1 else None


def compare(by_act: dict[str, dict[int, float]], lower_is_better: bool,
            ratios: bool = False) -> list[dict]:
    """by_act: arm -> {seed: value}; an arm is an activation, or an activation with its own
    learning rate (``TrainRun.arm``). One record per arm, ReLU first; a TMAF arm is also
    compared with its :func:`rival_arm` (named in ``vs_pwl["rival"]``). With
    ``ratios`` (errors), ``ratio_vs_relu`` / ``ratio_vs_pwl`` add the geometric-mean ratio
    and its 95 % interval (:func:`.stats.ratio_record`)."""
    records = []
    for act in sort_activations(by_act):
        vals = by_act[act]
        s = stat(vals.values())
        rec = {"activation": act, "n": s.n, "mean": s.mean, "std": s.std,
               "seeds": sorted(vals)}
        rival = rival_arm(act, by_act)
        for key, name in (("vs_relu", REFERENCE if act != REFERENCE else None),
                          ("vs_pwl", rival)):
            other = by_act.get(name) if name else None
            if other is None:
                continue
            p = paired(vals, other)
            rec[key] = {**asdict(p), "seeds": list(p.seeds),
                        "verdict": verdict(p, lower_is_better)}
            if key == "vs_pwl":
                rec[key]["rival"] = name
            if ratios:
                rec[f"ratio_{key}"] = ratio_record(vals, other, lower_is_better)
        records.append(rec)
    return records


def train_records(runs: list[TrainRun]) -> list[dict]:
    """Test accuracy per dataset/model/epochs/options group (higher is better)."""
    out = []
    for (ds, model, epochs, items), by_act in train_groups(runs).items():
        values = {a: {r.seed: r.test_acc for r in rs} for a, rs in by_act.items()}
        group = f"{ds} / {model} / {epochs} epoch(s) / {setting_label(items)}"
        for rec in compare(values, lower_is_better=False):
            out.append({"kind": "train", "group": group, "metric": "test_acc", **rec})
    return out


EARLY = 0.1  # approx: also compare at the history point nearest 10 % of the run
LATE = 0.9  # ... and measure how much each activation still improved over the last 10 %


def history_step(study: ApproxFits, fraction: float) -> int | None:
    """The recorded step nearest ``fraction`` x the last one (e.g. 1000 of 10000), when the
    runs recorded at least 5 points and it is not the last step; else None."""
    steps = sorted({h["step"] for r in study.runs for h in r.get("history") or []
                    if isinstance(h, dict) and _finite(h.get("step"))})
    if len(steps) < 5:
        return None
    best = min(steps, key=lambda s: abs(s - fraction * steps[-1]))
    return int(best) if best != steps[-1] else None


def early_step(study: ApproxFits) -> int | None:
    """:func:`history_step` at EARLY (10 %) of the run."""
    return history_step(study, EARLY)


def _at(run: dict, step: int | None) -> float | None:
    at = [h["rel_l2"] for h in run.get("history") or []
          if isinstance(h, dict) and h.get("step") == step and _finite(h.get("rel_l2"))]
    return float(at[0]) if step is not None and at else None


def last_tenth(runs: list[dict], step: int | None) -> dict | None:
    """Error at the end / error at ``step`` (the LATE point), geometric mean over the runs
    with both (positive) values: near 1 once training has stopped improving."""
    pairs = [(float(r["rel_l2"]), _at(r, step)) for r in runs]
    ratios = [end / late for end, late in pairs if late and end > 0 and late > 0]
    if not ratios:
        return None
    return {"from_step": step, "n": len(ratios), "ratio": statistics.geometric_mean(ratios)}


def approx_records(studies: list[ApproxFits], labels: list[str]) -> list[dict]:
    """Relative L2 error per study (lower is better); diverged runs are left out. With an
    error history, ``early`` holds the same comparison at :func:`early_step` (has the gap to
    ReLU grown, held or vanished since then?)."""
    out = []
    for label, study in zip(labels, studies, strict=True):
        step = early_step(study)
        values: dict[str, dict[int, float]] = {}
        early: dict[str, dict[int, float]] = {}
        late = history_step(study, LATE)
        kept: dict[str, list[dict]] = {}
        for r in study.runs:
            if r.get("diverged") or not _finite(r.get("rel_l2")):
                continue
            kept.setdefault(r["activation"], []).append(r)
            values.setdefault(r["activation"], {})[int(r["seed"])] = float(r["rel_l2"])
            if (at := _at(r, step)) is not None:
                early.setdefault(r["activation"], {})[int(r["seed"])] = at
        early_recs = {e["activation"]: e for e in compare(early, True, ratios=True)}
        for rec in compare(values, lower_is_better=True, ratios=True):
            if rec["activation"] in early_recs:
                rec["early"] = {"step": step, **early_recs[rec["activation"]]}
            tail = last_tenth(kept[rec["activation"]], late)
            if tail is not None:
                rec["last_tenth"] = tail
            out.append({"kind": "approx", "group": label, "metric": "rel_l2", **rec})
    return out


def _paired(rec: dict, key: str = "vs_relu") -> Paired:
    v = rec[key]
    return Paired(v["n"], v["mean"], v["std"], v["low"], v["high"], tuple(v["seeds"]))


def paired_table(records: list[dict], scale: float, unit: str, diff_unit: str,
                 caption: str, key: str = "vs_relu") -> Table:
    """One row per record with a ``key`` comparison (vs_relu, or vs_pwl for TMAF rows)."""
    ref = "ReLU" if key == "vs_relu" else RIVAL
    with_ratio = any(f"ratio_{key}" in rec for rec in records)
    rows = []
    for rec in records:
        if key not in rec:
            continue
        p = _paired(rec, key)
        ratio = rec.get(f"ratio_{key}")
        extra = (fmt_ratio(ratio), ratio["verdict"]) if ratio else ("", "") if with_ratio else ()
        rival = rec[key].get("rival", ref)
        name = rec["activation"] + (f" vs {rival}" if rival != ref else "")
        rows.append((rec["group"], name, str(p.n),
                     fmt_stat(stat_of(rec), scale), fmt_signed(p.mean, scale),
                     fmt_interval(p, scale), rec[key]["verdict"], *extra))
    head = ("study", "activation", "pairs", f"mean ± std {unit}", f"X − {ref} {diff_unit}",
            f"95 % CI {diff_unit}", f"vs {ref}")
    if with_ratio:
        head += (f"X / {ref}, geometric mean [95 % CI]", f"vs {ref} (ratio)")
        caption += (f" The ratio X / {ref} is the geometric mean over the paired seeds, with the "
                    "95 % t interval of the log ratios mapped back; below 1, X fits better. "
                    "Errors span orders of magnitude between seeds and targets, so the ratio "
                    "averages on a log scale; its verdict can differ from the difference's.")
    return Table(head, tuple(rows), caption)


def gap_table(records: list[dict]) -> Table | None:
    """Error ratios to ReLU (and TMAF's to pwl) early in the run and at its end, one row per
    approx record with an ``early`` comparison; None when no record has one."""
    rows = []
    for rec in records:
        early = rec.get("early") or {}
        if "ratio_vs_relu" not in rec or "ratio_vs_relu" not in early:
            continue
        pwl = (fmt_ratio(early["ratio_vs_pwl"]) if "ratio_vs_pwl" in early else "",
               fmt_ratio(rec["ratio_vs_pwl"]) if "ratio_vs_pwl" in rec else "")
        tail = rec.get("last_tenth")
        rows.append((rec["group"], rec["activation"], str(early["step"]),
                     f"{early['ratio_vs_relu']['n']} / {rec['ratio_vs_relu']['n']}",
                     fmt_ratio(early["ratio_vs_relu"]), fmt_ratio(rec["ratio_vs_relu"]),
                     rec["ratio_vs_relu"]["verdict"], *pwl,
                     fmt(tail["ratio"]) if tail else ""))
    if not rows:
        return None
    return Table(("study", "activation", "early step", "pairs (early / end)", "X / ReLU early",
                  "X / ReLU at the end", "vs ReLU at the end", "X / pwl early",
                  "X / pwl at the end", "X: end / 90 %"), tuple(rows),
                 "Error ratios (geometric mean over paired seeds [95 % CI]) at the early step, "
                 "the history point nearest 10 % of each study's run, and at the end: has the "
                 "gap to ReLU grown, held or vanished with training? The pwl columns (TMAF "
                 "rows) separate TMAF's form from learnability. The last column is X's own "
                 "error at the end over its error at 90 % of the run (geometric mean over "
                 "seeds): near 1, training had stopped improving.")


def stat_of(rec: dict) -> Stat:
    return Stat(rec["mean"], rec["std"], rec["n"])


def early_cells(rec: dict) -> tuple[str, str]:
    """(rel L2 at the early step, its X − ReLU with 95 % CI) for an approx detail row."""
    e = rec.get("early")
    if not e:
        return ("", "")
    diff = ""
    if "vs_relu" in e:
        p = _paired(e)
        diff = f"{fmt_signed(p.mean)} {fmt_interval(p)}"
    return fmt_stat(stat_of(e)), diff


def detail_cells(rec: dict, scale: float = 1.0) -> tuple[str, str, str]:
    """(X − ReLU, 95 % CI, verdict) for a detail table row; blanks for ReLU itself."""
    if "vs_relu" not in rec:
        return ("", "", "")
    p = _paired(rec)
    return fmt_signed(p.mean, scale), fmt_interval(p, scale), rec["vs_relu"]["verdict"]


def by_activation(records: list[dict], group: str) -> dict[str, dict]:
    return {r["activation"]: r for r in records if r["group"] == group}


def study_labels(studies: list[ApproxFits]) -> list[str]:
    """The study folder relative to the searched root (e.g. 'default/highfreq'), with the
    target appended when the folder is not named after it; the target alone for a root."""
    labels = []
    for s in studies:
        rel = s.label or s.target
        labels.append(rel if rel.split("/")[-1] == s.target else f"{rel} ({s.target})")
    return labels


def all_records(col: Collection) -> list[dict]:
    """Every record of a collection: approx studies, then train groups."""
    return approx_records(col.approx, study_labels(col.approx)) + train_records(col.train)


def json_safe(obj):
    """NaN/inf -> None, recursively (stats.json stays strict JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
