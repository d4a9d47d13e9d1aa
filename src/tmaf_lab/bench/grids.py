"""Per-channel grids against one shared grid: does a calibrated layer run at full speed?

``tmaf.calibrate`` gives every channel its own breakpoints, a (C, m) buffer instead of (m,).
This benchmark times the same layer both ways, interleaved, with ReLU alongside:

- ``fwd`` / ``bwd``: the native operators alone (``torch.ops.tmaf.banded_fwd`` /
  ``banded_bwd``), as in ``benchmarks/kernels.py``;
- ``module``: forward+backward through ``tmaf.DiagonalTMAF`` / ``TridiagonalTMAF`` (the
  ``auto`` backend, native on CPU), the path a model takes;
- ``module-eager`` / ``module-compiled``: the same through the ``eager`` and ``compiled``
  backends (``--backends``), which a user selects on machines without the native build.

The per-channel grid of channel c is the shared grid scaled by a factor in [0.25, 4] (0 stays a
breakpoint), so the inputs fall into different intervals per channel, as after calibration.
The result to read is ``per_channel / shared``, the paired per-round ratio: 1.0 is full speed.

    tmaf bench grids                 # the six speed-target shapes, m = 9, 1 thread
    tmaf bench grids --dry-run       # tiny shapes, seconds (tested; --backends eager)

Writes ``grids.csv``, ``summary.md`` and ``config.json`` (command, commit, versions, CPU model,
native ISA) to ``--out`` (default results/bench/grids).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from dataclasses import dataclass

import torch

from tmaf_lab.cli import command_main
from tmaf_lab.lists import parse_list

from .candidates import Shape, breakpoints
from .timing import paired_ratio, synchronizer, time_interleaved

SHAPES = ("64x64x32x32", "128x64x32x32", "64x256x16x16", "4096x1024", "256x512",
          "32x64x56x56-cl")
DRY_SHAPES = ("2x8x4x4", "16x8")
KINDS = ("diagonal", "tridiagonal")
BACKENDS = ("eager", "compiled")  # module phases beside the native one (``--backends``)
FIELDS = ("shape", "layout", "kind", "m", "phase", "relu_ms", "shared_ms", "per_channel_ms",
          "shared_vs_relu", "per_channel_vs_relu", "per_channel_vs_shared")


@dataclass(frozen=True)
class GridsConfig:
    shapes: tuple[str, ...] = SHAPES
    m: int = 9
    threads: int = 1
    repeats: int = 15
    seed: int = 0
    out: str = "results/bench/grids"
    dry_run: bool = False
    backends: tuple[str, ...] = BACKENDS


def per_channel_grid(shared: torch.Tensor, channels: int, gen: torch.Generator) -> torch.Tensor:
    """(C, m): the shared grid scaled per channel by 4 ** u, u uniform in [-1, 1]."""
    scale = 4.0 ** (torch.rand(channels, 1, generator=gen, dtype=torch.float64) * 2 - 1)
    return (shared.double()[None, :] * scale).to(shared.dtype)


def _module(kind: str, channels: int, bp: torch.Tensor, levels: torch.Tensor,
            backend: str | None = None):
    import tmaf

    cls = tmaf.DiagonalTMAF if kind == "diagonal" else tmaf.TridiagonalTMAF
    mod = cls(channels, breakpoints=bp, init="random", backend=backend)
    with torch.no_grad():
        mod.levels.copy_(levels.view_as(mod.levels))
    return mod


def time_shape(shape: Shape, kind: str, cfg: GridsConfig) -> list[dict]:
    """Rows for phases fwd, bwd (native operators), module and module-<backend> (fwd+bwd) of
    one shape and kind."""
    gen = torch.Generator().manual_seed(cfg.seed)
    x, g = shape.randn(torch.device("cpu"), gen), shape.randn(torch.device("cpu"), gen)
    C, b = shape.dims[1], 0 if kind == "diagonal" else 1
    shared = breakpoints(cfg.m)
    grids = {"shared": shared, "per_channel": per_channel_grid(shared, C, gen)}
    lv = torch.rand(C, 2 * b + 1, cfg.m + 1, generator=gen) * 2 - 0.5
    y = torch.relu(x)
    ops = {"fwd": {"relu": lambda: torch.relu(x)},
           "bwd": {"relu": lambda: torch.ops.aten.threshold_backward(g, y, 0)}}
    for name, bp in grids.items():
        ops["fwd"][name] = lambda bp=bp: torch.ops.tmaf.banded_fwd(x, bp, lv, 1)
        ops["bwd"][name] = lambda bp=bp: torch.ops.tmaf.banded_bwd(g, x, bp, lv, 1)
    xr = x.detach().clone().requires_grad_(True)
    relu = torch.nn.ReLU()

    def fwd_bwd(mod):
        def run():
            xr.grad = None
            for p in mod.parameters():
                p.grad = None
            mod(xr).backward(g)
        return run

    for phase, backend in (("module", None), *((f"module-{b}", b) for b in cfg.backends)):
        ops[phase] = {"relu": fwd_bwd(relu), **{name: fwd_bwd(_module(kind, C, bp, lv, backend))
                                                for name, bp in grids.items()}}
    rows = []
    sync = synchronizer(torch.device("cpu"))
    for phase, fns in ops.items():
        t = time_interleaved(fns, repeats=cfg.repeats, warmup=2, sync=sync,
                             min_sample_s=0.0 if cfg.dry_run else 0.01)
        rows.append({"shape": shape.name, "layout": shape.layout, "kind": kind, "m": cfg.m,
                     "phase": phase, "relu_ms": 1e3 * t["relu"].median,
                     "shared_ms": 1e3 * t["shared"].median,
                     "per_channel_ms": 1e3 * t["per_channel"].median,
                     "shared_vs_relu": paired_ratio(t["shared"], t["relu"]),
                     "per_channel_vs_relu": paired_ratio(t["per_channel"], t["relu"]),
                     "per_channel_vs_shared": paired_ratio(t["per_channel"], t["shared"])})
    return rows


def check_same_results(shape: Shape, kind: str, cfg: GridsConfig) -> None:
    """The per-channel native path must equal the eager backend on the same grids."""
    import tmaf

    gen = torch.Generator().manual_seed(cfg.seed + 1)
    x = shape.randn(torch.device("cpu"), gen)
    C = shape.dims[1]
    bp = per_channel_grid(breakpoints(cfg.m), C, gen)
    mod = _module(kind, C, bp, torch.rand(C, 1 if kind == "diagonal" else 3, cfg.m + 1,
                                          generator=gen))
    want = tmaf.functional.banded_tmaf(x, bp, mod.levels.view(C, -1, cfg.m + 1), 1, "eager")
    got = mod(x)
    if not torch.allclose(got, want, rtol=1e-5, atol=1e-6):
        raise RuntimeError(f"grids: {kind} {shape.name}: per-channel native output differs from "
                           f"eager by {float((got - want).abs().max()):.3g}")


def summary_table(rows: list[dict]) -> str:
    out = ["| shape | kind | phase | ReLU ms | shared / ReLU | per-channel / ReLU | "
           "per-channel / shared |", "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['shape']} | {r['kind']} | {r['phase']} | {r['relu_ms']:.3f} | "
                   f"{r['shared_vs_relu']:.2f}x | {r['per_channel_vs_relu']:.2f}x | "
                   f"{r['per_channel_vs_shared']:.2f}x |")
    return "\n".join(out) + "\n"


def _parser() -> argparse.ArgumentParser:
    from tmaf_lab.cli import OneLineErrorParser

    d = GridsConfig()
    p = OneLineErrorParser(prog="tmaf bench grids", description=__doc__.split("\n")[0])
    p.add_argument("--shapes", default=",".join(d.shapes), help="comma list (default: the six)")
    p.add_argument("--m", type=int, default=d.m, help="breakpoints (default %(default)s)")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="torch CPU threads (default %(default)s, as in the committed tables)")
    p.add_argument("--repeats", type=int, default=d.repeats)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", default=d.out)
    p.add_argument("--backends", default=None,
                   help="comma list of module backends timed beside native, from "
                        f"{','.join(BACKENDS)} (default: both; --dry-run: eager); '' for none")
    p.add_argument("--dry-run", action="store_true", help="tiny shapes, 3 repeats")
    return p


def parse_args(argv: list[str]) -> GridsConfig:
    return config_of(_parser().parse_args(argv))


def config_of(args) -> GridsConfig:
    for name in ("m", "threads", "repeats"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    shapes = parse_list(args.shapes, what="shapes", example="64x64x32x32", distinct=False)
    for s in shapes:
        Shape.parse(s)
    text = args.backends if args.backends is not None else (
        "eager" if args.dry_run else ",".join(BACKENDS))
    try:
        backends = parse_list(text, what="backends", choices=BACKENDS, allow_empty=True)
    except ValueError as e:
        raise ValueError(f"--backends: {e}") from None
    if args.dry_run:
        shapes, args.repeats = DRY_SHAPES, 3
    return GridsConfig(shapes, args.m, args.threads, args.repeats, args.seed, args.out,
                       args.dry_run, backends)


def run(cfg: GridsConfig, argv: list[str]) -> list[dict]:
    import tmaf
    from tmaf_lab.files import atomic_write_text, write_json
    from tmaf_lab.runmeta import check_writable, save_config

    if not tmaf.native_available():
        raise RuntimeError(f"grids: the native operators are not available ({tmaf.native_status()})")
    out = check_writable(cfg.out)
    record = save_config(out, cfg, ["tmaf", "bench", "grids", *argv], "cpu")
    record["environment"]["native_status"] = tmaf.native_status()
    write_json(out / "config.json", record)
    torch.set_num_threads(cfg.threads)
    rows, t0 = [], time.perf_counter()
    for text in cfg.shapes:
        shape = Shape.parse(text)
        for kind in KINDS:
            if "compiled" in cfg.backends:
                # fresh compile caches: past torch._dynamo's recompile limit (8 per function)
                # the compiled backend would silently run its functions uncompiled
                torch._dynamo.reset()
            check_same_results(shape, kind, cfg)
            new = time_shape(shape, kind, cfg)
            rows += new
            print(" ".join(f"{r['shape']} {kind} {r['phase']}: per-channel/shared "
                           f"{r['per_channel_vs_shared']:.2f}x;" for r in new), flush=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()}
                for r in rows)
    atomic_write_text(out / "grids.csv", buf.getvalue())
    table = summary_table(rows)
    atomic_write_text(out / "summary.md", f"# Per-channel vs shared grids (native, m = {cfg.m}, "
                      f"{cfg.threads} thread(s), {time.perf_counter() - t0:.0f} s)\n\n{table}")
    print(table)
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    def grids(args) -> int:
        try:
            run(config_of(args), argv)
        except RuntimeError as e:  # no native operators, or a backend disagreed
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0

    return command_main(_parser, grids, argv)
