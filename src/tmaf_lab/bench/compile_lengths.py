"""``tmaf bench compile-lengths``: the compiled backend fed one sequence length after another.

A (batch, T, channels) token batch through Linear -> continuous TridiagonalTMAF (backend
"compiled") -> Linear, for each T in turn: the first-call seconds and the graphs compiled so
far, once with torch.compile's default (the first shape specialised: "static") and once with
every dim but the channel axis marked dynamic before the first compile ("dynamic", what the
compiled backend does), each in a fresh process with an empty inductor cache; then the steady
state of the two graphs side by side. Writes results.json and README.md to --out
(:func:`tmaf_lab.bench.compile_cost.measure_varying_lengths`).
"""

from __future__ import annotations

import argparse
import shlex

from tmaf_lab.lists import list_type

_SHAPE = list_type(int, what="dims", example="8x256x512", low=1)


def _shape(text: str) -> tuple[int, ...]:
    return _SHAPE(text.replace("x", ","))


def build_parser() -> argparse.ArgumentParser:
    from tmaf_lab.cli import OneLineErrorParser

    p = OneLineErrorParser(prog="tmaf bench compile-lengths", allow_abbrev=False,
                           description=__doc__.split("\n")[0])
    p.add_argument("--out", default="results/bench/compile-varying-lengths",
                   help="folder for results.json and README.md (default %(default)s)")
    p.add_argument("--device", default="auto",
                   help="cpu, cuda or auto (default: cuda where available, else cpu)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (default 0: torch's default)")
    p.add_argument("--lengths", type=list_type(int, what="sequence lengths", example="17,18,32",
                                               low=1), default=(17, 18, 19, 20, 24, 32),
                   help="sequence lengths, in order (default 17,18,19,20,24,32)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--steady-shape", type=_shape, action="append", default=[],
                   help="another (batch, T, channels) shape for the steady-state pair, e.g. "
                        "8x256x512 (repeatable)")
    p.add_argument("--rounds", type=int, default=15, help="paired steady-state rounds")
    return p


def run(args) -> int:
    import torch

    from .compile_cost import measure_varying_lengths

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    threads = args.threads or torch.get_num_threads()
    command = ["tmaf", "bench", "compile-lengths", "--out", str(args.out), "--device", device,
               "--threads", str(threads), "--lengths", ",".join(map(str, args.lengths)),
               "--batch", str(args.batch), "--channels", str(args.channels),
               *(a for s in args.steady_shape for a in ("--steady-shape", "x".join(map(str, s)))),
               "--rounds", str(args.rounds)]
    measure_varying_lengths(args.out, device=device, threads=threads, lengths=args.lengths,
                            batch=args.batch, channels=args.channels,
                            steady_shapes=args.steady_shape or None, rounds=args.rounds,
                            command=shlex.join(command))
    return 0


def main(argv: list[str] | None = None) -> int:
    from tmaf_lab.cli import command_main

    return command_main(build_parser, run, argv)
