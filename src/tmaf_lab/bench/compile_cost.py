"""First-call cost: a new shape in the running process, and a fresh process (compile cost).

:func:`run_new_shapes` (part ``first``): in the benchmark's own process, each candidate runs
forward+backward on an input shape the process has not seen before (a batch size one larger than
any before), once, then ``steady_calls`` more times; ``first_call_ms`` is the speed target's "first
call of a new shape" (the ``native`` backend has nothing to compile; the ``compiled`` backend compiles
again), ``extra_ms`` what it costs beyond a steady call.

:func:`run_probes` (part ``compile``): each probe is a new process
(``tmaf bench compile-cost SPEC SHAPE DEVICE THREADS``) that builds one candidate and
times its first forward+backward (compilation included, and for ``native`` the first use of the
operators in the process) and its second.
Per candidate the probe runs twice against the same fresh ``TORCHINDUCTOR_CACHE_DIR``: the first
process starts from an empty cache, the second finds the first one's FX graph / kernel cache
entries, which shows how much of the compile cost PyTorch's on-disk cache removes.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .candidates import Candidate, Shape, Spec
from .timing import synchronizer

REPO = Path(__file__).resolve().parents[1]


def parse_spec(text: str) -> Spec:
    """Inverse of ``Spec.name``: ``relu/compile`` or ``diagonal-m8/compiled``."""
    kind, _, mode = text.partition("/")
    kind, _, m = kind.partition("-m")
    return Spec(kind, mode, int(m) if m else 0)


def probe(spec: Spec, shape: tuple[int, ...], device: torch.device) -> dict:
    """Seconds of the first and second forward+backward of one fresh candidate."""
    torch.manual_seed(0)
    x = torch.randn(shape, device=device, requires_grad=True)
    g = torch.randn(shape, device=device)
    sync = synchronizer(device)
    cand = Candidate(spec, x, g)
    times = []
    for _ in range(2):
        sync()
        t0 = time.perf_counter()
        cand.fwd_bwd()
        sync()
        times.append(time.perf_counter() - t0)
    return {"first_call_s": times[0], "second_call_s": times[1]}


def run_new_shapes(shapes: Sequence[Shape], specs: Sequence[Spec], *, device: torch.device,
                   threads: Sequence[int], seed: int, log: Callable[[str], None],
                   steady_calls: int = 5, fresh_shapes: int = 3) -> list[dict]:
    """First and steady forward+backward of each candidate on shapes new to this process:
    ``fresh_shapes`` of them per (base shape, candidate, thread count), one row each."""
    sync = synchronizer(device)
    offset = itertools.count(1)  # every measurement gets a batch size no earlier one used
    rows = []
    for t in threads:
        torch.set_num_threads(t)
        for shape, _, spec in itertools.product(shapes, range(fresh_shapes), specs):
            fresh = Shape((shape.dims[0] + next(offset), *shape.dims[1:]), shape.channels_last)
            gen = torch.Generator().manual_seed(seed)
            x = fresh.randn(device, gen, requires_grad=True)
            cand = Candidate(spec, x, fresh.randn(device, gen), seed)
            times = []
            for _ in range(1 + steady_calls):
                sync()
                t0 = time.perf_counter()
                cand.fwd_bwd()
                sync()
                times.append(time.perf_counter() - t0)
            steady = statistics.median(times[1:]) if steady_calls else float("nan")
            rows.append({"shape": fresh.name, "base_shape": shape.name,
                         "layout": fresh.layout, "threads": t,
                         "seed": seed, "candidate": spec.name, "kind": spec.kind,
                         "mode": spec.mode, "m": spec.m, "first_call_ms": 1e3 * times[0],
                         "steady_ms": 1e3 * steady, "extra_ms": 1e3 * (times[0] - steady)})
            log(f"  new shape {fresh.name:<14} {t} thread(s) {spec.name:<24} first call "
                f"{1e3 * times[0]:9.2f} ms, then {1e3 * steady:8.2f} ms")
    return rows


def run_probes(specs: Sequence[Spec], shape: tuple[int, ...], device: torch.device,
               threads: int, log: Callable[[str], None], timeout_s: float = 600) -> list[dict]:
    """Cold-cache then warm-cache process per candidate; one row per process."""
    rows = []
    for spec in specs:
        with tempfile.TemporaryDirectory(prefix="tmaf-inductor-") as cache:
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
            for cache_state in ("cold", "warm"):
                cmd = [sys.executable, "-m", "tmaf_lab", "bench", "compile-cost", spec.name,
                       "x".join(map(str, shape)), str(device), str(threads)]
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                                      timeout=timeout_s)
                wall = time.perf_counter() - t0
                if proc.returncode != 0:
                    raise RuntimeError(f"compile probe {spec.name} failed:\n{proc.stderr[-2000:]}")
                result = json.loads(proc.stdout.strip().splitlines()[-1])
                rows.append({"candidate": spec.name, "shape": "x".join(map(str, shape)),
                             "inductor_cache": cache_state, "process_wall_s": wall, **result})
                log(f"  compile probe {spec.name:<24} {cache_state} cache: first call "
                    f"{result['first_call_s']:6.2f} s, second {result['second_call_s']:.3f} s, "
                    f"process {wall:.1f} s")
    return rows


def build_parser():
    from tmaf_lab.cli import OneLineErrorParser

    p = OneLineErrorParser(prog="tmaf bench compile-cost", allow_abbrev=False,
                           description="Build one candidate in this process and time its first "
                                       "and second forward+backward; prints one JSON line.")
    p.add_argument("spec", type=parse_spec, help="candidate, e.g. diagonal-m9/compiled, relu/compile")
    p.add_argument("shape", help="input shape, e.g. 128x64x32x32")
    p.add_argument("device", type=torch.device, help="cpu, cuda or cuda:N")
    p.add_argument("threads", type=int, help="torch CPU threads")
    return p


def _probe(args) -> int:
    shape = tuple(int(s) for s in args.shape.split("x"))
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        print(json.dumps(probe(args.spec, shape, args.device)))
    finally:
        torch.set_num_threads(threads)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``tmaf bench compile-cost SPEC SHAPE DEVICE THREADS`` (one probe of :func:`run_probes`)."""
    from tmaf_lab.cli import command_main

    return command_main(build_parser, _probe, argv, errors=(ValueError, RuntimeError))
