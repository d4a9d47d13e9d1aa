"""Learnable-activation libraries timed beside ReLU and tmaf, forward + backward, same run.

``tmaf bench peers [--shapes 64x64x32x32,4096x1024] [--peers a,b] [--repeats N] [--out DIR]``.
Each candidate is one activation module over the same input (channels on dim 1), timed on a
forward and a backward of a fixed upstream gradient (input and parameter gradients), interleaved
with ``nn.ReLU`` in the same rounds: the ratio is a paired median (:mod:`.timing`). The peers are
optional (``pip install --no-deps`` of the versions below; their own pins conflict with this
torch): a peer whose package is missing is listed as not installed, never an error.

- ``deepbspline``: DeepSplines' DeepBSpline (Bohra et al.), per-channel linear B-splines,
  ``size=11`` knots on [-2, 2] (tmaf's grid, 10 intervals), ReLU start;
- ``aplu``, ``pau``: torch-activation's APLU (2 hinges) and PAU (Padé, degrees 5/4);
- ``rational``: rational-activations' Rational (degrees 5/4, leaky-ReLU start, CPU path);
- ``fourier``, ``hermite``: torchortho's activations (degree 8);
- ``kan``: pykan's KANLayer(C, C) (a dense spline layer, grid 5, order 3) on the (rows, C)
  view, loaded from its file without the package's optional imports (sklearn, sympy, yaml are
  needed only by ``kan.utils``; the layer uses one helper of it, for ``sparse_init``); only
  where rows x C x C <= 2^28 (its per-call tensors are rows x C x C).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import sys
import time
import types
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .candidates import Shape
from .timing import paired_ratio, synchronizer, time_interleaved

#: peer -> PyPI distribution whose version is recorded
DISTRIBUTIONS = {"deepbspline": "deepsplines", "aplu": "torch-activation",
                 "pau": "torch-activation", "rational": "rational-activations",
                 "fourier": "torchortho", "hermite": "torchortho", "kan": "pykan"}
INSTALL = ("pip install --no-deps deepsplines==1.0.0 torch-activation==1.0.0 "
           "rational-activations==0.2.0 torchortho==0.1.2 pykan==0.2.8")
KAN_MAX = 1 << 28


class PeerMissing(RuntimeError):
    """The peer's package is not installed (or does not import here)."""


def _quiet_import(name: str):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - any import failure means: not available here
        raise PeerMissing(f"{name}: {type(e).__name__}: {e}") from None


def _kan_layer_class():
    """pykan's KANLayer, loaded from kan/KANLayer.py with kan.spline and a stand-in for
    kan.utils (whose imports pull sklearn, sympy and yaml) that only fails if used."""
    spec = importlib.util.find_spec("kan")
    if spec is None or not spec.submodule_search_locations:
        raise PeerMissing("kan: pykan is not installed")
    root = Path(spec.submodule_search_locations[0])
    pkg = types.ModuleType("_tmaf_kan")
    pkg.__path__ = [str(root)]
    utils = types.ModuleType("_tmaf_kan.utils")

    def sparse_mask(*args, **kwargs):
        raise RuntimeError("pykan's sparse_init needs kan.utils (sklearn, sympy, yaml)")

    utils.sparse_mask = sparse_mask
    sys.modules.setdefault("_tmaf_kan", pkg)
    sys.modules.setdefault("_tmaf_kan.utils", utils)
    for name in ("spline", "KANLayer"):
        full = f"_tmaf_kan.{name}"
        if full not in sys.modules:
            sub = importlib.util.spec_from_file_location(full, root / f"{name}.py")
            mod = importlib.util.module_from_spec(sub)
            sys.modules[full] = mod
            try:
                sub.loader.exec_module(mod)
            except Exception as e:  # noqa: BLE001
                del sys.modules[full]
                raise PeerMissing(f"kan.{name}: {type(e).__name__}: {e}") from None
    return sys.modules["_tmaf_kan.KANLayer"].KANLayer


class _RowsOf(nn.Module):
    """Runs ``inner`` on the (rows, C) view of a channels-on-dim-1 input and returns the input's
    shape; ``first`` keeps the first output of a module that returns a tuple (pykan)."""

    def __init__(self, inner: nn.Module, first: bool = False):
        super().__init__()
        self.inner, self.first = inner, first

    def forward(self, x):
        rows = x.movedim(1, -1).reshape(-1, x.shape[1])
        y = self.inner(rows)
        y = y[0] if self.first else y
        return y.reshape(*x.movedim(1, -1).shape).movedim(-1, 1)


def build_peer(name: str, shape: Shape) -> nn.Module:
    """The peer's activation module for inputs of ``shape`` (channels on dim 1)."""
    C, four_d = shape.dims[1], len(shape.dims) == 4
    if name == "deepbspline":
        mod = _quiet_import("deepsplines.ds_modules")
        return mod.DeepBSpline("conv" if four_d else "fc", C, size=11, range_=4, init="relu")
    if name in ("aplu", "pau"):
        ta = _quiet_import("torch_activation")
        return ta.APLU(n_hinges=2) if name == "aplu" else ta.PAU(m=5, n=4)
    if name == "rational":
        rt = _quiet_import("rational.torch")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return rt.Rational(approx_func="leaky_relu", degrees=(5, 4), cuda=False)
    if name in ("fourier", "hermite"):
        to = _quiet_import("torchortho")
        cls = to.FourierActivation if name == "fourier" else to.HermiteActivation
        return cls(8)
    if name == "kan":
        rows = math.prod(shape.dims) // C
        if rows * C * C > KAN_MAX:
            raise PeerMissing(f"kan: rows x C x C = {rows * C * C} > {KAN_MAX} (memory)")
        return _RowsOf(_kan_layer_class()(in_dim=C, out_dim=C, num=5, k=3), first=True)
    raise ValueError(f"unknown peer {name!r}; expected one of {', '.join(DISTRIBUTIONS)}")


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
        except PeerMissing as e:
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


if __name__ == "__main__":
    raise SystemExit(main())
