"""Activation micro-benchmark: forward and forward+backward time and saved bytes per candidate.

For one input shape, candidates are timed in three interleaved groups, each paired with eager
ReLU timed in the same rounds (so every ratio is a same-run, side-by-side ratio):

- ``fast``: ReLU / PReLU / GELU eager and under ``torch.compile``, and the TMAF ``compiled``
  backend for every m (``repeats`` rounds);
- ``eager``: the TMAF ``eager`` backend for every m (``slow_repeats`` rounds: it is 10-50x slower);
- ``reference``: the TMAF ``reference`` backend for ``reference_ms`` (one round: seconds per call).

Before timing, every fast candidate's output and gradients (input and each parameter) are checked
at the full shape against the float64 oracle, itself checked against ``tmaf``'s reference backend
on a sub-batch (:mod:`benchmarks.oracle`); a mismatch aborts the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from .candidates import (
    BASELINES,
    TMAF_KINDS,
    Candidate,
    Spec,
    check_against_reference,
    check_oracle,
    expected_results,
)
from .timing import Timing, paired_ratio, saved_bytes, synchronizer, time_interleaved

RELU_EAGER = Spec("relu", "eager")
RELU_COMPILE = Spec("relu", "compile")


def group_specs(ms: Sequence[int], reference_ms: Sequence[int], use_compile: bool
                ) -> dict[str, list[Spec]]:
    """Candidates per timing group (each group starts with eager ReLU, the pairing baseline)."""
    modes = ("eager", "compile") if use_compile else ("eager",)
    fast = [Spec(k, mode) for k in BASELINES for mode in modes]
    if use_compile:
        fast += [Spec(k, "compiled", m) for k in TMAF_KINDS for m in ms]
    groups = {"fast": fast,
              "eager": [RELU_EAGER] + [Spec(k, "eager", m) for k in TMAF_KINDS for m in ms]}
    if reference_ms:
        groups["reference"] = [RELU_EAGER] + [Spec(k, "reference", m) for k in TMAF_KINDS
                                              for m in reference_ms]
    return groups


class _Expected:
    """Oracle results per (kind, m), computed once and checked against tmaf's reference."""

    def __init__(self) -> None:
        self.cache: dict[tuple[str, int], list[torch.Tensor]] = {}

    def get(self, cand: Candidate) -> tuple[list[torch.Tensor], float]:
        key = (cand.spec.kind, cand.spec.m)
        err = 0.0
        if key not in self.cache:
            err = check_oracle(cand)
            self.cache[key] = expected_results(cand)
        return self.cache[key], err


def _prepare(specs: list[Spec], x: torch.Tensor, g: torch.Tensor, expected: _Expected,
             sync: Callable[[], None], log: Callable[[str], None]
             ) -> tuple[dict[str, Candidate], dict[str, dict]]:
    """Build candidates; time the first call (compilation included); check; count saved bytes."""
    cands, info = {}, {}
    for spec in specs:
        cand = Candidate(spec, x, g)
        first, err, oracle_err = float("nan"), 0.0, 0.0
        if spec.mode != "reference":  # seconds per call: its timed call is its only call
            sync()
            t0 = time.perf_counter()
            cand.fwd_bwd()
            sync()
            first = time.perf_counter() - t0
            want = None
            if spec.is_tmaf:
                want, oracle_err = expected.get(cand)
            err = check_against_reference(cand, want)
        sb = saved_bytes(cand.fwd, [*cand.params, *cand.module.buffers()])
        cands[spec.name] = cand
        info[spec.name] = {"first_call_s": first, "check_max_rel_err": err,
                           "oracle_vs_reference_err": oracle_err,
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
            # without the parameters and buffers (TMAF levels and breakpoints, PReLU weight)
            "saved_act_bytes_vs_relu_eager": (info[name]["saved_bytes"]
                                              - info[name]["saved_param_bytes"]) / relu_bytes,
        })
    return rows


def run_shape(shape: tuple[int, ...], ms: Sequence[int], *, device: torch.device, repeats: int,
              slow_repeats: int, reference_ms: Sequence[int], warmup: int, use_compile: bool,
              seed: int, log: Callable[[str], None]) -> list[dict]:
    """All rows (both phases, every group) for one input shape."""
    torch.manual_seed(seed)
    x = torch.randn(shape, device=device, requires_grad=True)
    g = torch.randn(shape, device=device)
    sync = synchronizer(device)
    expected = _Expected()
    rows: list[dict] = []
    reps = {"fast": (repeats, warmup, 0.01), "eager": (slow_repeats, 0, 0.0),
            "reference": (1, 0, 0.0)}
    for group, specs in group_specs(ms, reference_ms, use_compile).items():
        log(f"shape {shape}: group {group}, {len(specs)} candidates")
        cands, info = _prepare(specs, x, g, expected, sync, log)
        n, w, min_s = reps[group]
        for phase in ("fwd", "fwd_bwd"):
            fns = {name: (c.fwd if phase == "fwd" else c.fwd_bwd) for name, c in cands.items()}
            t0 = time.perf_counter()
            timings = time_interleaved(fns, repeats=n, warmup=w, sync=sync, min_sample_s=min_s)
            log(f"  timed {phase} in {time.perf_counter() - t0:.1f} s")
            rows += _rows(shape, phase, group, timings, cands, info)
        del cands
    return rows
