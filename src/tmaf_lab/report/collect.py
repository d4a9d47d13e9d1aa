"""Find run folders and read their ``results.json`` into typed records.

Two schemas are recognised (see ``tmaf approx`` and ``tmaf train``):

- approx: ``{"target": str, "runs": [{"activation", "seed", "params", "rel_l2", "rmse",
  "max_err", "train_seconds", "history"?}, ...], "summary": {...}}`` -- one file per study,
  many runs inside;
- train: ``{"dataset", "model", "activation", "epochs", "seed", "params", "test_acc",
  "test_loss", "train_seconds"}`` -- one file per run, with ``metrics.jsonl`` (one JSON
  object per epoch) and ``config.json`` beside it.

Anything else -- unreadable or malformed JSON, missing or non-numeric fields, a run
folder without ``results.json`` -- becomes a :class:`Skipped` entry with a reason.
Nothing in this module raises on bad run data.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tmaf_lab import runs
from tmaf_lab.report.stats import arm_name

APPROX_REQUIRED = ("activation", "seed", "rel_l2")
APPROX_NUMERIC = ("params", "rel_l2", "rmse", "max_err", "train_seconds")
TRAIN_REQUIRED = ("dataset", "model", "activation", "epochs", "seed", "params", "test_acc",
                  "test_loss", "train_seconds")
IMAGE_SUFFIXES = (".png",)
CHECKPOINT_SUFFIXES = (".pt", ".pth")
RUN_MARKERS = (runs.CONFIG, runs.METRICS)  # a folder with one of these is a run folder
OWN_OUTPUTS = ("report.md", "reproduce.json")  # folders written by report / reproduce


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass(frozen=True)
class ApproxFits:
    """One ``tmaf approx`` results.json: one target, several activations x seeds."""

    folder: Path
    target: str
    runs: tuple[dict[str, Any], ...]
    config: dict[str, Any] = field(default_factory=dict)
    images: tuple[Path, ...] = ()
    expression: str = ""
    label: str = ""  # folder relative to the searched root ("" when it is the root)


@dataclass(frozen=True)
class TrainRun:
    """One ``tmaf train`` run folder (one dataset, model, activation, seed)."""

    folder: Path
    dataset: str
    model: str
    activation: str
    epochs: int
    seed: int
    params: int
    test_acc: float
    test_loss: float
    train_seconds: float
    metrics: tuple[dict[str, Any], ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    checkpoints: tuple[Path, ...] = ()
    images: tuple[Path, ...] = ()

    @property
    def arm(self) -> str:
        """What a study compares: :func:`arm_name` of this run."""
        return arm_name(self.activation, self.config.get("config"))


@dataclass
class Collection:
    approx: list[ApproxFits] = field(default_factory=list)
    train: list[TrainRun] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)
    other_images: list[Path] = field(default_factory=list)  # PNGs outside any run folder
    reruns: list[TrainRun] = field(default_factory=list)  # --checkpoints: figures only


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _read_json(path: Path) -> tuple[Any, str | None]:
    """(the JSON value, None), or (None, what is wrong with the file)."""
    try:
        return runs.read_json(path), None
    except runs.RunFileError as e:
        return None, e.problem


def _read_config(folder: Path) -> dict[str, Any]:
    """``config.json`` as saved by runmeta.save_config; {} when absent or unreadable."""
    try:
        return runs.read_config(folder)
    except runs.RunFileError:
        return {}


def _files(folder: Path, suffixes: tuple[str, ...]) -> tuple[Path, ...]:
    """Files with these suffixes in ``folder`` and its sub-folders that are not runs themselves."""
    found = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.suffix.lower() not in suffixes or p.name.startswith("."):
            continue
        parents = p.relative_to(folder).parents
        if any(runs.is_finished(folder / q) for q in parents if str(q) != "."):
            continue  # belongs to a nested run
        found.append(p)
    return tuple(found)


def read_metrics(folder: Path, skipped: list[Skipped]) -> tuple[dict[str, Any], ...]:
    """Valid rows (objects with a numeric epoch) of ``folder``'s metrics.jsonl; a bad line is
    reported once per file and dropped; no file: no rows."""
    path = folder / runs.METRICS
    if not path.exists():
        return ()
    bad: list[int] = []
    try:
        rows = runs.read_metrics(folder, bad.append, valid=lambda r: _is_number(r.get("epoch")))
    except runs.RunFileError as e:
        skipped.append(Skipped(str(path), f"cannot read metrics ({e.problem})"))
        return ()
    if bad:
        skipped.append(Skipped(str(path), f"dropped malformed metrics line(s) {bad[:10]}"))
    return tuple(rows)


def _parse_approx(path: Path, data: dict, skipped: list[Skipped]) -> ApproxFits | None:
    runs = []
    for i, run in enumerate(data["runs"]):
        where = f"{path} runs[{i}]"
        if not isinstance(run, dict):
            skipped.append(Skipped(where, f"expected an object, got {type(run).__name__}"))
            continue
        missing = [k for k in APPROX_REQUIRED if k not in run]
        # a diverged run (approx flags it) keeps its NaN errors: it is counted, not dropped
        ok = _is_real if run.get("diverged") is True else _is_number
        bad = [k for k in APPROX_NUMERIC if k in run and not ok(run[k])]
        if missing or bad:
            why = (f"missing {missing}" if missing else "") + (" " if missing and bad else "")
            why += f"non-finite/non-numeric {bad}" if bad else ""
            skipped.append(Skipped(where, why))
            continue
        runs.append(run)
    if not runs:
        skipped.append(Skipped(str(path), "approx results with no usable runs"))
        return None
    folder = path.parent
    return ApproxFits(folder, str(data["target"]), tuple(runs), _read_config(folder),
                       _files(folder, IMAGE_SUFFIXES), str(data.get("expression", "")))


def _parse_train(path: Path, data: dict, skipped: list[Skipped]) -> TrainRun | None:
    missing = [k for k in TRAIN_REQUIRED if k not in data]
    if missing:
        skipped.append(Skipped(str(path), f"train results missing {missing}"))
        return None
    bad = [k for k in ("epochs", "seed", "params", "test_acc", "test_loss", "train_seconds")
           if not _is_number(data[k])]
    if bad:
        skipped.append(Skipped(str(path), f"non-finite/non-numeric field(s) {bad}"))
        return None
    folder = path.parent
    return TrainRun(
        folder, str(data["dataset"]), str(data["model"]), str(data["activation"]),
        int(data["epochs"]), int(data["seed"]), int(data["params"]), float(data["test_acc"]),
        float(data["test_loss"]), float(data["train_seconds"]),
        read_metrics(folder, skipped), _read_config(folder),
        _files(folder, CHECKPOINT_SUFFIXES), _files(folder, IMAGE_SUFFIXES))


def _classify(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("runs"), list) and "target" in data:
        return "approx"
    if "dataset" in data and "test_acc" in data:
        return "train"
    return None


def read_results(path: Path, out: Collection, root: Path | None = None) -> None:
    """Parse one results.json into ``out`` (a record or a skipped entry)."""
    data, err = _read_json(path)
    if err is not None:
        out.skipped.append(Skipped(str(path), err))
        return
    kind = _classify(data)
    if kind == "approx":
        rec = _parse_approx(path, data, out.skipped)
        if rec is not None:
            rel = path.parent.relative_to(root).as_posix() if root is not None else ""
            out.approx.append(replace(rec, label="" if rel == "." else rel))
    elif kind == "train":
        rec = _parse_train(path, data, out.skipped)
        if rec is not None:
            out.train.append(rec)
    else:
        keys = sorted(data)[:8] if isinstance(data, dict) else type(data).__name__
        out.skipped.append(Skipped(str(path), f"unrecognised results schema (keys: {keys})"))


def _incomplete_runs(root: Path, with_results: set[Path]) -> list[Path]:
    """Folders that look like runs (config.json / metrics.jsonl) but hold no results.json."""
    found = []
    for marker in RUN_MARKERS:
        for p in root.rglob(marker):
            d = p.parent
            key = d.resolve()
            if key in with_results or any(key in r.parents for r in with_results):
                continue
            if any((d / name).exists() for name in OWN_OUTPUTS):
                continue  # a report or reproduce folder, not a run
            if not any(part.startswith(".") for part in d.relative_to(root).parts):
                found.append(d)
    return sorted(set(found))


def natural_key(path: Path) -> list:
    """Sort 'sin4' before 'sin16' and 'w16' before 'w32'."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.as_posix())]


def collect(paths: list[str | Path]) -> Collection:
    """Read every results.json under ``paths`` (folders searched recursively, or files)."""
    out = Collection()
    seen: set[Path] = set()
    for raw in paths:
        root = Path(raw)
        if root.is_file():
            files = [root]
        elif root.is_dir():
            files = sorted((d / runs.RESULTS for d in runs.find_runs(root, hidden=False)),
                           key=natural_key)
        else:
            out.skipped.append(Skipped(str(root), "no such file or folder"))
            continue
        out.sources.append(root)
        for f in files:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                read_results(f, out, root if root.is_dir() else None)
        if root.is_dir():
            dirs = {f.parent.resolve() for f in files}
            for d in _incomplete_runs(root, dirs):
                out.skipped.append(Skipped(str(d), "run folder without results.json "
                                           "(unfinished or failed run)"))
            out.other_images += _loose_images(root, dirs)
    return out


def _loose_images(root: Path, run_dirs: set[Path]) -> list[Path]:
    """PNGs under ``root`` that belong to no run folder and no report (e.g. a sweep plot)."""
    found = []
    for p in sorted(root.rglob("*.png")):
        parents = [q.resolve() for q in p.parents]
        if any(q in run_dirs for q in parents):
            continue
        if any((q / name).exists() for q in parents for name in OWN_OUTPUTS):
            continue
        if not any(part.startswith(".") for part in p.relative_to(root).parts):
            found.append(p)
    return found
