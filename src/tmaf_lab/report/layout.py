"""Shared pieces of the report layout: options, paths as shown, run grouping, run images.

Used by :mod:`.build` (tables, sections) and :mod:`.learned` (learned-activation figures);
kept apart so neither imports the other's module.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from tmaf_lab.report.collect import TrainRun


@dataclass(frozen=True)
class Options:
    out: Path
    max_images_per_run: int = 6
    max_activation_figures: int = 12
    activation_channels: int = 4
    copy_images: bool = False


def display(path: Path) -> str:
    """A path relative to the working directory when possible (stable in committed reports)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "x"


def group_by(items, key) -> dict:
    groups: dict = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    return groups


def display_rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def run_images(paths, opt: Options, prefix: str) -> list[tuple[Path, str]]:
    """PNGs saved by a run, as (source, path for the report). By default the Markdown links
    the run's own file (relative path, nothing duplicated); with ``copy_images`` the files
    are copied into DIR/figures first. The HTML embeds them either way."""
    out = []
    for p in list(paths)[:opt.max_images_per_run]:
        if not opt.copy_images:
            out.append((p, Path(os.path.relpath(p.resolve(), opt.out.resolve())).as_posix()))
            continue
        target = opt.out / "figures" / f"{prefix}-{slug(p.stem)}.png"
        try:
            shutil.copyfile(p, target)
        except OSError:
            continue
        out.append((p, display_rel(target, opt.out)))
    return out


SETTING_KEYS = ("recipe", "width", "subset", "test_subset", "batch_size", "lr", "optimizer",
                "schedule", "warmup", "weight_decay", "augment", "label_smoothing")


def setting(run: TrainRun) -> tuple[tuple[str, object], ...]:
    """The config.json options that make runs of one dataset/model/epochs incomparable.
    ``tmaf_lr`` is not one of them: it belongs to the activation's arm (``TrainRun.arm``),
    so a tuned learning rate is compared with ReLU in the same study."""
    cfg = run.config.get("config", {})
    return tuple((k, cfg.get(k)) for k in SETTING_KEYS if k in cfg)


def setting_label(items: tuple[tuple[str, object], ...]) -> str:
    """Options that differ from tmaf train's defaults, e.g. 'width=16, subset=20000'; with a
    recipe, 'recipe=NAME' and the options that differ from the recipe."""
    try:
        from tmaf_lab.train.config import TrainConfig
        from tmaf_lab.train.recipes import RECIPES

        defaults = {k: getattr(TrainConfig(), k) for k, _ in items if hasattr(TrainConfig, k)}
        defaults.update(RECIPES.get(dict(items).get("recipe"), {}))
    except ImportError:
        defaults = {}
    shown = [f"{k}={v}" for k, v in items if k not in defaults or defaults[k] != v]
    return ", ".join(shown) or "defaults"


def train_groups(runs: list[TrainRun]) -> dict[tuple, dict[str, list[TrainRun]]]:
    """(dataset, model, epochs, setting) -> arm -> runs."""
    groups = group_by(runs, lambda r: (r.dataset, r.model, r.epochs, setting(r)))
    return {k: group_by(v, lambda r: r.arm)
            for k, v in sorted(groups.items(), key=lambda kv: str(kv[0]))}
