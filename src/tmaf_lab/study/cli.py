"""``tmaf study NAME [--part P] [--seeds S,..] [--arms A,..] [--streams N] [--minutes M]
[--out DIR] [--dry-run] [--plan | --print | --report]``: run a named study (resumable), or
report it.

``tmaf study`` alone lists the studies. A study's runs are skipped once finished
(results.json present), unfinished training runs continue from their checkpoint, and a gated
part stops a stream when the ReLU runs so far miss their competence bar. ``--plan`` lists
every run with its state (done, resume, rerun, pending); ``--print`` prints the commands that
would run (``done: FOLDER`` for finished ones); ``--report`` runs the study's reports.
``--dry-run`` runs (or, with ``--plan``/``--print``, lists) the study at toy sizes: every
command gets ``--dry-run`` (train commands also the study's ``dry_train`` options), no
competence gate applies, and the output goes to runs/study-NAME-dry-run unless ``--out`` says
otherwise.
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

from tmaf_lab.cli import STREAM_THREADS_HELP, OneLineErrorParser, add_seed_options, command_main
from tmaf_lab.studies import STUDIES, get
from tmaf_lab.study import run as runner
from tmaf_lab.study.run import execute, run_data_missing, select, shown, status


def build_parser() -> OneLineErrorParser:
    p = OneLineErrorParser(prog="tmaf study", description=__doc__.split("\n\n")[0],
                           allow_abbrev=False)
    p.add_argument("name", nargs="?", help=f"the study: {', '.join(STUDIES)}")
    p.add_argument("--part", action="append", default=None,
                   help="part(s) of the study to run (default: the study's default parts)")
    add_seed_options(p, None)
    p.add_argument("--arms", default="", help="comma list of arms to run (ReLU of a gated "
                   "part always runs: it is the reference and the gate)")
    p.add_argument("--streams", type=int, default=1,
                   help=f"streams side by side (default 1); {STREAM_THREADS_HELP}")
    p.add_argument("--minutes", type=float, default=None,
                   help="wall-clock budget: a stream starts no round of seeds that the slowest "
                        "round so far says would end later, and no run after it")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the "
                   "study's folder under results/; --dry-run: runs/study-NAME-dry-run)")
    p.add_argument("--command-option", action="append", default=[], metavar="OPT",
                   help="append OPT to every train/approx/bench command")
    p.add_argument("--dry-run", action="store_true",
                   help="toy sizes: --dry-run on every command, no competence gate")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--plan", action="store_true", help="list the runs and their state")
    mode.add_argument("--print", action="store_true", help="print the commands that would run")
    mode.add_argument("--report", action="store_true", help="run the study's reports")
    return p


def plan(args) -> tuple[object, Path, list]:
    study = get(args.name)
    parts = args.part or list(study.default_parts or study.parts)
    for part in parts:
        if part not in study.parts:
            raise ValueError(f"--part {part!r}: study {study.name!r} has parts "
                             f"{', '.join(study.parts)}")
    out = args.out or Path(f"runs/study-{study.name}-dry-run" if args.dry_run else study.out)
    arms = tuple(a for a in args.arms.split(",") if a)
    runs, seen = [], set()
    for part in parts:  # a run that two parts list runs once, where it first appears
        for r in study.runs(part, out):
            if r.folder not in seen:
                seen.add(r.folder)
                runs.append(r)
    def options(r) -> tuple[str, ...]:
        dry = ("--dry-run", *(study.dry_train if r.command == "train" else ())) \
            if args.dry_run else ()
        return (*r.options, *dry, *args.command_option)

    runs = [replace(r, options=options(r), gate=None if args.dry_run else r.gate)
            if r.command != "sweep" else r for r in runs]
    return study, out, select(runs, args.seeds or (), arms)


def report(study, out: Path) -> int:
    from tmaf_lab.cli import main as tmaf

    code = 0
    for argv in study.reports:
        argv = [a.replace("{out}", str(out)) for a in argv]
        if not Path(argv[1]).exists():
            print(f"skip: {argv[1]} does not exist")
            continue
        print("tmaf " + shlex.join(argv))
        code = max(code, tmaf(argv))
    return code


def run(args) -> int:
    if not args.name:
        for study in STUDIES.values():
            print(f"{study.name:<12} {study.question} ({study.out}; parts: "
                  f"{', '.join(study.parts)})")
        return 0
    if args.streams < 1:
        raise ValueError(f"--streams must be >= 1, got {args.streams}")
    if args.minutes is not None and not args.minutes > 0:
        raise ValueError(f"--minutes must be > 0, got {args.minutes}")
    study, out, runs = plan(args)
    if args.report:
        return report(study, out)
    if args.plan or args.print:
        for r in runs:
            state = status(r, out)  # a finished run is done whether or not its data are here
            if state != "done" and run_data_missing(r):
                state = "skip (data not installed)"
            if args.print:
                print(f"done: {out / r.folder}" if state == "done" else shown(r, out))
            else:
                print(f"[{state:>7}] stream {r.stream}: {shown(r, out)}")
        return 0
    deadline = None if args.minutes is None else runner.clock() + 60 * args.minutes
    outcome = execute(runs, out, args.streams, deadline)
    counts = {s: sum(v == s for v in outcome.values()) for s in set(outcome.values())}
    print(f"study {study.name}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return 0 if set(outcome.values()) <= {"done", "skipped"} else 1


def main(argv: list[str] | None = None) -> int:
    return command_main(build_parser, run, argv)
