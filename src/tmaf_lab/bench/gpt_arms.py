"""The GPT training step of every arm of the gpt-baselines study over ReLU²'s (and GELU's).

    tmaf bench gpt-arms --out DIR [--repeats N] [--clock thread] [--dry-run]

Builds the ``cpu-gpt-unit`` GPT (4 blocks x 4 heads x 128 wide, context 64, vocabulary 85,
batch 32, AdamW) once per arm of :data:`tmaf_lab.studies.gpt_baselines.ARMS` with the same
seed (:class:`tmaf_lab.bench.train_step.TrainStepTimer`; TMAF arms on the ``native`` backend,
checked against the ``reference`` backend on loss and every gradient first), then times one
training step (forward, cross-entropy, backward, optimiser step) of every arm interleaved,
``repeats`` rounds at one thread, the order rotating each round. Each arm's ratio to ReLU² and
to GELU is the median over rounds of the per-round ratio (paired). ``--clock thread`` times
the thread's CPU time instead of wall time, which leaves out the time other processes take on
a shared machine. Writes DIR/config.json (command, commit, environment), DIR/timing.json
(every sample) and DIR/summary.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from tmaf_lab.cli import OneLineErrorParser, command_main
from tmaf_lab.files import atomic_write_text, write_json
from tmaf_lab.mdtable import markdown_table

REFERENCES = ("relu2", "gelu")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(prog="tmaf bench gpt-arms",
                           description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--repeats", type=int, default=15, help="timed rounds (default %(default)s)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps of each arm first")
    p.add_argument("--clock", default="wall", choices=("wall", "thread"),
                   help="wall time, or the timing thread's CPU time (default %(default)s)")
    p.add_argument("--dry-run", action="store_true",
                   help="width 16, batch 2, 2 rounds (seconds; for tests)")
    return p


def measure(repeats: int, warmup: int, dry_run: bool = False, log=print) -> list[dict]:
    """One row per arm: median step (ms), quartiles, paired ratios to ReLU² and GELU, and
    the fast backend's largest relative error against the reference."""
    from tmaf_lab.bench.timing import paired_ratio, synchronizer, time_interleaved
    from tmaf_lab.bench.train_step import StepSpec, TrainStepTimer
    from tmaf_lab.models import is_learned_name
    from tmaf_lab.studies.gpt_baselines import ARMS

    device = torch.device("cpu")
    batch, width = (2, 16) if dry_run else (32, None)
    timers, errors = {}, {}
    for arm in ARMS:
        spec = StepSpec(arm, "native" if is_learned_name(arm) else None)
        timers[arm] = TrainStepTimer("gpt", spec, batch, device, seed=0, width=width)
        timers[arm].step()
        errors[arm] = timers[arm].check()
        log(f"ready {arm}: check err {errors[arm]:.1e}")
    timings = time_interleaved({a: t.step for a, t in timers.items()}, repeats=repeats,
                               warmup=warmup, sync=synchronizer(device), min_sample_s=0.0)
    return [{"activation": arm, "batch": batch, "threads": torch.get_num_threads(),
             "median_ms": 1e3 * tm.median, "q25_ms": 1e3 * tm.quantile(0.25),
             "q75_ms": 1e3 * tm.quantile(0.75), "repeats": len(tm.samples),
             "samples_ms": [1e3 * s for s in tm.samples],
             **{f"ratio_vs_{r}": paired_ratio(tm, timings[r]) for r in REFERENCES},
             "check_max_rel_err": errors[arm]} for arm, tm in timings.items()]


def summary(rows: list[dict], env: dict, command: str, clock: str) -> str:
    head = (f"`{command}`; CPU {env['cpu_model']}, {env['native_kernels']}; torch "
            f"{env['torch']}; clock {clock}; {rows[0]['repeats']} interleaved rounds at "
            f"{rows[0]['threads']} thread(s), batch {rows[0]['batch']}. Ratios are medians of "
            "per-round ratios (paired).\n\n")
    table = markdown_table(
        ["activation", "median step", "q25-q75", "vs ReLU²", "vs GELU"],
        [(r["activation"], f"{r['median_ms']:.1f} ms", f"{r['q25_ms']:.1f}-{r['q75_ms']:.1f}",
          f"{r['ratio_vs_relu2']:.2f}x", f"{r['ratio_vs_gelu']:.2f}x") for r in rows],
        align="lrrrr")
    return head + table + "\n"


def run(args) -> int:
    from tmaf_lab.bench.timing import set_clock
    from tmaf_lab.runmeta import check_writable, environment, git_commit

    if args.repeats < 1 or args.warmup < 0:
        raise ValueError(f"--repeats must be >= 1 and --warmup >= 0, got {args.repeats}, "
                         f"{args.warmup}")
    out = check_writable(args.out)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    set_clock(args.clock)
    repeats, warmup = (2, 1) if args.dry_run else (args.repeats, args.warmup)
    try:
        rows = measure(repeats, warmup, args.dry_run)
    finally:
        set_clock("wall")
    import tmaf

    env = {**environment("cpu"), "native_kernels": tmaf.native_status()}
    command = (f"tmaf bench gpt-arms --out {args.out} --clock {args.clock}"
               + (" --dry-run" if args.dry_run else f" --repeats {repeats} --warmup {warmup}"))
    write_json(out / "config.json", {"command": command, "commit": git_commit(),
                                     "environment": env, "clock": args.clock,
                                     "dry_run": args.dry_run})
    write_json(out / "timing.json", rows)
    atomic_write_text(out / "summary.md", summary(rows, env, command, args.clock))
    print(json.dumps({r["activation"]: round(r["ratio_vs_relu2"], 3) for r in rows}))
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main(build_parser, run, argv)
