"""The LibTorch stable-ABI route against today's tmaf._C, side by side in one process.

    python results/native-build/stable-abi/measure.py [NAME]   (writes NAME, default results.json,
                                                                beside it)

Today's build: tmaf._C, the regular C++ ABI of the torch it was built for, autograd registered
in C++ for the Autograd key. The stable variant: build.sh (results/native-build/stable-abi/ops_stable.cpp,
only the stable C API of torch >= 2.10, so one binary would load under any later torch), the same
kernel sources, task geometry and ordered reduction, its autograd registered in Python with
torch.library.register_autograd. Cases: the operators at (256, 512) float32 (diagonal TMAF:
b = 0, m = 9 shared breakpoints), forward (under torch.no_grad()) and forward+backward per
call; a training step of a 3-layer MLP (batch 256, width 512, two TMAF layers, SGD). Both
builds must first give identical outputs and gradients. Rounds alternate the builds (order
flipped each round); per round each case runs `calls` times; medians over rounds, and the
median of the per-round ratios. One torch thread.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

import tmaf

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
N, C, M = 256, 512, 9


def load_stable() -> str:
    built = subprocess.run([str(HERE / "build.sh")], check=True, capture_output=True, text=True)
    so = built.stdout.split()[-1]
    torch.ops.load_library(str(ROOT / so))

    def setup_context(ctx, inputs, output):
        x, bp, lv, cd = inputs
        ctx.save_for_backward(x, bp, lv)
        ctx.channel_dim = cd

    def backward(ctx, grad):
        x, bp, lv = ctx.saved_tensors
        gx, gl = torch.ops.tmaf_stable.banded_bwd(grad.contiguous(), x, bp, lv, ctx.channel_dim)
        return gx, None, gl, None

    torch.library.register_autograd("tmaf_stable::banded_fwd", backward, setup_context=setup_context)
    return so


OPS = {"today": lambda: torch.ops.tmaf.banded_fwd, "stable": lambda: torch.ops.tmaf_stable.banded_fwd}


class Act(nn.Module):
    """Diagonal TMAF on (N, C) through one of the two builds' operator."""

    def __init__(self, op, bp: torch.Tensor, levels: torch.Tensor):
        super().__init__()
        self.op = op
        self.register_buffer("bp", bp.clone())
        self.levels = nn.Parameter(levels.clone())

    def forward(self, x):
        return self.op(x, self.bp, self.levels, 1)


def check_identical(bp, lv) -> None:
    x = torch.randn(N, C)
    gy = torch.randn(N, C)
    got = {}
    for name, op in OPS.items():
        xi, li = x.clone().requires_grad_(), lv.clone().requires_grad_()
        y = op()(xi, bp, li, 1)
        y.backward(gy)
        got[name] = (y.detach(), xi.grad, li.grad)
    for a, b in zip(*got.values(), strict=True):
        assert torch.equal(a, b), "the stable build disagrees with tmaf._C"


def timed(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6  # microseconds per call


def compare(cases: dict, calls: int, rounds: int, warmup: int) -> dict:
    for fn in cases.values():
        timed(fn, warmup)
    per = {k: [] for k in cases}
    names = list(cases)
    for r in range(rounds):
        for k in names if r % 2 == 0 else names[::-1]:
            per[k].append(timed(cases[k], calls))
    ratios = [s / t for s, t in zip(per["stable"], per["today"], strict=True)]
    return {"median_us": {k: statistics.median(v) for k, v in per.items()},
            "stable_over_today_median_of_round_ratios": statistics.median(ratios),
            "round_ratios_min_max": [min(ratios), max(ratios)], "per_round_us": per}


def main() -> None:
    so = load_stable()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    bp = tmaf.DiagonalTMAF(C).breakpoints.detach().clone()
    assert bp.shape == (M,)
    lv = torch.randn(C, 1, M + 1)
    check_identical(bp, lv)

    x = torch.randn(N, C, requires_grad=True)
    gy = torch.randn(N, C)
    levels = {k: lv.clone().requires_grad_() for k in OPS}

    def fwd(k):  # inference: under torch.no_grad()
        op = OPS[k]()

        def call():
            with torch.no_grad():
                return op(x, bp, levels[k], 1)
        return call

    def fwd_bwd(k):
        op = OPS[k]()
        return lambda: op(x, bp, levels[k], 1).backward(gy)

    def mlp_step(k):
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(C, C), Act(OPS[k](), bp, lv), nn.Linear(C, C), Act(OPS[k](), bp, lv),
                              nn.Linear(C, 10))
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        data, target = torch.randn(N, C), torch.randint(0, 10, (N,))

        def step():
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(data), target).backward()
            opt.step()
        return step

    load = [round(v, 2) for v in os.getloadavg()]
    results = {
        "forward (256, 512)": compare({k: fwd(k) for k in OPS}, calls=400, rounds=21, warmup=100),
        "forward+backward (256, 512)": compare({k: fwd_bwd(k) for k in OPS}, calls=200, rounds=21, warmup=50),
        "MLP step (batch 256, width 512, 2 TMAF layers)": compare({k: mlp_step(k) for k in OPS}, calls=20,
                                                                  rounds=21, warmup=10),
    }
    record = {
        "command": " ".join(["python", "results/native-build/stable-abi/measure.py", *sys.argv[1:]]),
        "git_commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip(),
        "torch": torch.__version__, "python": platform.python_version(),
        "cpu": next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                     if ln.startswith("model name")), "?"),
        "threads": torch.get_num_threads(), "today": tmaf.native_status(), "stable_library": so,
        "stable_library_bytes": (ROOT / so).stat().st_size,
        "today_library_bytes": Path(tmaf._C.__file__).stat().st_size,
        "load_average_before_after": [load, [round(v, 2) for v in os.getloadavg()]],
        "identical_outputs_and_gradients": True, "results": results,
    }
    name = sys.argv[1] if len(sys.argv) > 1 else "results.json"
    (HERE / name).write_text(json.dumps(record, indent=1) + "\n")
    for case, r in results.items():
        med = r["median_us"]
        print(f"{case}: today {med['today']:.1f} us, stable {med['stable']:.1f} us, "
              f"stable/today {r['stable_over_today_median_of_round_ratios']:.3f} "
              f"(rounds {r['round_ratios_min_max'][0]:.3f}-{r['round_ratios_min_max'][1]:.3f})")


if __name__ == "__main__":
    sys.exit(main())
