"""Activation micro-benchmark: forward and forward+backward time and saved bytes per candidate.

For one input shape, every fast candidate (baselines eager and compiled, TMAF ``compiled`` and
``eager`` backends for each m) is first checked against its reference (outputs and every
gradient), then timed interleaved with the others; the slow TMAF ``reference`` backend is timed
in a second interleaved group with fewer repeats, paired with eager ReLU again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from .candidates import BASELINES, TMAF_KINDS, Candidate, Spec, check_against_reference
from .timing import Timing, paired_ratio, saved_bytes, synchronizer, time_interleaved

RELU_EAGER = Spec("relu", "eager")
RELU_COMPILE = Spec("relu", "compile")


def fast_specs(ms: Sequence[int], with_tmaf: bool, use_compile: bool = True) -> list[Spec]:
    """Baselines eager (and compiled), TMAF fast backends ("compiled" only with use_compile)."""
    modes = ("eager", "compile") if use_compile else ("eager",)
    backends = ("compiled", "eager") if use_compile else ("eager",)
    specs = [Spec(k, mode) for k in BASELINES for mode in modes]
    if with_tmaf:
        specs += [Spec(k, b, m) for k in TMAF_KINDS for m in ms for b in backends]
    return specs


def reference_specs(ms: Sequence[int]) -> list[Spec]:
    return [RELU_EAGER] + [Spec(k, "reference", m) for k in TMAF_KINDS for m in ms]


def _prepare(specs: list[Spec], x: torch.Tensor, g: torch.Tensor, sync: Callable[[], None],
             log: Callable[[str], None]) -> tuple[dict[str, Candidate], dict[str, dict]]:
    """Build candidates; time the first call (compilation included); check; count saved bytes."""
    cands, info = {}, {}
    for spec in specs:
        cand = Candidate(spec, x, g)
        sync()
        t0 = time.perf_counter()
        cand.fwd_bwd()
        sync()
        first = time.perf_counter() - t0
        err = check_against_reference(cand)
        sb = saved_bytes(cand.fwd, [*cand.params, *cand.module.buffers()])
        cands[spec.name] = cand
        info[spec.name] = {"first_call_s": first, "check_max_rel_err": err,
                           "saved_bytes": sb.total, "saved_param_bytes": sb.parameters}
        log(f"  ready {spec.name:<28} first call {first:7.2f} s  check err {err:.1e}  "
            f"saved {sb.total / 2**20:8.2f} MiB")
    return cands, info


def _rows(shape: tuple[int, ...], phase: str, group: str, timings: dict[str, Timing],
          cands: dict[str, Candidate], info: dict[str, dict]) -> list[dict]:
    base_e = timings[RELU_EAGER.name]
    base_c = timings.get(RELU_COMPILE.name)
    relu_bytes = info[RELU_EAGER.name]["saved_bytes"]
    rows = []
    for name, t in timings.items():
        spec = cands[name].spec
        rows.append({
            "shape": "x".join(map(str, shape)), "phase": phase, "group": group,
            "candidate": name, "kind": spec.kind, "mode": spec.mode, "m": spec.m,
            "median_ms": 1e3 * t.median, "q25_ms": 1e3 * t.quantile(0.25),
            "q75_ms": 1e3 * t.quantile(0.75), "repeats": len(t.samples),
            "calls_per_sample": t.number,
            "ratio_vs_relu_eager": paired_ratio(t, base_e),
            "ratio_vs_relu_compile": paired_ratio(t, base_c) if base_c else float("nan"),
            **info[name],
            "saved_bytes_vs_relu_eager": info[name]["saved_bytes"] / relu_bytes,
            # without the parameters (TMAF levels, PReLU weight): a few hundred bytes
            "saved_act_bytes_vs_relu_eager": (info[name]["saved_bytes"]
                                              - info[name]["saved_param_bytes"]) / relu_bytes,
        })
    return rows


def run_shape(shape: tuple[int, ...], ms: Sequence[int], *, device: torch.device, repeats: int,
              reference_repeats: int, warmup: int, with_tmaf: bool, use_compile: bool, seed: int,
              log: Callable[[str], None]) -> list[dict]:
    """All rows (both phases, both groups) for one input shape."""
    torch.manual_seed(seed)
    x = torch.randn(shape, device=device, requires_grad=True)
    g = torch.randn(shape, device=device)
    sync = synchronizer(device)
    rows: list[dict] = []
    groups = [("fast", fast_specs(ms, with_tmaf, use_compile), repeats)]
    if with_tmaf and reference_repeats > 0:
        groups.append(("reference", reference_specs(ms), reference_repeats))
    for group, specs, reps in groups:
        log(f"shape {shape}: group {group}, {len(specs)} candidates")
        cands, info = _prepare(specs, x, g, sync, log)
        for phase in ("fwd", "fwd_bwd"):
            fns = {n: (c.fwd if phase == "fwd" else c.fwd_bwd) for n, c in cands.items()}
            t0 = time.perf_counter()
            timings = time_interleaved(fns, repeats=reps, warmup=warmup, sync=sync)
            log(f"  timed {phase} in {time.perf_counter() - t0:.1f} s")
            rows += _rows(shape, phase, group, timings, cands, info)
        del cands
    return rows
