"""``tmaf reproduce --budget smoke|cpu|full --out DIR``: rerun the whole study, then report.

The study: function approximation (``tmaf approx``) and image classification
(``tmaf train`` on MNIST, Fashion-MNIST, CIFAR-10) with relu, prelu, diagonal and
tridiagonal activations over several seeds. Each budget is a frozen :class:`Budget`;
the plan is one sub-folder per run:

    DIR/approx/<name>/                    one tmaf approx invocation (all activations, seeds;
                                          one sub-folder per target when it has several)
    DIR/train/<dataset>-<model>/<activation>/seed<S>/   one tmaf train run
    DIR/report/report.md, report.html             tmaf report over DIR
    DIR/reproduce.json                            status of every run (done/failed/skipped)

The ``cpu`` budget is exactly the set of runs committed under results/ (so
``--out results`` finds them all finished). Rerunning the same command skips runs whose
results.json (summary.csv for a multi-target approx study) exists, continues unfinished
training runs from their checkpoint (``tmaf train --resume``), reruns unfinished approx
studies, and keeps going after a failed run (it is recorded; exit code 1 at the end).
Data sets that are not installed are skipped with a note naming ``tmaf data install``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tmaf_lab.cli import (
    DEFAULT_THREADS,
    THREADS_HELP,
    OneLineErrorParser,
    UsageError,
    add_seed_options,
    usage_error,
)
from tmaf_lab.study.run import call, data_missing

ACTIVATIONS = ("relu", "prelu", "diagonal", "tridiagonal")
DATASETS = ("mnist", "fashion-mnist", "cifar10")


@dataclass(frozen=True)
class ApproxJob:
    """One ``tmaf approx`` invocation into DIR/approx/<name> (one sub-folder per target
    when it has several targets)."""

    name: str
    args: tuple[str, ...]  # `tmaf approx` options except --activations, --seeds, --out
    activations: tuple[str, ...] = ACTIVATIONS
    seeds: tuple[int, ...] = (0, 1, 2)


@dataclass(frozen=True)
class TrainJob:
    """``tmaf train`` runs into DIR/train/<dataset>-<model>/<activation>/seed<S>."""

    dataset: str
    model: str
    epochs: int
    args: tuple[str, ...] = ()  # more `tmaf train` options (--width, --subset, ...)
    activations: tuple[str, ...] = ACTIVATIONS
    seeds: tuple[int, ...] = (0, 1, 2)


@dataclass(frozen=True)
class Budget:
    name: str
    description: str
    approx: tuple[ApproxJob, ...]
    train: tuple[TrainJob, ...]
    train_args: tuple[str, ...] = ()  # options for every training run (besides --threads)
    sweeps: tuple[str, ...] = ()  # DIR/approx/<name> folders summarised by approx.sweep

    @property
    def activations(self) -> tuple[str, ...]:
        names = [a for j in (*self.approx, *self.train) for a in j.activations]
        return tuple(dict.fromkeys(names))


SMOKE = Budget(
    "smoke", "minutes on a CPU: tiny models, few steps, small data subsets",
    approx=(ApproxJob("highfreq", ("--target", "highfreq", "--width", "16", "--depth", "2",
                                   "--steps", "150", "--n-train", "512"), seeds=(0, 1)),),
    train=(TrainJob("synthetic", "mlp", 2, ("--width", "64", "--subset", "1024"), seeds=(0, 1)),
           TrainJob("mnist", "mlp", 1, ("--width", "64", "--subset", "2048"), seeds=(0, 1)),
           TrainJob("fashion-mnist", "mlp", 1, ("--width", "64", "--subset", "2048"),
                    seeds=(0, 1)),
           TrainJob("cifar10", "fastnet", 1, ("--width", "8", "--subset", "512"), seeds=(0, 1))),
    train_args=("--test-subset", "512", "--batch-size", "64", "--device", "cpu"),
)

# The runs of the approx and train studies (tmaf_lab.studies): what results/ holds.
_SIN = tuple(a for k in (1, 4, 8, 16, 32) for a in ("--target", f"sin{k}"))
_TMAF3 = ("relu", "diagonal", "tridiagonal")
_PILOT = (("m9r2", (), ("relu", "diagonal")),
          ("m5r2", ("--breakpoints", "5", "--bp-range", "2"), ("diagonal",)),
          ("m17r2", ("--breakpoints", "17", "--bp-range", "2"), ("diagonal",)),
          ("m9r3", ("--breakpoints", "9", "--bp-range", "3"), ("diagonal",)),
          ("m9r1", ("--breakpoints", "9", "--bp-range", "1"), ("diagonal",)),
          ("lr1e-2", ("--tmaf-lr", "1e-2"), ("diagonal",)),
          ("lr3e-4", ("--tmaf-lr", "3e-4"), ("diagonal",)))
CPU = Budget(
    "cpu", "the runs committed under results/ (2 CPU cores; hours in total)",
    approx=(ApproxJob("default", ()),
            ApproxJob("2d", ("--target", "sin2d", "--target", "expsin2d"), seeds=(0, 1)),
            *(ApproxJob(f"sweep/w{w}", (*_SIN, "--width", str(w), "--no-plots"), _TMAF3, (0, 1))
              for w in (16, 32, 64)),
            ApproxJob("same_width", ("--target", "sin8", "--target", "sin16", "--target", "sin32",
                                     "--no-match-params", "--no-plots"), seeds=(0, 1)),
            ApproxJob("long", ("--target", "highfreq", "--steps", "5000"),
                      ("relu", "diagonal"), (0, 1)),
            *(ApproxJob(f"lr/lr{lr}", ("--target", "sin8", "--lr", lr, "--no-plots"),
                        ("relu", "diagonal"), (0, 1)) for lr in ("1e-3", "1e-2", "3e-2")),
            ApproxJob("rivals", ("--target", "smooth", "--target", "sin8", "--no-plots"),
                      ("relu", "gelu", "silu", "tanh", "diagonal"), (0, 1)),
            ApproxJob("init_torch", ("--target", "sin8", "--target", "smooth", "--no-plots",
                                     "--init", "torch"), ("relu", "diagonal"), (0, 1)),
            ApproxJob("chirp_localized", ("--target", "chirp", "--target", "localized"),
                      seeds=(0, 1)),
            *(ApproxJob(f"pilot/{name}", ("--target", "packet", "--steps", "1000", *opts),
                        acts, (0, 1)) for name, opts, acts in _PILOT)),
    sweeps=("sweep",),
    train=(*(TrainJob(ds, "mlp", 1, (), _TMAF3) for ds in ("mnist", "fashion-mnist")),
           TrainJob("cifar10", "fastnet", 3, ("--width", "16", "--subset", "10000"),
                    ("relu", "diagonal"), (0, 1)),
           *(TrainJob(ds, "cnn", 1, ("--width", "16", "--subset", "20000"), _TMAF3)
             for ds in ("mnist", "fashion-mnist"))),
    train_args=("--device", "cpu"),
)

_SEEDS5 = (0, 1, 2, 3, 4)
FULL = Budget(
    "full", "paper scale on one GPU: long approx runs, full data, ResNet-18 on CIFAR-10",
    approx=(ApproxJob("default", ("--steps", "20000", "--width", "64"), seeds=_SEEDS5),
            ApproxJob("2d", ("--target", "sin2d", "--target", "expsin2d", "--steps", "20000",
                             "--width", "64"), seeds=_SEEDS5)),
    train=(*(TrainJob(ds, m, 20, (), seeds=_SEEDS5)
             for ds in ("mnist", "fashion-mnist") for m in ("mlp", "cnn")),
           TrainJob("cifar10", "resnet18", 200,
                    ("--optimizer", "sgd", "--lr", "0.1", "--weight-decay", "5e-4",
                     "--batch-size", "128", "--schedule", "cosine"), seeds=(0, 1, 2))),
    train_args=("--device", "auto"),
)

BUDGETS = {b.name: b for b in (SMOKE, CPU, FULL)}


@dataclass(frozen=True)
class ReproduceConfig:
    budget: str
    out: str
    only: tuple[str, ...] = ()  # parts to run: approx and/or data set names; () = all
    activations: tuple[str, ...] = ()  # () = the budget's
    seeds: tuple[int, ...] | None = None  # seed values; None = the budget's
    threads: int = DEFAULT_THREADS  # torch CPU threads of every run
    dry_run: bool = False


@dataclass(frozen=True)
class Step:
    kind: str  # "approx" | "train" | "sweep"
    name: str  # the sub-folder, relative to DIR
    argv: tuple[str, ...]
    dataset: str | None = None
    marker: str = "results.json"  # the file that exists once the step has finished


def plan(budget: Budget, out: Path, threads: int = DEFAULT_THREADS) -> list[Step]:
    """Every run of ``budget`` as an argv list for its CLI, one folder per run."""
    steps = []
    for job in budget.approx:
        name = f"approx/{job.name}"
        multi = job.args.count("--target") != 1  # no --target: the default targets
        steps.append(Step("approx", name, (*job.args, "--activations", ",".join(job.activations),
                                           "--seeds", ",".join(map(str, job.seeds)),
                                           "--threads", str(threads), "--out", str(out / name)),
                          marker="summary.csv" if multi else "results.json"))
    for sweep in budget.sweeps:
        name = f"approx/{sweep}"
        steps.append(Step("sweep", name, (str(out / name),), marker="sweep.md"))
    for job in budget.train:
        for act in job.activations:
            for seed in job.seeds:
                name = f"train/{job.dataset}-{job.model}/{act}/seed{seed}"
                steps.append(Step("train", name, (
                    job.dataset, "--model", job.model, "--activation", act,
                    "--epochs", str(job.epochs), "--seeds", str(seed), "--threads", str(threads),
                    *budget.train_args,
                    *job.args, "--out", str(out / name), "--resume"), job.dataset))
    return steps


def status_of(step: Step, out: Path) -> str:
    folder = out / step.name
    if step.kind != "sweep" and (folder / step.marker).is_file():
        return "done"
    if step.kind == "train" and (folder / "checkpoint.pt").is_file():
        return "resume"
    return "pending" if not folder.exists() else "rerun"


def run_step(step: Step) -> tuple[int, str]:
    """Call the sub-command in this process; (exit code, error text incl. traceback)."""
    return call(step.kind, step.argv)


def parse_args(argv: list[str]) -> ReproduceConfig:
    p = OneLineErrorParser(prog="tmaf reproduce", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
                epilog="budgets:\n" + "\n".join(f"  {b.name:<6} {b.description}"
                                                 for b in BUDGETS.values())
                + "\n  gpu    CIFAR-10 (airbench, 5 activations x 10 seeds) + the CUDA benchmark "
                  "in about 8 min on one GPU; its own options: tmaf reproduce --budget gpu "
                  "--help (there --dry-run runs the study at toy sizes on the CPU)")
    p.add_argument("--budget", required=True, choices=(*BUDGETS, "gpu"))
    p.add_argument("--out", required=True, help="study folder (one sub-folder per run)")
    p.add_argument("--only", default="", help="comma-separated parts: approx, synthetic, "
                   f"{', '.join(DATASETS)} (default: all of the budget)")
    p.add_argument("--activations", default="",
                   help=f"subset of the budget's activations (default: {','.join(ACTIVATIONS)})")
    add_seed_options(p, None)
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS, help=THREADS_HELP)
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan and exit (--budget gpu: run it at toy sizes)")
    a = p.parse_args(argv)
    only = tuple(s for s in a.only.split(",") if s)
    bad = [s for s in only if s not in ("approx", "synthetic", *DATASETS)]
    if bad:
        p.error(f"--only: unknown part(s) {bad}; expected approx, synthetic, {', '.join(DATASETS)}")
    acts = tuple(s for s in a.activations.split(",") if s)
    if a.threads < 0:
        p.error(f"--threads must be >= 0, got {a.threads}")
    return ReproduceConfig(a.budget, a.out, only, acts, a.seeds, a.threads, a.dry_run)


def select(cfg: ReproduceConfig) -> Budget:
    """The budget narrowed by --only / --activations / --seeds."""
    b = BUDGETS[cfg.budget]
    if cfg.only:
        keep = "approx" in cfg.only
        b = replace(b, approx=b.approx if keep else (), sweeps=b.sweeps if keep else (),
                    train=tuple(j for j in b.train if j.dataset in cfg.only))
    if cfg.activations:
        bad = [a for a in cfg.activations if a not in b.activations]
        if bad:
            raise ValueError(f"--activations: {bad} not in the {b.name} budget's "
                             f"{list(b.activations)}")

        def narrow(job):
            return replace(job, activations=tuple(a for a in job.activations
                                                  if a in cfg.activations))

        b = replace(b, approx=tuple(j for j in map(narrow, b.approx) if j.activations),
                    train=tuple(j for j in map(narrow, b.train) if j.activations))
    if cfg.seeds:
        b = replace(b, approx=tuple(replace(j, seeds=cfg.seeds) for j in b.approx),
                    train=tuple(replace(j, seeds=cfg.seeds) for j in b.train))
    return b


def print_plan(budget: Budget, steps: list[Step], out: Path) -> None:
    print(f"tmaf reproduce --budget {budget.name}: {budget.description}")
    print(f"{len(steps)} run(s) -> {out}")
    for step in steps:
        missing = data_missing(step.dataset)
        state = "skip (data not installed)" if missing else status_of(step, out)
        cli = {"approx": "tmaf approx", "train": "tmaf train",
               "sweep": "python -m tmaf_lab.approx.sweep"}[step.kind]
        print(f"  [{state:>7}] {cli} {' '.join(step.argv)}")
    print(f"  then: tmaf report {out / 'approx'} {out / 'train'} --out {out / 'report'}")


EXIT_INTERRUPTED = 130  # what tmaf train returns after Ctrl-C (checkpoint saved)


class Interrupted(Exception):
    """Ctrl-C during a run: stop the study; rerunning the command resumes it."""


def execute(budget: Budget, steps: list[Step], out: Path) -> list[dict]:
    from tmaf_lab.files import write_json

    records: list[dict] = []
    notes: dict[str, str] = {}
    for i, step in enumerate(steps, 1):
        rec = {"run": step.name, "kind": step.kind, "argv": list(step.argv)}
        missing = data_missing(step.dataset)
        state = status_of(step, out)
        if missing:
            rec.update(status="skipped", reason=missing)
            if step.dataset not in notes:
                notes[step.dataset] = missing
                print(f"[reproduce] skipping {step.dataset}: {missing}", file=sys.stderr)
        elif state == "done":
            rec.update(status="done", reason="results.json exists (kept)")
        else:
            print(f"[reproduce] {i}/{len(steps)} {step.name} ({state})", file=sys.stderr)
            t0 = time.perf_counter()
            try:
                code, err = run_step(step)
            except KeyboardInterrupt:
                code, err = EXIT_INTERRUPTED, ""
            if code == EXIT_INTERRUPTED:  # Ctrl-C: the sub-command saved what it could
                rec.update(status="interrupted")
                records.append(rec)
                write_json(out / "reproduce.json", {"budget": asdict(budget), "runs": records})
                raise Interrupted(step.name)
            ok = code == 0 and (out / step.name / step.marker).is_file()
            rec.update(status="done" if ok else "failed", exit_code=code,
                       seconds=round(time.perf_counter() - t0, 1))
            if err:
                rec["error"] = err
            if not ok:
                last = err.splitlines()[-1] if err else "see the messages above"
                print(f"[reproduce] FAILED {step.name} (exit {code}): {last}", file=sys.stderr)
        records.append(rec)
        write_json(out / "reproduce.json", {"budget": asdict(budget), "runs": records})
    return records


def _gpu_budget(argv: list[str]) -> list[str] | None:
    """The options after removing ``--budget gpu`` (or ``--budget=gpu``); None for other budgets."""
    for i, a in enumerate(argv):
        if a == "--budget=gpu":
            return argv[:i] + argv[i + 1:]
        if a == "--budget" and argv[i + 1:i + 2] == ["gpu"]:
            return argv[:i] + argv[i + 2:]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest = _gpu_budget(argv)
    if rest is not None:  # the GPU study has its own options and its own --dry-run
        from tmaf_lab.gpu_study import main as gpu_study

        return gpu_study(rest)
    try:
        cfg = parse_args(argv)
        budget = select(cfg)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except (UsageError, ValueError) as e:
        return usage_error(e)
    out = Path(cfg.out)
    steps = plan(budget, out, cfg.threads)
    if cfg.dry_run:
        print_plan(budget, steps, out)
        return 0
    from tmaf_lab.runmeta import OutputFolderError, check_writable, save_config

    try:
        check_writable(out)
    except OutputFolderError as e:
        return usage_error(e)
    save_config(out, cfg, ["tmaf", "reproduce", *argv])
    try:
        records = execute(budget, steps, out)
    except Interrupted as e:
        print(f"[reproduce] interrupted during {e}; rerun the same command to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    from tmaf_lab.report.cli import main as report

    parts = [str(out / p) for p in ("approx", "train") if (out / p).is_dir()]
    code = report([*parts, "--out", str(out / "report")]) if parts else 0
    counts = {s: sum(r["status"] == s for r in records) for s in ("done", "failed", "skipped")}
    print(f"[reproduce] {counts['done']} done, {counts['failed']} failed, "
          f"{counts['skipped']} skipped; status in {out / 'reproduce.json'}; "
          f"report in {out / 'report'}", file=sys.stderr)
    return 1 if counts["failed"] or code else 0


if __name__ == "__main__":
    raise SystemExit(main())
