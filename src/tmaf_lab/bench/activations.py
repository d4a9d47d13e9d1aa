"""Activation micro-benchmark: forward and forward+backward time and saved bytes per candidate.

For one input shape, candidates are timed in interleaved groups, each paired with eager ReLU
(``nn.ReLU`` module call with autograd, as in training) timed in the same rounds, so every ratio
is a same-run, side-by-side ratio:

- ``native``: the TMAF ``native`` backend (the C++ operators) for every m (``repeats`` rounds);
- ``fast``: PReLU / GELU eager, the baselines under ``torch.compile``, and the TMAF ``compiled``
  backend for every m (``repeats`` rounds);
- ``eager``: the TMAF ``eager`` backend for every m (``slow_repeats`` rounds: it is 10-90x slower);
- ``reference``: the TMAF ``reference`` backend for ``reference_ms`` (one round: seconds per call).

Candidates are built once per shape; then, for each thread count, every fast candidate's output
and gradients (input and each parameter) are checked at the full shape against the float64 oracle
(``tmaf_lab.bench.oracle.oracle_outputs_and_grads``, itself checked against ``tmaf``'s reference
backend on a sub-batch)
and the group is timed; a mismatch aborts the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from .candidates import (
    JUMP_KINDS,
    TMAF_KINDS,
    Candidate,
    Shape,
    Spec,
    check_against_reference,
    check_oracle,
    expected_results,
    kind_ms,
)
from .timing import Timing, paired_ratio, saved_bytes, synchronizer, time_interleaved

RELU_EAGER = Spec("relu", "eager")
RELU_COMPILE = Spec("relu", "compile")


def group_specs(ms: Sequence[int], reference_ms: Sequence[int], compile_baselines: bool,
                backends: Sequence[str] = ("native", "compiled", "eager", "reference"),
                baselines: Sequence[str] = ("relu", "prelu", "gelu")) -> dict[str, list[Spec]]:
    """Candidates per timing group; each group starts with eager ReLU, the pairing baseline.

    ``compile_baselines``: include the baselines under ``torch.compile`` as well; the TMAF
    backends are those in ``backends``.
    """
    tmaf = [(k, m) for k in TMAF_KINDS for m in kind_ms(k, ms)]
    groups: dict[str, list[Spec]] = {}
    if "native" in backends:
        groups["native"] = [RELU_EAGER] + [Spec(k, "native", m) for k, m in tmaf]
    modes = ("eager", "compile") if compile_baselines else ("eager",)
    fast = [Spec(k, mode) for k in baselines for mode in modes if Spec(k, mode) != RELU_EAGER]
    if "compiled" in backends:
        fast += [Spec(k, "compiled", m) for k, m in tmaf]
    if fast:
        groups["fast"] = [RELU_EAGER] + fast
    if "eager" in backends:
        groups["eager"] = [RELU_EAGER] + [Spec(k, "eager", m) for k, m in tmaf]
    if "reference" in backends and reference_ms:
        groups["reference"] = [RELU_EAGER] + [Spec(k, "reference", m) for k in JUMP_KINDS
                                              for m in reference_ms]
    return groups


class _Expected:
    """Oracle results per (kind, m), computed once and checked against tmaf's reference."""

    def __init__(self) -> None:
        self.cache: dict[tuple[str, int], tuple[list[torch.Tensor], float]] = {}

    def get(self, cand: Candidate) -> tuple[list[torch.Tensor], float]:
        key = (cand.spec.kind, cand.spec.m)
        if key not in self.cache:
            err = check_oracle(cand)
            self.cache[key] = (expected_results(cand), err)
        return self.cache[key]


def _build(specs: list[Spec], x: torch.Tensor, g: torch.Tensor, sync: Callable[[], None],
           seed: int, log: Callable[[str], None]) -> tuple[dict[str, Candidate], dict[str, dict]]:
    """Build candidates; time each one's first call (compilation included); count saved bytes."""
    cands, info = {}, {}
    for spec in specs:
        cand = Candidate(spec, x, g, seed)
        first = float("nan")
        if spec.mode != "reference":  # seconds per call: its timed call is its only call
            sync()
            t0 = time.perf_counter()
            cand.fwd_bwd()
            sync()
            first = time.perf_counter() - t0
        sb = saved_bytes(cand.fwd, [*cand.params, *cand.module.buffers()])
        cands[spec.name] = cand
        info[spec.name] = {"first_call_s": first, "saved_bytes": sb.total,
                           "saved_param_bytes": sb.parameters}
        log(f"  ready {spec.name:<26} first call {first:7.3f} s  saved {sb.total / 2**20:8.2f} MiB")
    return cands, info


def _check(cands: dict[str, Candidate], expected: _Expected, log: Callable[[str], None]
           ) -> dict[str, dict]:
    """Check every fast candidate (at the current thread count) before it is timed."""
    out = {}
    for name, cand in cands.items():
        want, oracle_err = None, 0.0
        if cand.spec.uses_tmaf and cand.spec.mode != "reference":
            want, oracle_err = expected.get(cand)
        err = check_against_reference(cand, want)
        out[name] = {"check_max_rel_err": err, "oracle_vs_reference_err": oracle_err}
        log(f"  checked {name:<26} max err {err:.1e}")
    return out


def _rows(shape: Shape, phase: str, group: str, threads: int, seed: int,
          timings: dict[str, Timing], cands: dict[str, Candidate], info: dict[str, dict]
          ) -> list[dict]:
    base_e = timings[RELU_EAGER.name]
    base_c = timings.get(RELU_COMPILE.name)
    relu_bytes = info[RELU_EAGER.name]["saved_bytes"]
    rows = []
    for name, t in timings.items():
        spec = cands[name].spec
        rows.append({
            "shape": shape.name, "layout": shape.layout, "threads": threads, "seed": seed,
            "phase": phase, "group": group,
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


def run_shape(shape: Shape, groups: dict[str, list[Spec]], *, device: torch.device,
              threads: Sequence[int], reps: dict[str, tuple[int, int, float]], seed: int,
              log: Callable[[str], None]) -> list[dict]:
    """All rows (both phases, every group, every thread count) for one input shape.

    ``reps``: group -> (timed rounds, warm-up rounds, minimum seconds per sample).
    """
    gen = torch.Generator().manual_seed(seed)
    x = shape.randn(device, gen, requires_grad=True)
    g = shape.randn(device, gen)
    sync = synchronizer(device)
    expected = _Expected()
    rows: list[dict] = []
    for group, specs in groups.items():
        torch.set_num_threads(threads[0])
        log(f"shape {shape.name}: group {group}, {len(specs)} candidates")
        cands, info = _build(specs, x, g, sync, seed, log)
        n, w, min_s = reps[group]
        for t in threads:
            torch.set_num_threads(t)
            checks = _check(cands, expected, log)
            full = {name: {**info[name], **checks[name]} for name in cands}
            for phase in ("fwd", "fwd_bwd"):
                fns = {name: (c.fwd if phase == "fwd" else c.fwd_bwd) for name, c in cands.items()}
                t0 = time.perf_counter()
                timings = time_interleaved(fns, repeats=n, warmup=w, sync=sync, min_sample_s=min_s)
                new = _rows(shape, phase, group, t, seed, timings, cands, full)
                rows += new
                log(f"  {t} thread(s) {phase:<7} in {time.perf_counter() - t0:5.1f} s: "
                    + ", ".join(f"{r['candidate']} {r['ratio_vs_relu_eager']:.2f}x"
                                for r in new[1:]))
        del cands
    return rows
