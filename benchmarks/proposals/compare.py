"""Side-by-side timing of the core's fast path and the proposed ``_fused.py`` in this folder.

The committed ``results/bench/cpu/proposal_compare.csv`` was made with the core at c723818
(before the proposal was applied to ``src/tmaf/_fused.py`` in 2eb9337; since then both sides
run the same code).

``python -m benchmarks.proposals.compare [--quick] [--out DIR]`` loads the proposal as a separate
module (``tmaf._fused_proposed``; the installed core is untouched), checks both against the
float64 oracle (outputs and every gradient), and times forward+backward interleaved with eager
ReLU on the benchmark shapes, m = 8.  Writes ``proposal_compare.csv``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch

from ..candidates import Candidate, Spec, check_against_reference, expected_results
from ..report import write_csv
from ..timing import paired_ratio, synchronizer, time_interleaved

HERE = Path(__file__).resolve().parent


def load_proposal():
    import tmaf  # noqa: F401  (the parent package of the proposal's relative imports)

    spec = importlib.util.spec_from_file_location("tmaf._fused_proposed", HERE / "_fused.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class ProposedCandidate(Candidate):
    """A TMAF candidate whose module calls the proposal's autograd function directly."""

    def __init__(self, spec: Spec, x, g, proposal):
        super().__init__(Spec(spec.kind, spec.mode, spec.m), x, g)
        mod, compiled = self.module, spec.mode == "compiled"
        self.backend = None

        def call(inp):
            lv = mod.levels.view(mod.levels.shape[0], -1, mod.levels.shape[-1])
            return proposal.BandedTMAFFunction.apply(inp, mod.breakpoints, lv, 1, compiled)

        self.call = call


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.proposals.compare", allow_abbrev=False)
    p.add_argument("--quick", action="store_true", help="one conv shape only")
    p.add_argument("--out", default="results/bench/cpu")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch._dynamo.config.cache_size_limit = 256
    proposal = load_proposal()
    shapes = [(128, 64, 32, 32)] if a.quick else [(4096, 1024), (128, 64, 32, 32),
                                                   (64, 256, 16, 16)]
    device = torch.device("cpu")
    sync = synchronizer(device)
    rows = []
    t_start = time.perf_counter()
    for shape in shapes:
        torch.manual_seed(0)
        x = torch.randn(shape, requires_grad=True)
        g = torch.randn(shape)
        cands = {"relu/eager": Candidate(Spec("relu", "eager"), x, g)}
        info = {"relu/eager": (float("nan"), 0.0)}
        for kind in ("diagonal", "tridiagonal"):
            want = None
            for mode in ("compiled", "eager"):
                for label in ("core", "proposed"):
                    spec = Spec(kind, mode, 8)
                    c = (Candidate(spec, x, g) if label == "core"
                         else ProposedCandidate(spec, x, g, proposal))
                    t0 = time.perf_counter()
                    c.fwd_bwd()
                    first = time.perf_counter() - t0
                    want = expected_results(c) if want is None else want
                    err = check_against_reference(c, want)
                    name = f"{label}:{c.spec.name}"
                    cands[name], info[name] = c, (first, err)
                    print(f"[{time.perf_counter() - t_start:6.1f} s] {shape} ready {name:<36} "
                          f"first call {first:6.2f} s  check err {err:.1e}", flush=True)
        timings = time_interleaved({n: c.fwd_bwd for n, c in cands.items()}, repeats=a.repeats,
                                   warmup=1, sync=sync, min_sample_s=0.0)
        base = timings["relu/eager"]
        for n, t in timings.items():
            rows.append({"shape": "x".join(map(str, shape)), "phase": "fwd_bwd", "candidate": n,
                         "median_ms": 1e3 * t.median, "ratio_vs_relu_eager": paired_ratio(t, base),
                         "repeats": len(t.samples), "first_call_s": info[n][0],
                         "check_max_rel_err": info[n][1], "threads": a.threads})
            print(f"  {n:<36} {1e3 * t.median:9.1f} ms  {paired_ratio(t, base):6.2f}x", flush=True)
        write_csv(Path(a.out) / "proposal_compare.csv", rows)
    print(f"wrote {a.out}/proposal_compare.csv in {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
