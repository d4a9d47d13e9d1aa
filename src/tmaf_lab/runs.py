"""Run folders and the three files every run writes: the one reader of them.

A run folder is what one ``tmaf train`` or ``tmaf approx`` run writes::

    FOLDER/config.json     at the start: {"config": {...}, "argv": [...], "commit", ...}
    FOLDER/metrics.jsonl   during the run: one JSON object per line (epoch or step)
    FOLDER/results.json    at the end: the finished run's numbers

A run is *finished* when its ``results.json`` exists. :func:`find_runs` lists the finished runs
below a root (nested runs included); :func:`read_results`, :func:`read_config` and
:func:`read_metrics` read one run's files. A missing, unreadable or corrupt file raises
:class:`RunFileError` whose message names the file and what is wrong with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = "results.json"
CONFIG = "config.json"
METRICS = "metrics.jsonl"


class RunFileError(ValueError):
    """A run file is missing, unreadable or not valid JSON; the message names the file."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def read_json(path: str | Path) -> Any:
    """The JSON value in ``path``; :class:`RunFileError` when missing, unreadable or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise RunFileError(path, "no such file")
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise RunFileError(path, f"cannot read ({e.strerror or e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunFileError(path, f"malformed JSON ({e})") from None


def _object(path: Path) -> dict[str, Any]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise RunFileError(path, f"expected a JSON object, got {type(data).__name__}")
    return data


def read_results(folder: str | Path) -> dict[str, Any]:
    """``FOLDER/results.json``, a JSON object (the finished run's numbers)."""
    return _object(Path(folder) / RESULTS)


def read_config(folder: str | Path) -> dict[str, Any]:
    """``FOLDER/config.json`` as saved by :func:`tmaf_lab.runmeta.save_config`: the whole record
    (``config``, ``argv``, ``commit``, ``environment``, ``started``)."""
    return _object(Path(folder) / CONFIG)


def read_metrics(folder: str | Path, on_bad_line: Callable[[int], None] | None = None,
                 valid: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
    """The JSON objects of ``FOLDER/metrics.jsonl``, one per non-blank line, in file order.

    A bad line -- not a JSON object, or one that ``valid`` (if given) rejects -- raises
    :class:`RunFileError` naming the file and the line number, unless ``on_bad_line`` is given:
    then it is called with the line number and the line is dropped (for readers that report
    and go on)."""
    path = Path(folder) / METRICS
    if not path.is_file():
        raise RunFileError(path, "no such file")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise RunFileError(path, f"cannot read ({getattr(e, 'strerror', None) or e})") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict) and (valid is None or valid(row)):
            rows.append(row)
        elif on_bad_line is None:
            raise RunFileError(path, f"line {number} is not a valid metrics row: {line[:80]!r}")
        else:
            on_bad_line(number)
    return rows


def is_finished(folder: str | Path) -> bool:
    """Whether ``folder`` holds a finished run (its ``results.json`` exists)."""
    return (Path(folder) / RESULTS).is_file()


def find_runs(root: str | Path, layout: str = "**", hidden: bool = True) -> list[Path]:
    """The finished run folders below ``root``, sorted by the path of their ``results.json``.

    ``layout`` is a glob of the run folders relative to ``root``: ``"**"`` (default) finds every
    run at any depth, ``root`` itself and runs nested inside other runs included;
    ``"*/seed*"`` finds the ``<arm>/seed<S>`` runs of a study. ``hidden=False`` leaves out runs
    below a folder whose name starts with a dot. A ``root`` that is not a folder finds none.
    """
    root = Path(root)
    files = root.rglob(RESULTS) if layout == "**" else root.glob(f"{layout}/{RESULTS}")
    found = sorted(p for p in files if p.is_file())
    if not hidden:
        found = [p for p in found if not any(s.startswith(".") for s in p.relative_to(root).parts)]
    return [p.parent for p in found]
