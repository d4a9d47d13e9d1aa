"""TMAF fast path vs nn.ReLU on a (64, 64, 32, 32) float32 tensor, forward+backward.

Two groups, each timed in interleaved rounds against ReLU in the same run (median of 15 rounds):
ReLU vs the compiled backend, and ReLU vs the eager backend. The groups are separate because the
eager backend's large temporaries slow the next candidate's call when mixed into one rotation.
Run from the repository root:
    python scripts/bench_fastpath_measure.py > results/bench/fastpath-64x64x32x32/output.txt
"""

import statistics
import time

import torch

import tmaf

torch.manual_seed(0)
x0 = torch.randn(64, 64, 32, 32)
g0 = torch.randn_like(x0)


def step(m):
    x = x0.detach().requires_grad_()
    m(x).backward(g0)


def group(backend: str, rounds: int = 15) -> None:
    mods = {"relu": torch.nn.ReLU(),
            f"diagonal/{backend}": tmaf.DiagonalTMAF(64, backend=backend),
            f"tridiagonal/{backend}": tmaf.TridiagonalTMAF(64, backend=backend)}
    for name, m in mods.items():
        t = time.perf_counter()
        step(m)
        step(m)
        print(f"{name}: first two calls {time.perf_counter() - t:.1f} s", flush=True)
    times = {n: [] for n in mods}
    names = list(mods)
    for r in range(rounds):
        for n in names[r % 3:] + names[:r % 3]:
            t = time.perf_counter()
            step(mods[n])
            times[n].append(time.perf_counter() - t)
    base = statistics.median(times["relu"])
    for n in mods:
        med = statistics.median(times[n])
        print(f"  {n:22s} {med * 1e3:8.1f} ms  {med / base:5.2f}x ReLU (same group)")


print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, (64, 64, 32, 32) float32, "
      "forward+backward, median of 15 interleaved rounds")
group("compiled")
group("eager")
