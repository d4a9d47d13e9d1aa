"""The compiled TMAF kernels alone vs ReLU's forward and backward ops, (64, 64, 32, 32) float32.

Times the torch.compile'd fused forward and backward of diagonal TMAF (default 9 breakpoints)
without autograd, against torch.relu and aten.threshold_backward; median of 15 calls.
Run from the repository root:
    python scripts/bench_fastpath_kernels.py >> results/bench/fastpath-64x64x32x32/kernels.txt
"""

import statistics
import time

import torch

import tmaf
from tmaf import _compiled

torch.manual_seed(0)
x0 = torch.randn(64, 64, 32, 32)
g0 = torch.randn_like(x0)
layer = tmaf.DiagonalTMAF(64)
tables = _compiled.tables(x0, layer.breakpoints, layer.levels.detach()[:, None])
fwd, bwd = (_compiled.compiled_kernel(k) for k in (_compiled.select_fwd, _compiled.select_bwd))
calls = {
    "tmaf fused forward": lambda: fwd(x0, *tables, 1),
    "tmaf fused backward": lambda: bwd(g0, x0, *tables, 1),
    "torch.relu": lambda: torch.relu(x0),
    "aten.threshold_backward": lambda: torch.ops.aten.threshold_backward(g0, x0, 0.0),
}
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of 15 calls")
for name, fn in calls.items():
    fn()
    fn()
    ts = []
    for _ in range(15):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    print(f"  {name:24s} {statistics.median(ts) * 1e3:6.2f} ms")
