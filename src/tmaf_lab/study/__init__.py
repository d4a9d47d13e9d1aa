"""A study is data: named parts, each an ordered list of :class:`Run` s.

A :class:`Run` is one invocation of a ``tmaf`` sub-command (``train``, ``approx``, ``bench``,
or the sweep summary ``approx sweep``) into one folder below the study's output folder. It is
finished when every file in ``markers`` exists in that folder (``results.json`` by default),
so rerunning a study skips finished runs; unfinished training runs continue from their
checkpoint (``--resume``). Runs of one ``stream`` run in order; different streams may run side
by side (``tmaf study NAME --streams 2``, one torch thread per run: at most one stream per
core). With ``--minutes M`` no round of seeds starts that would end after M minutes. A run
with ``gate`` set is followed by the competence check of the ReLU runs below ``gate``
(:func:`tmaf_lab.train.recipes.check`): a stream stops when a ReLU baseline misses its bar,
before the other arms of the seed run.

The studies live in :mod:`tmaf_lab.studies`, one small module per study.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Run:
    """One ``tmaf COMMAND OPTIONS --out OUT/folder`` invocation (``sweep``: ``tmaf approx sweep
    OUT/folder``). ``arm``/``seed`` name what it trains (for --arms/--seeds); an approx run covers
    the ``arms`` and ``seeds`` in its options (``--activations``/``--seeds``)."""

    command: str  # "train" | "approx" | "bench" | "sweep"
    folder: str  # relative to the study's output folder
    options: tuple[str, ...] = ()
    stream: str = "A"
    arm: str | None = None
    seed: int | None = None
    arms: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    markers: tuple[str, ...] = ("results.json",)
    gate: str | None = None  # folder (relative) whose ReLU runs must meet their bar after this
    resume: bool = False  # pass --resume (tmaf train continues from checkpoint.pt)
    stdout: str | None = None  # file (relative) that keeps the command's standard output
    dataset: str | None = None  # the data set the run needs installed


Plan = Callable[[Path], list[Run]]


@dataclass(frozen=True)
class Study:
    """``parts`` maps a part name to its runs, or to a function of the output folder that
    returns them (a part planned from earlier results). ``reports`` lists argv lists for
    ``tmaf`` (``{out}`` is replaced by the output folder) that ``tmaf study NAME --report``
    runs in order, skipping one whose input folder (its first argument) does not exist.
    ``tmaf study NAME --dry-run`` appends ``--dry-run`` to every train, approx and bench
    command (toy sizes, seconds per run), and ``dry_train`` to every train command."""

    name: str
    question: str
    out: str  # default output folder
    parts: dict[str, tuple[Run, ...] | Plan]
    reports: tuple[tuple[str, ...], ...] = ()
    default_parts: tuple[str, ...] | None = None  # None: every part, in order
    readme: str | None = None  # the results README (wall times, findings)
    notes: str = ""
    extra: dict = field(default_factory=dict)
    dry_train: tuple[str, ...] = ()

    def runs(self, part: str, out: Path) -> list[Run]:
        """The runs of ``part`` for the output folder ``out``."""
        spec = self.parts[part]
        return list(spec(out) if callable(spec) else spec)


#: What every CPU study run passes after its options: one torch thread per run (a study runs
#: one stream per core), and the CPU, which the committed runs were made on and record in their
#: config.json commands (``tmaf study NAME --print`` prints exactly those commands).
CPU_RUN = ("--threads", "1", "--device", "cpu")


def train_grid(folder: str, datasets: Iterable[str], seeds: Iterable[int],
               arms: Iterable[str | tuple[str, str, tuple[str, ...]]], options: tuple[str, ...],
               gate: bool = False, stream_of: Callable[[str], str] = str,
               common: tuple[str, ...] = CPU_RUN) -> tuple[Run, ...]:
    """Per data set, seed by seed, every arm (``name`` or ``(name, activation, options)``) as
    one ``tmaf train DATASET --activation A --seeds S ... --out folder/DATASET/ARM/seedS
    --resume``, ``common`` last. ``gate``: ReLU (the first arm) is followed by the competence
    check of ``folder/DATASET``; ``folder`` may contain ``{dataset}``."""
    runs = []
    for ds in datasets:
        base = folder.format(dataset=ds) if "{dataset}" in folder else f"{folder}/{ds}"
        for seed in seeds:
            for arm in arms:
                name, act, more = (arm, arm, ()) if isinstance(arm, str) else arm
                runs.append(Run("train", f"{base}/{name}/seed{seed}",
                                (ds, *options, "--activation", act, *more, "--seeds", str(seed),
                                 *common),
                                stream=stream_of(ds), arm=name, seed=seed, resume=True,
                                gate=base if gate and act == "relu" else None, dataset=ds))
    return tuple(runs)


def approx_run(folder: str, options: tuple[str, ...], stream: str = "A",
               markers: tuple[str, ...] = ("results.json",), stdout: str | None = None) -> Run:
    """One ``tmaf approx OPTIONS --out folder`` (a study of several targets writes one
    sub-folder per target and ``summary.csv``: pass that as the marker). Its arms and seeds
    are read from ``--activations``/``--seeds`` in the options (empty: the command's
    defaults)."""
    def value(flag: str) -> tuple[str, ...]:
        return tuple(options[options.index(flag) + 1].split(",")) if flag in options else ()

    return Run("approx", folder, tuple(options), stream=stream, arms=value("--activations"),
               seeds=tuple(map(int, value("--seeds"))), markers=tuple(markers), stdout=stdout)
