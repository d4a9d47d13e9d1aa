"""Learnable activations from other libraries, as activation modules the lab can train and time.

The peers are optional (``pip install --no-deps`` of the versions in :data:`INSTALL`; their own
pins conflict with this torch): building one whose package is missing raises
:class:`PeerMissing`, which the benchmark reports as left out and the training commands report
as a clear error. Every peer is wrapped in :class:`PeerActivation`, which takes any input with
channels on dim 1 and marks its parameters as learned-activation parameters (the weights'
learning rate, no weight decay, as for TMAF and PReLU).

- ``deepbspline``: DeepSplines' DeepBSpline (Bohra et al.), per-channel linear B-splines,
  ``size=11`` knots on [-2, 2] (about tmaf's grid: 9 breakpoints on [-2, 2]), ReLU start;
- ``aplu``, ``pau``: torch-activation's APLU (2 hinges) and PAU (Padé, degrees 5/4);
- ``rational``: rational-activations' Rational (degrees 5/4, leaky-ReLU start, CPU path);
- ``fourier``, ``hermite``: torchortho's activations (degree 8);
- ``kan``: pykan's KANLayer(C, C) (a dense spline layer, grid 5, order 3) on the (rows, C)
  view, loaded from its file without the package's optional imports (sklearn, sympy, yaml are
  needed only by ``kan.utils``; the layer uses one helper of it, for ``sparse_init``); only
  where rows x C x C <= 2^28 (its per-call tensors are rows x C x C).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import warnings
from pathlib import Path

from torch import nn

#: peer -> PyPI distribution whose version is recorded
DISTRIBUTIONS = {"deepbspline": "deepsplines", "aplu": "torch-activation",
                 "pau": "torch-activation", "rational": "rational-activations",
                 "fourier": "torchortho", "hermite": "torchortho", "kan": "pykan"}
INSTALL = ("pip install --no-deps deepsplines==1.0.0 torch-activation==1.0.0 "
           "rational-activations==0.2.0 torchortho==0.1.2 pykan==0.2.8")
KAN_MAX = 1 << 28


class PeerMissing(RuntimeError):
    """The peer's package is not installed (or does not import here)."""


def is_peer_name(name: str) -> bool:
    return name in DISTRIBUTIONS


def _quiet_import(name: str):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - any import failure means: not available here
        raise PeerMissing(f"{name}: {type(e).__name__}: {e}; install the peers with "
                          f"{INSTALL}") from None


def _kan_layer_class():
    """pykan's KANLayer, loaded from kan/KANLayer.py with kan.spline and a stand-in for
    kan.utils (whose imports pull sklearn, sympy and yaml) that only fails if used."""
    spec = importlib.util.find_spec("kan")
    if spec is None or not spec.submodule_search_locations:
        raise PeerMissing(f"kan: pykan is not installed; install the peers with {INSTALL}")
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


class PeerActivation(nn.Module):
    """A peer's module on an input with channels on dim 1: elementwise peers see the input as
    it is; per-channel and dense ones (``rows``) see its (rows, C) view and give back the
    input's shape; ``first`` keeps the first output of a module that returns a tuple (pykan)."""

    def __init__(self, name: str, inner: nn.Module, channels: int, rows: bool,
                 first: bool = False):
        super().__init__()
        self.name, self.channels, self.rows, self.first = name, channels, rows, first
        self.inner = inner

    def forward(self, x):
        if x.dim() < 2 or x.shape[1] != self.channels:
            raise ValueError(f"{self.name}: expected an input with {self.channels} channels on "
                             f"dim 1, got shape {tuple(x.shape)}")
        if not self.rows:
            return self.inner(x)
        moved = x.movedim(1, -1)
        y = self.inner(moved.reshape(-1, self.channels))
        y = y[0] if self.first else y
        return y.reshape(moved.shape).movedim(-1, 1)

    def extra_repr(self) -> str:
        return f"{self.name}, channels={self.channels}"


def build_peer(name: str, channels: int, rows: int | None = None,
               conv: bool = False) -> PeerActivation:
    """The peer's activation for ``channels`` channels on dim 1; ``rows``, where known, is the
    number of (rows, C) rows per call (pykan's layer is left out above ``KAN_MAX``); ``conv``:
    the input is (N, C, H, W), which DeepBSpline takes in its own ``conv`` mode."""
    if name == "deepbspline":
        mod = _quiet_import("deepsplines.ds_modules")
        inner = mod.DeepBSpline("conv" if conv else "fc", channels, size=11, range_=4,
                                init="relu")
        return PeerActivation(name, inner, channels, rows=not conv)
    if name in ("aplu", "pau"):
        ta = _quiet_import("torch_activation")
        inner = ta.APLU(n_hinges=2) if name == "aplu" else ta.PAU(m=5, n=4)
        return PeerActivation(name, inner, channels, rows=False)
    if name == "rational":
        rt = _quiet_import("rational.torch")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inner = rt.Rational(approx_func="leaky_relu", degrees=(5, 4), cuda=False)
        return PeerActivation(name, inner, channels, rows=False)
    if name in ("fourier", "hermite"):
        to = _quiet_import("torchortho")
        cls = to.FourierActivation if name == "fourier" else to.HermiteActivation
        return PeerActivation(name, cls(8), channels, rows=False)
    if name == "kan":
        if rows is not None and rows * channels * channels > KAN_MAX:
            raise PeerMissing(f"kan: rows x C x C = {rows * channels * channels} > {KAN_MAX} "
                              "(memory)")
        return PeerActivation(name, _kan_layer_class()(in_dim=channels, out_dim=channels,
                                                       num=5, k=3),
                              channels, rows=True, first=True)
    raise ValueError(f"unknown peer {name!r}; expected one of {', '.join(DISTRIBUTIONS)}")
