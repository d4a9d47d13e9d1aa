"""``nn.Module`` front ends of TMAF: drop-in replacements for ``nn.ReLU`` (docs/method.md sections 2-3).

    DiagonalTMAF(C)        sigma(y)_i = alpha_i(y_i) y_i                  levels (C, m+1)
    TridiagonalTMAF(C)     band b = 1: mixes each channel with its neighbours   levels (C, 3, m+1)
    BandedTMAF(C, b)       any band; b = C-1 is the full matrix            levels (C, 2b+1, m+1)

``form="continuous"`` makes each term the integral of its levels (docs/method.md section 6):
the same parameters and initialisations, a continuous piecewise-linear activation. With
``parameterization="knot_values"`` the continuous form trains the values of each term at the
breakpoints and its two end slopes instead of the levels (section 6, "Trained through the
values at the breakpoints"): the same function class and kernels, different gradients for the
optimiser; ``levels`` is then computed.

``num_channels=1`` shares one set of levels across all channels (like ``nn.PReLU()``). The Lazy*
variants infer C from the first input. Breakpoints are a (non-trainable) buffer; levels a Parameter.

TorchScript (``torch.jit.script``) is not supported: the forward dispatches between backends and
a custom autograd Function in Python. Scripting a model that holds a TMAF raises a RuntimeError
naming the supported routes, ``torch.compile`` and ``torch.export``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedParameter

from . import _checks
from . import functional as F
from . import matching as _matching
from ._grid import interval_index

__all__ = ["DEFAULT_BREAKPOINTS", "uniform_breakpoints", "BandedTMAF", "DiagonalTMAF",
           "TridiagonalTMAF", "LazyBandedTMAF", "LazyDiagonalTMAF", "LazyTridiagonalTMAF", "INITS",
           "PARAMETERIZATIONS"]

#: The starts; "match" fits the diagonal term to a given function (:mod:`tmaf.matching`).
INITS = ("relu", "identity", "leaky_relu", "random", "match")
#: What a module trains: "levels" (the slopes / values of alpha, default) or, for the
#: continuous form, "knot_values" (each term's values at the breakpoints and its end slopes).
PARAMETERIZATIONS = ("levels", "knot_values")


def uniform_breakpoints(m: int, low: float, high: float) -> Tensor:
    """``m`` equally spaced breakpoints from ``low`` to ``high`` (inclusive), shape (m,)."""
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"tmaf: the number of breakpoints must be an int >= 1, got {m!r}")
    if not (math.isfinite(low) and math.isfinite(high)) or (m > 1 and not low < high):
        raise ValueError(f"tmaf: need finite low < high for breakpoints, got low={low}, high={high}")
    return torch.linspace(low, high, m) if m > 1 else torch.tensor([float(low)])


#: Default grid: 9 breakpoints -2, -1.5, ..., 2 (10 intervals). It contains 0, so "relu" init works,
#: and covers the range where batch-normalised / well-initialised pre-activations mostly fall.
DEFAULT_BREAKPOINTS = uniform_breakpoints(9, -2.0, 2.0)


def _as_breakpoints(breakpoints, num_channels: int | None, dtype) -> Tensor:
    if breakpoints is None:
        breakpoints = DEFAULT_BREAKPOINTS
    if not isinstance(breakpoints, Tensor):
        if not isinstance(breakpoints, Sequence):
            raise TypeError(f"tmaf: breakpoints must be a tensor or a sequence of floats, "
                            f"got {type(breakpoints).__name__}")
        breakpoints = torch.tensor(breakpoints, dtype=torch.get_default_dtype())
    bp = breakpoints.detach().clone().to(dtype=dtype or torch.get_default_dtype())
    _checks.check_breakpoints(bp, num_channels)
    return bp


class BandedTMAF(nn.Module):
    """Banded trainable matrix activation: sigma(y)_i = sum_{|d|<=b} alpha_{i,d}(y_{i+d}) y_{i+d}.

    Args:
        num_channels: C, the size of ``channel_dim`` (1 = one set of levels shared by all channels).
        bandwidth: b >= 0 (0 diagonal, 1 tridiagonal, C-1 full).
        breakpoints: (m,) shared or (C, m) per channel; default :data:`DEFAULT_BREAKPOINTS`.
        init: "relu" (default; ReLU-exact, off-diagonals 0), "identity", "leaky_relu" (slope
            ``negative_slope`` left of 0), "random" (all levels ~ U(-init_scale, init_scale)),
            "match" (the diagonal term fitted to ``match``, off-diagonals 0; docs/method.md
            section 7): the fit's max error on the grid's range is then ``match_error``.
        match: with ``init="match"``, the function to fit: a name of
            :data:`tmaf.matching.FUNCTIONS` ("gelu", "gelu_tanh", "silu", "relu2", ...) or a
            callable Tensor -> Tensor, elementwise (e.g. the activation module being replaced).
            A callable is kept (never as a submodule: no parameters or state_dict keys) so that
            ``reset_parameters()`` can refit; pickling the whole module needs it picklable.
        channel_dim: channel axis of the input (1 for (N, C, ...), -1 for (N, ..., C)).
        backend: None (global :func:`tmaf.set_backend`) or one of ``tmaf.BACKENDS``.
        form: "jump" (alpha(y) y, the paper's; default) or "continuous" (the integral of the
            levels: continuous piecewise linear, the levels its slopes).
        parameterization: "levels" (default) or "knot_values" (continuous form only): train
            ``knot_values`` (C, [2b+1,] m), each term's values at the breakpoints, and
            ``end_slopes`` (C, [2b+1,] 2); ``levels`` is then computed from them.
    Shape: input (..., C, ...) -> output of the same shape and dtype.
    """

    def __init__(self, num_channels: int, bandwidth: int, breakpoints=None, init: str = "relu",
                 channel_dim: int = 1, negative_slope: float = 0.01, init_scale: float = 1.0,
                 backend: str | None = None, device=None, dtype=None, form: str = "jump",
                 parameterization: str = "levels", match=None) -> None:
        super().__init__()
        for name, v, lo in (("num_channels", num_channels, 1), ("bandwidth", bandwidth, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"tmaf: {name} must be an int >= {lo}, got {v!r}")
        if num_channels > 1 and bandwidth > num_channels - 1:
            raise ValueError(f"tmaf: bandwidth {bandwidth} exceeds num_channels - 1 = "
                             f"{num_channels - 1} (the full matrix)")
        if init not in INITS:
            raise ValueError(f"tmaf: unknown init {init!r}; expected one of {INITS}")
        if init == "match":
            _matching.resolve(match)
        elif match is not None:
            raise ValueError(f"tmaf: match= is read only with init='match'; got init={init!r}")
        # not registered as a submodule even when it is an nn.Module (the replaced activation)
        object.__setattr__(self, "_match", match)
        #: max |sigma(y) - f(y)| of the init="match" fit over the grid's range (None otherwise)
        self.match_error: float | None = None
        if backend is not None:
            F._validate_backend(backend)
        self.form = F.validate_form(form)
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"tmaf: unknown parameterization {parameterization!r}; expected one "
                             f"of {PARAMETERIZATIONS}")
        if parameterization == "knot_values" and form != "continuous":
            raise ValueError(f"tmaf: parameterization='knot_values' is the continuous form's "
                             f"(values at the breakpoints); got form={form!r}")
        self.parameterization = parameterization
        self.num_channels, self.bandwidth, self.channel_dim = num_channels, bandwidth, channel_dim
        self.init, self.negative_slope, self.init_scale, self.backend = (
            init, negative_slope, init_scale, backend)
        bp = _as_breakpoints(breakpoints, num_channels, dtype)
        if bp.dim() == 2 and num_channels == 1 and bp.shape[0] != 1:
            raise ValueError(f"tmaf: shared levels (num_channels=1) need breakpoints of shape (m,) or "
                             f"(1, m), got {tuple(bp.shape)}")
        self.register_buffer("breakpoints", bp.to(device))
        if not self._is_lazy():
            for name, shape in self._param_shapes(num_channels).items():
                setattr(self, name, nn.Parameter(torch.empty(shape, device=device, dtype=dtype)))
            self.reset_parameters()

    def _is_lazy(self) -> bool:
        return False

    def _levels_shape(self, C: int) -> tuple[int, ...]:
        return (C, 2 * self.bandwidth + 1, self.breakpoints.shape[-1] + 1)

    def _param_shapes(self, C: int) -> dict[str, tuple[int, ...]]:
        shape = self._levels_shape(C)
        if self.parameterization == "levels":
            return {"levels": shape}
        return {"knot_values": shape[:-1] + (shape[-1] - 1,), "end_slopes": shape[:-1] + (2,)}

    @property
    def match(self):
        """The function fitted by ``init="match"`` (a name or a callable); None otherwise."""
        return self._match

    @property
    def num_breakpoints(self) -> int:
        return self.breakpoints.shape[-1]

    @property
    def levels(self) -> Tensor:
        """The levels (C, [2b+1,] m+1): the trained Parameter, or with knot_values computed
        (differentiably) from ``knot_values`` and ``end_slopes`` on every access."""
        if self.parameterization == "knot_values":
            from ._continuous import levels_from_knots

            return levels_from_knots(self.breakpoints, self.knot_values, self.end_slopes)
        try:
            return self._parameters["levels"]
        except KeyError:  # not registered yet: hasattr() is False, as for any missing attribute
            raise AttributeError(f"{type(self).__name__!r} object has no attribute 'levels'") from None

    @levels.setter
    def levels(self, value) -> None:
        # reached by non-Parameter values only (nn.Module registers Parameters itself)
        raise AttributeError(self._computed_levels_message() if self.parameterization == "knot_values"
                             else f"tmaf: levels must be an nn.Parameter, got {type(value).__name__}")

    def register_parameter(self, name: str, param) -> None:
        if name == "levels" and self.__dict__.get("parameterization") == "knot_values":
            raise AttributeError(self._computed_levels_message())
        super().register_parameter(name, param)

    @staticmethod
    def _computed_levels_message() -> str:
        return ("tmaf: this module trains knot_values and end_slopes (parameterization="
                "'knot_values'); its levels are computed from them and cannot be assigned")

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Fill levels according to ``init``; "relu"/"leaky_relu" need 0 among the breakpoints.
        With knot_values, the values and end slopes of the function those levels define.
        "match" redoes the fit and sets ``match_error``."""
        if self.parameterization == "levels":
            self._init_levels(self.levels)
        elif self.init == "match":  # the values f(s_q) themselves, not through the levels
            values, ends = _matching.continuous_knots(self._match_fn(), self.breakpoints)
            for param, fit in ((self.knot_values, values), (self.end_slopes, ends)):
                pv = param.view(param.shape[0], -1, param.shape[-1]).zero_()
                pv[:, pv.shape[1] // 2].copy_(fit.expand(pv.shape[0], -1))
        else:
            from ._continuous import knots_from_levels

            lv = self.knot_values.new_empty(self._levels_shape(self.knot_values.shape[0]))
            self._init_levels(lv)
            values, ends = knots_from_levels(self.breakpoints.to(lv.dtype), lv)
            self.knot_values.copy_(values)
            self.end_slopes.copy_(ends)
        if self.init == "match":
            self._measure_match()

    def _match_fn(self):
        return _matching.resolve(self._match)

    def _measure_match(self) -> None:
        f = self._match_fn()
        lv = self.levels.detach()
        lv = lv.view(lv.shape[0], -1, lv.shape[-1])  # (C, 2b+1, m+1)
        diag = lv[:, lv.shape[1] // 2]
        self.match_error = _matching.fit_error(f, diag, self.breakpoints, self.form)
        f0 = float(_matching._eval(f, self.breakpoints.new_zeros(1, dtype=torch.float64)))
        if abs(f0) > 1e-6:
            warnings.warn(f"tmaf: init='match': {_matching.label(self._match)} is {f0:g} at 0, "
                          f"but every TMAF term is 0 at 0; the start is off by about that much "
                          f"near 0 (match_error={self.match_error:.3g})", stacklevel=3)

    def _init_levels(self, levels: Tensor) -> None:
        lv = levels.view(levels.shape[0], -1, levels.shape[-1])  # (C, 2b+1, m+1)
        if self.init == "random":
            lv.uniform_(-self.init_scale, self.init_scale)
            return
        lv.zero_()
        diag = lv[:, lv.shape[1] // 2]  # (C, m+1)
        if self.init == "match":
            diag.copy_(_matching.start_levels(self._match_fn(), self.breakpoints, self.form)
                       .expand_as(diag))
            return
        if self.init == "identity":
            diag.fill_(1.0)
            return
        bp = self.breakpoints.reshape(-1, self.num_breakpoints)
        has_zero = (bp == 0).any(dim=-1)
        if not bool(has_zero.all()):
            raise ValueError(f"tmaf: init={self.init!r} needs 0 among the breakpoints of every "
                             f"channel (so alpha switches exactly at 0); got {bp.tolist()}")
        # Intervals I_k with k > index of 0 lie right of 0 (a value of exactly 0 belongs to the left).
        right = torch.arange(self.num_breakpoints + 1, device=bp.device) > (bp < 0).sum(-1, True)
        left_value = 0.0 if self.init == "relu" else self.negative_slope
        diag.copy_(torch.where(right, 1.0, left_value).expand_as(diag))

    def _full_params(self, C: int) -> tuple[Tensor, Tensor]:
        lv = self.levels  # once: with knot_values every access computes it
        lv = lv.view(lv.shape[0], -1, lv.shape[-1])
        if lv.shape[0] == C:
            return self.breakpoints, lv
        if lv.shape[0] != 1:
            raise ValueError(f"tmaf: {type(self).__name__} has {lv.shape[0]} channels but the input "
                             f"has {C} along channel_dim={self.channel_dim}")
        if 2 * (C - 1) + 1 < lv.shape[1]:
            raise ValueError(f"tmaf: bandwidth {self.bandwidth} exceeds C-1 = {C - 1} for an input "
                             f"with {C} channels")
        bp = self.breakpoints
        return (bp.expand(C, -1) if bp.dim() == 2 else bp), lv.expand(C, -1, -1)

    def forward(self, x: Tensor) -> Tensor:
        cd = _checks.check_input(x, self.channel_dim)
        bp, lv = self._full_params(x.shape[cd])
        return F.module_call(x, bp, lv, cd, self.backend, self.form)

    @torch.no_grad()
    def curves(self, y: Tensor) -> Tensor:
        """Each term on a 1-D grid ``y`` (G,): alpha_{i,d}(y) * y (jump form) or F_{i,d}(y)
        (continuous form); returns (C, 2b+1, G), 0 outside the band."""
        lv = self.levels.detach()
        lv = lv.view(lv.shape[0], -1, lv.shape[-1])
        C, W, m1 = lv.shape
        b = W // 2
        y = torch.as_tensor(y, dtype=lv.dtype, device=lv.device).reshape(-1)
        bp = self.breakpoints.to(lv.dtype).reshape(-1, m1 - 1)
        if self.form == "continuous":  # the term's intercepts, from its input channel's grid
            from ._continuous import intercepts

            ic = intercepts(self.breakpoints.to(lv.dtype), lv)
        idx = torch.stack([interval_index(y, s) for s in bp])  # (C|1, G)
        out = y.new_zeros(C, W, y.numel())
        for i in range(C):
            for d in range(-b, b + 1):
                j = i + d
                if 0 <= j < C or C == 1:
                    k = idx[j % idx.shape[0]]
                    out[i, d + b] = lv[i, d + b][k] * y
                    if self.form == "continuous":
                        out[i, d + b] += ic[i, d + b][k]
        return out

    def __prepare_scriptable__(self):
        # torch.jit.script calls this on every sub-module before compiling: fail here with a
        # clear message instead of an internal TorchScript error deep inside the checks.
        raise RuntimeError(
            f"tmaf: {type(self).__name__} cannot be compiled with torch.jit.script (TorchScript "
            "is not supported: the layer dispatches between backends and a custom autograd "
            "Function in Python); use torch.compile(model) to speed it up, or "
            "torch.export.export(model, args) to deploy it (ONNX via torch.onnx.export(..., "
            "dynamo=True))")

    def extra_repr(self) -> str:
        bp = self.breakpoints
        kind = "shared" if bp.dim() == 1 else "per-channel"
        return (f"num_channels={self.num_channels}, bandwidth={self.bandwidth}, "
                f"breakpoints={self.num_breakpoints} {kind} in [{bp.min().item():g}, "
                f"{bp.max().item():g}], init={self.init!r}"
                + (f", match={_matching.label(self._match)}" if self.init == "match" else "")
                + f", channel_dim={self.channel_dim}"
                + (f", form={self.form!r}" if self.form != "jump" else "")
                + (f", parameterization={self.parameterization!r}"
                   if self.parameterization != "levels" else ""))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "breakpoints"
        if key in state_dict:
            _checks.check_breakpoints(state_dict[key], None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class DiagonalTMAF(BandedTMAF):
    """Diagonal TMAF, sigma(y)_i = alpha_i(y_i) y_i: a per-channel learned activation.

    ``levels`` has shape (C, m+1). Same arguments as :class:`BandedTMAF` without ``bandwidth``.
    """

    def __init__(self, num_channels: int = 1, breakpoints=None, init: str = "relu",
                 channel_dim: int = 1, **kwargs) -> None:
        super().__init__(num_channels, 0, breakpoints, init, channel_dim, **kwargs)

    def _levels_shape(self, C: int) -> tuple[int, ...]:
        return (C, self.breakpoints.shape[-1] + 1)


class TridiagonalTMAF(BandedTMAF):
    """Tridiagonal TMAF (b = 1); ``levels`` (C, 3, m+1): index 0 multiplies y_{i-1}, 2 y_{i+1}."""

    def __init__(self, num_channels: int, breakpoints=None, init: str = "relu",
                 channel_dim: int = 1, **kwargs) -> None:
        super().__init__(num_channels, 1, breakpoints, init, channel_dim, **kwargs)


class _LazyMixin(LazyModuleMixin):
    cls_to_become = None

    def _is_lazy(self) -> bool:
        return True

    def _lazy_setup(self, bandwidth: int | str) -> None:
        for name in self._param_shapes(1):
            setattr(self, name, UninitializedParameter())
        self._lazy_bandwidth = bandwidth

    def reset_parameters(self) -> None:
        if not self.has_uninitialized_params():
            super().reset_parameters()

    def initialize_parameters(self, x: Tensor) -> None:
        if self.has_uninitialized_params():
            cd = _checks.check_input(x, self.channel_dim)
            C = x.shape[cd]
            if self._lazy_bandwidth == "full":
                self.bandwidth = C - 1
            if C > 1 and self.bandwidth > C - 1:
                raise ValueError(f"tmaf: bandwidth {self.bandwidth} exceeds C-1 = {C - 1}")
            self.num_channels = C
            with torch.no_grad():
                for name, shape in self._param_shapes(C).items():
                    getattr(self, name).materialize(shape)
                self.reset_parameters()


def _reject_per_channel(breakpoints) -> None:
    if isinstance(breakpoints, Tensor) and breakpoints.dim() == 2:
        raise ValueError("tmaf: lazy TMAF modules take shared breakpoints of shape (m,); "
                         "use the non-lazy class for per-channel (C, m) breakpoints")


class LazyBandedTMAF(_LazyMixin, BandedTMAF):
    """:class:`BandedTMAF` that infers C from its first input; ``bandwidth="full"`` means C-1."""

    cls_to_become = BandedTMAF

    def __init__(self, bandwidth: int | str, breakpoints=None, **kwargs) -> None:
        _reject_per_channel(breakpoints)
        b = 0 if bandwidth == "full" else bandwidth
        super().__init__(1, b, breakpoints, **kwargs)
        self._lazy_setup(bandwidth)


class LazyDiagonalTMAF(_LazyMixin, DiagonalTMAF):
    """:class:`DiagonalTMAF` that infers C from its first input."""

    cls_to_become = DiagonalTMAF

    def __init__(self, breakpoints=None, **kwargs) -> None:
        _reject_per_channel(breakpoints)
        super().__init__(1, breakpoints, **kwargs)
        self._lazy_setup(0)


class LazyTridiagonalTMAF(_LazyMixin, TridiagonalTMAF):
    """:class:`TridiagonalTMAF` that infers C from its first input."""

    cls_to_become = TridiagonalTMAF

    def __init__(self, breakpoints=None, **kwargs) -> None:
        _reject_per_channel(breakpoints)
        super().__init__(1, breakpoints, **kwargs)
        self._lazy_setup(1)
