"""Run a study's plan: status of each run, the command it is, streams side by side, the gate.

Each run is a child process (``python -m tmaf_lab COMMAND ...`` under ``nice -n 5``; CPU
runs pass ``--threads 1``), so a failed or killed run never takes the study down and N streams
use N cores, one run per core. Runs of one stream go in order; with ``--streams N`` the
streams are dealt to N workers round-robin. With a deadline, a stream starts no round of
seeds (its runs of one seed) that the slowest round so far says would end after it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from tmaf_lab.study import Run

clock = time.monotonic  # the deadline's clock (tests replace it)


def status(run: Run, out: Path) -> str:
    """``done`` (every marker exists), ``resume`` (a training checkpoint exists), ``rerun``
    (the folder exists: an unfinished run starts again) or ``pending``."""
    folder = out / run.folder
    if all((folder / m).is_file() for m in run.markers):
        return "done"
    if run.command == "train" and (folder / "checkpoint.pt").is_file():
        return "resume"
    return "rerun" if folder.exists() else "pending"


def command(run: Run, out: Path) -> list[str]:
    """The run's command line after ``tmaf``."""
    folder = str(out / run.folder)
    if run.command == "sweep":
        return ["approx", "sweep", folder]
    return [run.command, *run.options, "--out", folder, *(["--resume"] if run.resume else [])]


def shown(run: Run, out: Path) -> str:
    return " ".join(["tmaf", *command(run, out)])


def data_missing(dataset: str | None) -> str | None:
    """Why ``dataset`` cannot be used (not installed), or None when it can."""
    if dataset in (None, "synthetic"):
        return None
    from tmaf_lab.data import TEXT_NAME, DataError
    from tmaf_lab.data.cache import FILES, read_manifest
    from tmaf_lab.data.text import SPLITS

    try:
        read_manifest(dataset, files=SPLITS if dataset == TEXT_NAME else FILES)
    except DataError as e:
        return str(e)
    return None


def run_data_missing(run: Run) -> str | None:
    """Why the run's data set cannot be used; None also for a ``--dry-run`` command (it falls
    back to synthetic images)."""
    return None if "--dry-run" in run.options else data_missing(run.dataset)


def _narrow(run: Run, flag: str, have: tuple, keep: tuple) -> Run | None:
    """An approx run with its --activations/--seeds value cut down to ``keep``."""
    if not keep or not have:
        return run
    left = [str(x) for x in have if str(x) in map(str, keep)]
    if not left:
        return None
    opts = list(run.options)
    opts[opts.index(flag) + 1] = ",".join(left)
    return replace(run, options=tuple(opts))


def select(runs: list[Run], seeds: tuple[int, ...] = (), arms: tuple[str, ...] = ()
           ) -> list[Run]:
    """Runs of the given seeds and arms (empty: all). A gated ReLU run always stays: it is
    the reference and the gate of its seed."""
    kept = []
    for run in runs:
        if run.command == "approx":
            run = _narrow(run, "--activations", run.arms, arms)
            run = run and _narrow(run, "--seeds", run.seeds, seeds)
            if run:
                kept.append(run)
            continue
        if seeds and run.seed is not None and run.seed not in seeds:
            continue
        if arms and run.arm is not None and run.arm not in arms and not run.gate:
            continue
        kept.append(run)
    return kept


def gate_failures(run: Run, out: Path) -> list[str]:
    """The competence lines (``BELOW ...``) of the ReLU runs below the run's gate folder."""
    from tmaf_lab.train.recipes import check

    if not run.gate or not (out / run.gate).is_dir():
        return []
    return [line for line in check(out / run.gate) if line.startswith("BELOW")]


_print_lock = threading.Lock()


def log(message: str) -> None:
    with _print_lock:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def launch(run: Run, out: Path) -> int:
    """Run one command as a child process; its exit code. A run given ``--threads 1`` also
    gets OMP_NUM_THREADS=1, so its libraries start no thread pools of their own."""
    argv = [sys.executable, "-m", "tmaf_lab", *command(run, out)]
    opts = run.options
    one_thread = any(a == "--threads" and b == "1" for a, b in zip(opts, opts[1:], strict=False))
    env = {**os.environ, **({"OMP_NUM_THREADS": "1"} if one_thread else {})}
    sink = None
    if run.stdout:
        (out / run.stdout).parent.mkdir(parents=True, exist_ok=True)
        sink = open(out / run.stdout, "w")
    try:
        return subprocess.run(argv, env=env, stdout=sink, preexec_fn=lambda: os.nice(5)
                              ).returncode
    finally:
        if sink:
            sink.close()


class Rounds:
    """The deadline of a stream: a round is its consecutive runs of one seed; no round starts
    when the slowest round so far would end after ``deadline`` (a :data:`clock` time,
    None: no deadline), and no run starts after it."""

    def __init__(self, deadline: float | None):
        self.deadline, self.seed, self.started, self.slowest = deadline, None, None, 0.0

    def may_start(self, run: Run) -> str | None:
        """None when ``run`` may start, else why not."""
        if self.deadline is None:
            return None
        now = clock()
        if run.seed != self.seed:  # a new round
            if self.started is not None:
                self.slowest = max(self.slowest, now - self.started)
            self.seed, self.started = run.seed, now
            if self.slowest and now + self.slowest > self.deadline:
                return (f"a round of seeds takes about {self.slowest:.0f} s and "
                        f"{max(self.deadline - now, 0):.0f} s are left")
        return "the deadline passed" if now > self.deadline else None


def run_stream(runs: list[Run], out: Path, deadline: float | None = None) -> dict[str, str]:
    """Every run in order; a stream stops at a failed run, a missed competence bar or the
    deadline (its later runs are ``not run``). Returns folder -> done | failed | skipped |
    below-bar | not run."""
    result: dict[str, str] = {}
    stopped: set[str] = set()
    rounds = Rounds(deadline)
    for run in runs:
        missing = run_data_missing(run)
        late = None if run.stream in stopped or missing or status(run, out) == "done" \
            else rounds.may_start(run)
        if late:
            log(f"stream {run.stream} stops before {run.folder}: {late} (rerun the same "
                "command to continue)")
            stopped.add(run.stream)
        if run.stream in stopped or missing:
            if missing:
                log(f"skip {run.folder}: {missing}")
            result[run.folder] = "skipped" if missing else "not run"
            continue
        if status(run, out) == "done":
            log(f"done: {out / run.folder}")
        else:
            log(shown(run, out))
            code = launch(run, out)
            if code != 0 or status(run, out) != "done":
                log(f"FAILED {run.folder} (exit {code}); stream {run.stream} stops")
                result[run.folder] = "failed"
                stopped.add(run.stream)
                continue
        result[run.folder] = "done"
        below = gate_failures(run, out)
        if below:
            log(f"ReLU misses its competence bar (fix the recipe); stream {run.stream} "
                "stops: " + "; ".join(below))
            result[run.folder] = "below-bar"
            stopped.add(run.stream)
    return result


def execute(runs: list[Run], out: Path, streams: int = 1,
            deadline: float | None = None) -> dict[str, str]:
    """All runs, their streams dealt to ``streams`` workers; folder -> outcome. ``deadline``
    (a :data:`clock` time): see :class:`Rounds`."""
    order = list(dict.fromkeys(r.stream for r in runs))
    workers = [[r for r in runs if order.index(r.stream) % streams == i]
               for i in range(min(streams, len(order)) or 1)]
    outcome: dict[str, str] = {}
    with ThreadPoolExecutor(len(workers)) as pool:
        for part in pool.map(lambda rs: run_stream(rs, out, deadline), workers):
            outcome.update(part)
    return outcome
