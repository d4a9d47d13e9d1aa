"""Learnable-activation libraries timed beside ReLU and tmaf, forward + backward, same run.

``tmaf bench peers [--shapes 64x64x32x32,4096x1024] [--peers a,b] [--repeats N] [--out DIR]``.
Each candidate is one activation module over the same input (channels on dim 1), timed on a
forward and a backward of a fixed upstream gradient (input and parameter gradients), interleaved
with ``nn.ReLU`` in the same rounds: the ratio is a paired median (:mod:`.timing`). The peers are
optional (``pip install --no-deps`` of the versions in ``tmaf_lab.peer_activations.INSTALL``; their own
pins conflict with this torch): a peer whose package is missing is listed as not installed, never an error.

The peers and their settings: :mod:`tmaf_lab.peer_activations`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from tmaf_lab import peer_activations as peer_lib
from tmaf_lab.peer_activations import DISTRIBUTIONS

from .candidates import Shape
from .timing import paired_ratio, synchronizer, time_interleaved


def build_peer(name: str, shape: Shape) -> nn.Module:
    """The peer's activation module for inputs of ``shape`` (channels on dim 1)."""
    C = shape.dims[1]
    return peer_lib.build_peer(name, C, rows=math.prod(shape.dims) // C, conv=len(shape.dims) == 4)


def _tmaf(kind: str, C: int) -> nn.Module:
    import tmaf

    return tmaf.create_act(kind, C)


def candidates(shape: Shape, peers, log) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """name -> module for ReLU, GELU, PReLU, tmaf's kinds and every peer that builds here; and
    name -> why a peer was left out."""
    C = shape.dims[1]
    mods: dict[str, nn.Module] = {"relu": nn.ReLU(), "gelu": nn.GELU(), "prelu": nn.PReLU(C)}
    for kind in ("diagonal", "tridiagonal", "continuous_diagonal", "continuous_tridiagonal"):
        mods[f"tmaf {kind}"] = _tmaf(kind, C)
    missing = {}
    for name in peers:
        try:
            mods[name] = build_peer(name, shape)
        except peer_lib.PeerMissing as e:
            missing[name] = str(e)
            log(f"  {name}: left out ({e})")
    return mods, missing


def run_shape(shape: Shape, peers, repeats: int, log) -> tuple[list[dict], dict[str, str]]:
    gen = torch.Generator().manual_seed(0)
    x = shape.randn(torch.device("cpu"), gen, requires_grad=True)
    g = shape.randn(torch.device("cpu"), gen)
    mods, missing = candidates(shape, peers, log)

    def step(mod: nn.Module) -> Callable[[], None]:
        params = [p for p in mod.parameters() if p.requires_grad]

        def call() -> None:
            x.grad = None
            for p in params:
                p.grad = None
            mod(x).backward(g)
        return call

    fns = {}
    for name, mod in mods.items():
        try:
            t0 = time.perf_counter()
            step(mod)()
            log(f"  ready {name:<28} first call {time.perf_counter() - t0:8.3f} s")
            fns[name] = step(mod)
        except Exception as e:  # noqa: BLE001 - a peer that fails on this input is reported
            missing[name] = f"fails on {shape.name}: {type(e).__name__}: {e}"
            log(f"  {name}: left out ({missing[name]})")
    timings = time_interleaved(fns, repeats=repeats, warmup=1, sync=synchronizer(x.device),
                               min_sample_s=0.02)
    base = timings["relu"]
    rows = [{"shape": shape.name, "candidate": name, "median_ms": 1e3 * t.median,
             "ratio_vs_relu": paired_ratio(t, base), "repeats": len(t.samples),
             "parameters": sum(p.numel() for p in mods[name].parameters())}
            for name, t in timings.items()]
    return rows, missing


def versions(peers) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"torch": torch.__version__}
    for name in peers:
        dist = DISTRIBUTIONS[name]
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def markdown(rows: list[dict], missing: dict[str, dict[str, str]], env: dict) -> str:
    from tmaf_lab.mdtable import markdown_table

    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    names = list(dict.fromkeys(r["candidate"] for r in rows))
    by = {(r["shape"], r["candidate"]): r for r in rows}
    table = markdown_table(
        ["activation", *(f"{s} fwd+bwd / ReLU" for s in shapes), "parameters (first shape)"],
        [(n, *(f"{by[s, n]['ratio_vs_relu']:.2f}x" if (s, n) in by else "-" for s in shapes),
          str(by[shapes[0], n]["parameters"]) if (shapes[0], n) in by else "-") for n in names],
        align="l" + "r" * (len(shapes) + 1))
    lines = [f"# Learnable activations side by side ({env['threads']} thread(s))", "",
             f"CPU: {env['cpu']}; tmaf kernels: {env['tmaf']}; versions: "
             + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".", "",
             f"Command: `{env['command']}`. Paired medians of {env['repeats']} interleaved "
             "rounds against nn.ReLU (forward + backward of a fixed upstream gradient).", "",
             table, ""]
    for shape, miss in missing.items():
        for name, why in miss.items():
            lines.append(f"- {shape}: {name} left out: {why}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import tmaf
    from tmaf_lab.cli import command_main
    from tmaf_lab.files import write_json as _write_json
    from tmaf_lab.runmeta import cpu_model

    def parser() -> argparse.ArgumentParser:
        from tmaf_lab.cli import OneLineErrorParser

        p = OneLineErrorParser(prog="tmaf bench peers",
                               description=__doc__.split("\n\n")[0])
        p.add_argument("--shapes", default="64x64x32x32,4096x1024")
        p.add_argument("--peers", default=",".join(DISTRIBUTIONS))
        p.add_argument("--repeats", type=int, default=7)
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--out", type=Path, default=None)
        return p

    def run(a) -> int:
        peers = [p for p in a.peers.split(",") if p]
        unknown = [p for p in peers if p not in DISTRIBUTIONS]
        if unknown:
            raise ValueError(f"--peers: unknown {unknown}; expected names from "
                             f"{', '.join(DISTRIBUTIONS)}")
        torch.set_num_threads(a.threads)
        log = print
        rows, missing = [], {}
        for text in a.shapes.split(","):
            shape = Shape.parse(text)
            log(f"shape {shape.name}")
            new, miss = run_shape(shape, peers, a.repeats, log)
            rows += new
            missing[shape.name] = miss
            log("  " + ", ".join(f"{r['candidate']} {r['ratio_vs_relu']:.2f}x" for r in new[1:]))
        env = {"cpu": cpu_model(), "tmaf": tmaf.native_status(), "threads": a.threads,
               "versions": versions(peers), "repeats": a.repeats,
               "command": " ".join(["tmaf bench peers", *(argv or sys.argv[1:])])}
        text = markdown(rows, missing, env)
        print(text)
        if a.out is not None:
            a.out.mkdir(parents=True, exist_ok=True)
            (a.out / "peers.md").write_text(text)
            _write_json(a.out / "peers.json", {"rows": rows, "missing": missing, "env": env})
        return 0

    return command_main(parser, run, argv)

