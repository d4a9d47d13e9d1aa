"""Kernel-only timings: the native operators against ATen's ReLU kernels, forward and backward apart.

Where does the time of a native TMAF forward+backward go?  This part times the operators alone,
on inputs allocated once (no module, no autograd, no ``tmaf.functional`` dispatch):

- forward: ``torch.ops.tmaf.banded_fwd(x, breakpoints, levels, 1)`` against ``torch.relu(x)``;
- backward: ``torch.ops.tmaf.banded_bwd(g, x, breakpoints, levels, 1)`` (input gradient and
  level gradient in one pass) against ``torch.ops.aten.threshold_backward(g, relu(x), 0)``, the
  kernel ``nn.ReLU``'s backward runs;
- the continuous form: ``banded_cont_fwd`` (its intercept table made inside) and
  ``banded_cont_bwd`` (which also sums the intercept gradient), at m = 9.

Each call allocates its output(s) on both sides (the operators have no ``out=`` form), so the
ratio compares like with like.  Ratios are paired per round against the ReLU kernel of the same
direction; ``gbytes_per_s`` is the memory traffic a perfect kernel needs (forward: read x, write
y; backward: read two input-sized tensors, write one) over the median time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from .candidates import TMAF_KINDS, Shape, Spec, breakpoints, is_continuous, kind_ms
from .timing import paired_ratio, synchronizer, time_interleaved

RELU_FWD = "relu"
RELU_BWD = "threshold_backward"


def run_shape(shape: Shape, ms: Sequence[int], *, device: torch.device, threads: Sequence[int],
              repeats: int, warmup: int, min_sample_s: float, seed: int,
              log: Callable[[str], None], kinds: Sequence[str] = TMAF_KINDS) -> list[dict]:
    """Rows (phase ``fwd`` / ``bwd``, every thread count) for one shape; [] without native ops."""
    import tmaf

    if not tmaf.native_available(device):
        log(f"kernels: skipped on {device} ({tmaf.native_status()})")
        return []
    gen = torch.Generator().manual_seed(seed)
    x, g = shape.randn(device, gen), shape.randn(device, gen)
    y = torch.relu(x)
    C = shape.dims[1]
    fwd: dict[str, Callable[[], object]] = {RELU_FWD: lambda: torch.relu(x)}
    bwd: dict[str, Callable[[], object]] = {
        RELU_BWD: lambda: torch.ops.aten.threshold_backward(g, y, 0)}
    specs = {RELU_FWD: Spec("relu", "kernel"), RELU_BWD: Spec("relu", "kernel")}
    for kind in kinds:
        b = 0 if kind.removeprefix("continuous_") == "diagonal" else 1
        for m in kind_ms(kind, ms):
            bp = breakpoints(m).to(device)
            lv = (torch.rand(C, 2 * b + 1, m + 1, generator=gen) * 2 - 0.5).to(device)
            spec = Spec(kind, "native", m)
            if is_continuous(kind):
                fwd[spec.name] = lambda bp=bp, lv=lv: torch.ops.tmaf.banded_cont_fwd(x, bp, lv, 1)
                bwd[spec.name] = lambda bp=bp, lv=lv: torch.ops.tmaf.banded_cont_bwd(g, x, bp, lv, 1)
            else:
                fwd[spec.name] = lambda bp=bp, lv=lv: torch.ops.tmaf.banded_fwd(x, bp, lv, 1)
                bwd[spec.name] = lambda bp=bp, lv=lv: torch.ops.tmaf.banded_bwd(g, x, bp, lv, 1)
            specs[spec.name] = spec
    sync = synchronizer(device)
    traffic = {"fwd": 2 * x.numel() * x.element_size(), "bwd": 3 * x.numel() * x.element_size()}
    rows: list[dict] = []
    for t in threads:
        torch.set_num_threads(t)
        for phase, fns, base in (("fwd", fwd, RELU_FWD), ("bwd", bwd, RELU_BWD)):
            t0 = time.perf_counter()
            timings = time_interleaved(fns, repeats=repeats, warmup=warmup, sync=sync,
                                       min_sample_s=min_sample_s)
            new = [{"shape": shape.name, "layout": shape.layout, "threads": t, "seed": seed,
                    "phase": phase, "candidate": name, "kind": specs[name].kind,
                    "m": specs[name].m, "median_ms": 1e3 * tm.median,
                    "q25_ms": 1e3 * tm.quantile(0.25), "q75_ms": 1e3 * tm.quantile(0.75),
                    "repeats": len(tm.samples), "calls_per_sample": tm.number,
                    "ratio_vs_relu_kernel": paired_ratio(tm, timings[base]),
                    "gbytes_per_s": traffic[phase] / tm.median / 1e9}
                   for name, tm in timings.items()]
            rows += new
            log(f"  kernels {shape.name} {t} thread(s) {phase} in "
                f"{time.perf_counter() - t0:5.1f} s: {base} {new[0]['median_ms']:.3f} ms; "
                + ", ".join(f"{r['candidate']} {r['ratio_vs_relu_kernel']:.2f}x" for r in new[1:]))
    return rows
