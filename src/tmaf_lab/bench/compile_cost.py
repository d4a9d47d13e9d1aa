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

:func:`varying_lengths`: the ``compiled`` backend fed token batches whose sequence length changes
from call to call, as a transformer's do: per way of compiling, a fresh process times the first
forward+backward at each length and counts the graphs torch.compile has made;
:func:`steady_state_pair` times the static and the dynamic graph side by side in one process;
:func:`write_varying_lengths` writes both to a results folder (results.json, README.md).
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

from tmaf_lab.files import atomic_write_text, write_json
from tmaf_lab.runmeta import environment, git_commit

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


# --- the compiled backend under varying sequence lengths ------------------------------------------

#: how the compiled backend's kernels are compiled: "static", torch.compile's default (the first
#: shape specialised, a dynamic graph from the second shape on); "dynamic", every dim but the
#: channel axis marked dynamic before the first compile (tmaf/_compiled.py, MARK_DYNAMIC)
COMPILE_ARMS = ("static", "dynamic")
_ARM_SCRIPT = ("import json, sys; from tmaf_lab.bench.compile_cost import lengths_arm; "
               "print(json.dumps(lengths_arm(**json.loads(sys.argv[1]))))")


def _token_block(kind: str, form: str, channels: int, device: torch.device, seed: int) -> torch.nn.Module:
    """Linear -> TMAF (backend "compiled", channels last) -> Linear, random levels."""
    import tmaf

    cls = {"diagonal": tmaf.DiagonalTMAF, "tridiagonal": tmaf.TridiagonalTMAF}[kind]
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(channels, channels),
        cls(channels, channel_dim=-1, init="random", backend="compiled", form=form),
        torch.nn.Linear(channels, channels)).to(device)


def _fwd_bwd(model: torch.nn.Module, x: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    model(x).square().mean().backward()


def _unique_graphs() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def lengths_arm(arm: str, lengths: Sequence[int], batch: int, channels: int, kind: str, form: str,
                steady_calls: int, device: str, threads: int, seed: int = 0) -> list[dict]:
    """One way of compiling (``arm``, one of :data:`COMPILE_ARMS`) in this process: for each
    sequence length in turn, the seconds of the first forward+backward of (batch, T, channels)
    tokens, the median of ``steady_calls`` more, and the graphs compiled so far."""
    import tmaf._compiled as compiled

    if arm not in COMPILE_ARMS:
        raise ValueError(f"unknown compile arm {arm!r}; expected one of {COMPILE_ARMS}")
    compiled.MARK_DYNAMIC = arm == "dynamic"
    torch.set_num_threads(threads)
    dev = torch.device(device)
    sync = synchronizer(dev)
    model = _token_block(kind, form, channels, dev, seed)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    rows = []
    for length in lengths:
        x = torch.randn(batch, length, channels, device=dev)
        times = []
        for _ in range(1 + steady_calls):
            sync()
            t0 = time.perf_counter()
            _fwd_bwd(model, x)
            sync()
            times.append(time.perf_counter() - t0)
        rows.append({"arm": arm, "length": length, "first_call_s": times[0],
                     "steady_ms": 1e3 * statistics.median(times[1:]), "graphs": _unique_graphs()})
    return rows


def varying_lengths(lengths: Sequence[int] = (17, 18, 19, 20, 24, 32), *, batch: int = 4,
                    channels: int = 32, kind: str = "tridiagonal", form: str = "continuous",
                    arms: Sequence[str] = COMPILE_ARMS, steady_calls: int = 10, device: str = "cpu",
                    threads: int | None = None, log: Callable[[str], None] = print,
                    timeout_s: float = 3600) -> list[dict]:
    """Per arm, a fresh process with an empty inductor cache runs :func:`lengths_arm`; one row per
    (arm, length) with ``first_call_s`` (compilation included), ``steady_ms`` and ``graphs``
    (torch._dynamo's unique graph count so far: forward and backward kernels)."""
    threads = threads or torch.get_num_threads()
    rows = []
    for arm in arms:
        args = dict(arm=arm, lengths=list(lengths), batch=batch, channels=channels, kind=kind,
                    form=form, steady_calls=steady_calls, device=device, threads=threads)
        with tempfile.TemporaryDirectory(prefix="tmaf-inductor-") as cache:
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
            proc = subprocess.run([sys.executable, "-c", _ARM_SCRIPT, json.dumps(args)], cwd=REPO,
                                  env=env, capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            raise RuntimeError(f"varying-length arm {arm} failed:\n{proc.stderr[-2000:]}")
        for row in json.loads(proc.stdout.strip().splitlines()[-1]):
            rows.append(row)
            log(f"  {arm:<8} T={row['length']:<4} first call {row['first_call_s']:7.2f} s, "
                f"steady {row['steady_ms']:8.3f} ms, graphs so far {row['graphs']}")
    return rows


def steady_state_pair(shape: Sequence[int] = (4, 32, 32), *, kind: str = "tridiagonal",
                      form: str = "continuous", rounds: int = 15, calls: int = 10,
                      device: str = "cpu", threads: int | None = None,
                      log: Callable[[str], None] = print) -> dict:
    """The steady forward+backward of the static graph and of the dynamic one (every dim but the
    channel axis dynamic), both compiled for ``shape`` in this process and timed in alternating
    rounds of ``calls`` calls: medians per call and the median of the per-round ratios."""
    import tmaf._compiled as compiled

    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    sync = synchronizer(dev)
    model = _token_block(kind, form, shape[-1], dev, 0)
    x = torch.randn(*shape, device=dev)
    kernels = {"static": {}, "dynamic": {}}  # each arm its own compiled kernels
    saved = compiled._kernels, compiled.MARK_DYNAMIC
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()

    def per_call(arm: str, n: int) -> float:
        compiled._kernels, compiled.MARK_DYNAMIC = kernels[arm], arm == "dynamic"
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            _fwd_bwd(model, x)
        sync()
        return (time.perf_counter() - t0) / n

    try:
        for arm in COMPILE_ARMS:
            per_call(arm, 2)
        graphs = _unique_graphs()
        times = {arm: [] for arm in COMPILE_ARMS}
        for r in range(rounds):
            for arm in COMPILE_ARMS if r % 2 == 0 else COMPILE_ARMS[::-1]:
                times[arm].append(per_call(arm, calls))
        if _unique_graphs() != graphs:
            raise RuntimeError("steady_state_pair: a timed call compiled again")
    finally:
        compiled._kernels, compiled.MARK_DYNAMIC = saved
    ratios = sorted(d / s for s, d in zip(times["static"], times["dynamic"], strict=True))
    ratio = statistics.median(ratios)
    row = {"shape": "x".join(map(str, shape)), "kind": kind, "form": form, "graphs": graphs,
           "rounds": rounds, "calls": calls, "threads": torch.get_num_threads(),
           "static_ms": 1e3 * statistics.median(times["static"]),
           "dynamic_ms": 1e3 * statistics.median(times["dynamic"]), "dynamic_over_static": ratio,
           "ratio_quartiles": statistics.quantiles(ratios, n=4) if rounds > 1 else [ratio] * 3}
    log(f"  steady {row['shape']}: static {row['static_ms']:.3f} ms, dynamic {row['dynamic_ms']:.3f} "
        f"ms per call, dynamic/static {ratio:.3f} (median of {rounds} paired rounds, {graphs} graphs)")
    return row


def _quartiles(row: dict) -> str:
    q = row.get("ratio_quartiles")
    return f"{q[0]:.3f}-{q[2]:.3f}" if q else "-"


def write_varying_lengths(out_dir: str | os.PathLike, rows: list[dict], steady: list[dict], *,
                          config: dict, command: str, commit: str | None = None) -> Path:
    """results.json (config, environment, commit, rows) and README.md (the tables) in ``out_dir``;
    ``commit``: the one the measurement ran (default: the checkout's now)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = environment(config.get("device", "cpu"))
    commit = commit or git_commit(REPO)
    write_json(out / "results.json", {"command": command, "commit": commit, "config": config,
                                      "environment": env, "lengths": rows, "steady": steady})
    lines = ["# The compiled backend under varying sequence lengths", "",
             f"(batch, T, {config.get('channels')}) tokens through Linear -> {config.get('kind')} TMAF "
             f"({config.get('form')} form, backend `compiled`, channels last) -> Linear, forward and "
             "backward; each arm in a fresh process with an empty inductor cache. *static*: "
             "torch.compile's default (the first shape specialised); *dynamic*: every dim but the "
             "channel axis marked dynamic before the first compile.", "",
             f"    {command}", "",
             f"commit {commit}; torch {env['torch']}; {env['cpu_model']}; device {config.get('device')}; "
             f"{config.get('threads')} thread(s).", "",
             "| arm | T | first call (s) | steady (ms) | graphs so far |", "|---|---|---|---|---|"]
    lines += [f"| {r['arm']} | {r['length']} | {r['first_call_s']:.2f} | {r['steady_ms']:.3f} | "
              f"{r['graphs']} |" for r in rows]
    lines += ["", "Steady state of the two graphs side by side (one process, alternating rounds; "
              "medians per call, median of per-round ratios):", "",
              "| shape | static (ms) | dynamic (ms) | dynamic / static | its quartiles | rounds x calls |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {s['shape']} | {s['static_ms']:.3f} | {s['dynamic_ms']:.3f} | "
              f"{s['dynamic_over_static']:.3f} | {_quartiles(s)} | {s['rounds']} x {s['calls']} |"
              for s in steady]
    atomic_write_text(out / "README.md", "\n".join(lines) + "\n")
    return out


def measure_varying_lengths(out_dir: str | os.PathLike, *, device: str = "cpu", threads: int = 1,
                            lengths: Sequence[int] = (17, 18, 19, 20, 24, 32), batch: int = 4,
                            channels: int = 32, steady_shapes: Sequence[Sequence[int]] | None = None,
                            rounds: int = 15, log: Callable[[str], None] = print,
                            command: str | None = None) -> Path:
    """Both measurements for the continuous tridiagonal layer, written to ``out_dir``: the first
    calls of each arm over ``lengths`` (:func:`varying_lengths`) and the steady state of the two
    graphs side by side (:func:`steady_state_pair`) at (batch, last length, channels) and each of
    ``steady_shapes``. ``command``: the command line recorded with the results (``tmaf bench
    compile-lengths ...``; default: this call)."""
    call = (f"measure_varying_lengths({str(out_dir)!r}, device={device!r}, threads={threads}, "
            f"lengths={tuple(lengths)}, batch={batch}, channels={channels}, "
            f"steady_shapes={steady_shapes!r}, rounds={rounds})")
    command = command or call
    log(f"varying lengths: {call}")
    commit = git_commit(REPO)  # the code measured, before anything can change the checkout
    torch.set_num_threads(threads)
    rows = varying_lengths(lengths, batch=batch, channels=channels, device=device, threads=threads,
                           log=log)
    shapes = [(batch, lengths[-1], channels), *(tuple(s) for s in steady_shapes or ())]
    steady = [steady_state_pair(s, rounds=rounds, device=device, threads=threads, log=log)
              for s in shapes]
    config = {"device": device, "threads": threads, "lengths": list(lengths), "batch": batch,
              "channels": channels, "kind": "tridiagonal", "form": "continuous",
              "steady_shapes": [list(s) for s in shapes], "rounds": rounds}
    return write_varying_lengths(out_dir, rows, steady, config=config, command=command, commit=commit)


def main(argv: list[str] | None = None) -> int:
    """``tmaf bench compile-cost SPEC SHAPE DEVICE THREADS`` (one probe of :func:`run_probes`)."""
    from tmaf_lab.cli import command_main

    return command_main(build_parser, _probe, argv, errors=(ValueError, RuntimeError))
