"""Data-driven breakpoints: ``calibrate(model, inputs)`` moves each TMAF grid to where its inputs lie.

Every TMAF layer starts on one fixed grid (docs/method.md section 1). ``calibrate`` runs the model
on calibration batches, keeps a bounded sample of each layer's input, and gives every channel its
own grid, breakpoints (C, m) = quantiles of that channel's inputs, with 0 always a breakpoint.
The levels follow: a row of levels that is exactly two-valued around 0 (the ReLU, identity and
leaky starts) is copied to the new grid, so those layers compute bit-identical outputs; any other
row is refitted as the least-squares fit of the old term alpha_old(x) x on the sample, which has
the closed form per new interval I_k

    t_k = sum_{x in I_k} x * (alpha_old(x) x) / sum_{x in I_k} x^2.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn
from torch.nn.parameter import UninitializedParameter

from . import _checks
from . import functional as F
from ._grid import interval_index
from ._sites import tmaf_modules
from ._spec import record_layout

__all__ = ["calibrate", "outside_fraction"]


class _Reservoir:
    """Uniform sample without replacement of at most ``k`` input positions (rows of C values).

    Bottom-k sampling: every position gets an independent uniform key and the k smallest keys are
    kept. That is exactly a uniform sample of all positions seen, it merges batch by batch with one
    ``topk``, is deterministic given the generator, and needs O(k C) memory. Sampling whole
    positions (not each channel apart) keeps the joint values a banded layer mixes, so the output
    change can be measured on the sample; each channel's column is still a uniform sample of it.
    """

    def __init__(self, k: int, generator: torch.Generator) -> None:
        self.k, self.gen = k, generator
        self.values: Tensor | None = None  # (n, C) float64
        self.keys: Tensor | None = None  # (n,) on CPU
        self.dropped = self.seen = 0

    def add(self, x: Tensor, channel_dim: int) -> None:
        cd = _checks.check_input(x, channel_dim)
        rows = x.detach().movedim(cd, -1).reshape(-1, x.shape[cd]).to(torch.float64)
        finite = torch.isfinite(rows).all(dim=1)
        self.seen += rows.shape[0]
        if not bool(finite.all()):
            self.dropped += int((~finite).sum())
            rows = rows[finite]
        if self.values is not None and rows.shape[1] != self.values.shape[1]:
            raise ValueError(f"tmaf: calibrate: the number of channels changed from "
                             f"{self.values.shape[1]} to {rows.shape[1]} between batches")
        keys = torch.rand(rows.shape[0], generator=self.gen, dtype=torch.float64)
        if self.values is not None:
            rows = torch.cat([self.values, rows])
            keys = torch.cat([self.keys, keys])
        if keys.numel() > self.k:
            keys, keep = torch.topk(keys, self.k, largest=False, sorted=False)
            rows = rows[keep.to(rows.device)]
        self.values, self.keys = rows, keys


def _quantile_grid(v: Tensor, m: int, q_low: float, q_high: float, dtype: torch.dtype) -> Tensor:
    """Grid (m,) for the samples ``v`` (n,): quantiles, the one nearest 0 set to 0, then a minimal gap.

    The minimal gap g = max(1e-3, 8 eps(dtype)) * max(spread, max |q|, 1e-3) is enforced outward
    from 0 (each breakpoint right of 0 at least g above its left neighbour, mirrored on the left),
    so 0 stays exact and a constant channel at value c gets 0 and c, c+g, c+2g, ... .
    """
    q = torch.quantile(v, torch.linspace(q_low, q_high, m, dtype=v.dtype, device=v.device))
    z = int(q.abs().argmin())
    q[z] = 0.0
    q = q.sort().values
    z = int((q == 0).nonzero()[0])
    scale = max(float(q.max() - q.min()), float(q.abs().max()), 1e-3)
    g = max(1e-3, 8 * torch.finfo(dtype).eps) * scale
    for k in range(z + 1, m):
        q[k] = max(q[k], q[k - 1] + g)
    for k in range(z - 1, -1, -1):
        q[k] = min(q[k], q[k + 1] - g)
    return q


def _transfer(old_bp: Tensor, old_lv: Tensor, new_bp: Tensor, x: Tensor) -> Tensor:
    """New levels (L, W, m_new+1) from old (L, W, m_old+1); grids (C', m), samples x (n, C).

    Row (i, d) of the levels is evaluated on input channel j = i + d - b (all j when L = 1, the
    shared case; the sums then pool over the channels that row meets).
    """
    L, W, mo1 = old_lv.shape
    C, b, mn1 = x.shape[1], W // 2, new_bp.shape[-1] + 1
    ob = old_bp.expand(C, -1) if old_bp.shape[0] == 1 else old_bp
    nb = new_bp.expand(C, -1) if new_bp.shape[0] == 1 else new_bp
    # M[j, ko, kn] = sum of x_j^2 over the samples of channel j in old interval ko and new kn.
    M = x.new_zeros(C, mo1 * mn1)
    for j in range(C):
        ko, kn = interval_index(x[:, j], ob[j]), interval_index(x[:, j], nb[j])
        M[j].index_add_(0, ko * mn1 + kn, x[:, j] ** 2)
    M = M.view(C, mo1, mn1)
    i = torch.arange(L, device=x.device)
    new = old_lv.new_empty(L, W, mn1, dtype=torch.float64)
    for w in range(W):
        j = i + (w - b)
        if L == 1:  # shared levels: row w meets every channel j with 0 <= j - (w - b) < C
            valid = (torch.arange(C, device=x.device) - (w - b)).clamp(0, C - 1) == \
                torch.arange(C, device=x.device) - (w - b)
            Mw = (M * valid[:, None, None]).sum(0, keepdim=True)
            jj = torch.zeros(1, dtype=torch.long, device=x.device)
        else:
            Mw, jj = M[j.clamp(0, C - 1)] * ((j >= 0) & (j < C))[:, None, None], j.clamp(0, C - 1)
        row = old_lv[:, w].to(torch.float64)  # (L, mo1)
        num, den = torch.einsum("lo,lon->ln", row, Mw), Mw.sum(1)
        # Empty interval: keep alpha_old at a point of the new interval (its midpoint; half a
        # neighbouring width beyond the end for the two outer ones).
        grid = nb[jj].to(torch.float64)
        if grid.shape[1] > 1:
            step = (grid[:, 1:] - grid[:, :-1]).min(1, keepdim=True).values / 2
        else:
            step = torch.ones_like(grid[:, :1])
        pts = torch.cat([grid[:, :1], (grid[:, 1:] + grid[:, :-1]) / 2, grid[:, -1:] + step], 1)
        old_at = torch.stack([row[r][interval_index(pts[r], ob[jj[r]])] for r in range(L)])
        fit = torch.where(den > 0, num / den.clamp_min(torch.finfo(torch.float64).tiny), old_at)
        # Rows two-valued around 0 on the old grid are copied exactly (no rounding of a fit).
        ogrid = ob[jj]
        zo = (ogrid < 0).sum(1, keepdim=True)
        exact_old = torch.where(torch.arange(mo1, device=x.device) <= zo, row[:, :1], row[:, -1:])
        exact = (row == exact_old).all(1) & ((ogrid == 0).any(1) | (row[:, 0] == row[:, -1]))
        zn = (nb[jj] < 0).sum(1, keepdim=True)
        copy = torch.where(torch.arange(mn1, device=x.device) <= zn, row[:, :1], row[:, -1:])
        new[:, w] = torch.where(exact[:, None], copy, fit)
    return new


def _outside(x: Tensor, bp: Tensor) -> float:
    bp = bp.to(x.dtype).expand(x.shape[1], -1)
    return float(((x < bp[:, 0]) | (x > bp[:, -1])).double().mean()) if x.numel() else 0.0


def _select(model: nn.Module, layers, what: str) -> tuple[dict, list[str]]:
    """({name: TMAF layer}, the selected names); ValueError for none or unknown names."""
    found = dict(tmaf_modules(model))
    if not found:
        raise ValueError(f"tmaf: {what}: {type(model).__name__} holds no TMAF layer")
    names = list(found) if layers is None else list(layers)
    unknown = [n for n in names if n not in found]
    if unknown or not names:
        raise ValueError(f"tmaf: {what}: unknown layer name(s) {unknown}; TMAF layers: "
                         f"{list(found)}")
    return found, names


def _run_with_hooks(model: nn.Module, inputs, hooks: dict, found: dict, what: str) -> None:
    """Run the model on ``inputs`` with ``hooks[name](module, args)`` as forward pre-hooks."""
    handles = [found[n].register_forward_pre_hook(fn) for n, fn in hooks.items()]
    try:
        if _run(model, inputs) == 0:
            raise ValueError(f"tmaf: {what}: inputs is empty (no batch to run)")
    finally:
        for h in handles:
            h.remove()


def _run(model: nn.Module, inputs) -> int:
    batches = [inputs] if isinstance(inputs, Tensor) else inputs
    n = 0
    for batch in batches:
        if isinstance(batch, Mapping):
            model(**batch)
        elif isinstance(batch, (tuple, list)):
            model(*batch)
        else:
            model(batch)
        n += 1
    return n


@torch.no_grad()
def calibrate(model: nn.Module, inputs: Tensor | Iterable, *, quantiles: tuple[float, float] =
              (0.005, 0.995), num_breakpoints: int | None = None, layers: Iterable[str] | None = None,
              max_samples: int = 4096, seed: int = 0) -> dict[str, dict[str, float]]:
    """Give every TMAF layer per-channel breakpoints at the quantiles of its inputs.

    Args:
        model: a module holding TMAF layers (lazy ones must have run once).
        inputs: one batch (a Tensor) or an iterable of batches; a tuple/list batch is passed as
            ``model(*batch)``, a mapping as ``model(**batch)``. Runs under ``torch.no_grad()``.
        quantiles: (low, high), 0 <= low < high <= 1: the m breakpoints of a channel are its
            quantiles at ``linspace(low, high, m)``, then the one nearest 0 is set to 0 and a
            minimal gap keeps them strictly increasing (a constant or tiny-variance channel gets
            0 and breakpoints ~1e-3 * max(|value|, 1e-3) apart from its value on).
        num_breakpoints: new m (default: unchanged). A new m replaces the ``levels`` Parameter,
            so build the optimizer after calibrating.
        layers: qualified names of the layers to calibrate (default: all of ``tmaf_modules``).
        max_samples: positions (vectors of C channel values) kept per layer, a uniform reservoir.
        seed: seed of the reservoir's random keys (the result is deterministic given it).
    Returns:
        ``{name: {"rel_change": ||out_new - out_old|| / ||out_old||, "outside_old": fraction,
        "outside_new": fraction}}``, measured on the layer's sample (all of its inputs when they
        hold at most ``max_samples`` positions). "outside" = below the first or above the last
        breakpoint of the value's channel.

    The model runs in the mode it is in: in training mode BatchNorm layers update their running
    statistics and dropout is active, so call ``model.eval()`` first unless that is what you want.
    Under ``torch.distributed`` (initialised, world size > 1) every rank must call ``calibrate``
    (on its own batches) before wrapping the model in DDP; all ranks then take rank 0's grids,
    levels and statistics, so the layers stay identical across ranks (with NCCL the broadcast
    goes through the current CUDA device). When one rank's calibration fails, it raises its
    error and every other rank raises a RuntimeError, instead of waiting.

    Breakpoints become (C, m) buffers (shared-level layers, ``num_channels=1``, keep one pooled
    (m,) grid); to load such a state_dict into a fresh model, calibrate it first or assign
    ``layer.breakpoints = torch.empty(C, m)`` (and levels of the new m). Positions holding a
    NaN or inf are left out of the statistics with a RuntimeWarning.
    Raises ValueError: a DistributedDataParallel wrapper, no (selected) TMAF layer, an unknown
    layer name, empty ``inputs``, an unmaterialised lazy layer, a layer that never ran or saw
    only non-finite values.
    """
    lo, hi = (float(q) for q in quantiles)
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"tmaf: calibrate: need 0 <= low < high <= 1 quantiles, got {quantiles}")
    if num_breakpoints is not None and (isinstance(num_breakpoints, bool)
                                        or not isinstance(num_breakpoints, int) or num_breakpoints < 1):
        raise ValueError(f"tmaf: calibrate: num_breakpoints must be an int >= 1, got {num_breakpoints!r}")
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise ValueError(f"tmaf: calibrate: max_samples must be an int >= 1, got {max_samples!r}")
    if isinstance(model, nn.parallel.DistributedDataParallel):
        raise ValueError("tmaf: calibrate: got a DistributedDataParallel wrapper; calibrate the "
                         "module before wrapping it (DDP records the buffers and parameters it "
                         "syncs when it is built, and calibration replaces them)")
    found, names = _select(model, layers, "calibrate")
    continuous = [n for n in names if getattr(found[n], "form", "jump") == "continuous"]
    if continuous:  # the level transfer below refits alpha(x) x per interval: the jump form's
        raise NotImplementedError(
            f"tmaf: calibrate: layer(s) {continuous} use form='continuous'; calibration refits "
            "the jump form's levels only, so calibrate a jump-form model and convert its levels, "
            "or leave these layers out with layers=[...]")
    for n in names:
        if isinstance(found[n].levels, UninitializedParameter):
            raise ValueError(f"tmaf: calibrate: lazy layer {n!r} is not materialised yet; run one "
                             f"forward pass before calibrating")
    gen = torch.Generator().manual_seed(seed)
    res = {n: _Reservoir(max_samples, gen) for n in names}
    distributed = _distributed()
    try:
        _run_with_hooks(model, inputs, {n: (lambda mod, args, r=res[n]: r.add(
            args[0], mod.channel_dim)) for n in names}, found, "calibrate")
        stats = {n: _calibrate_layer(n, found[n], res[n], lo, hi, num_breakpoints) for n in names}
    except Exception:
        if distributed:  # tell the other ranks, which wait in _share_rank0, then raise here
            _all_ok(False)
        raise
    stats = _share_rank0(found, names, stats) if distributed else stats
    record_layout(model)  # per-channel breakpoints change a Hugging Face model's saved layout
    return stats


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_ok(ok: bool) -> bool:
    """True on every rank when every rank's calibration succeeded (one all_reduce)."""
    import torch.distributed as dist

    flag = torch.tensor([1 if ok else 0], device=_comm_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def _comm_device() -> torch.device:
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _share_rank0(found, names, stats):
    """Under torch.distributed, every rank takes rank 0's grids, levels and statistics.

    Each rank calibrates on its own batches (the hooks need a forward pass), then rank 0's
    result is broadcast, so all ranks hold identical layers as DDP requires. Statistics are
    therefore those of rank 0's batches: give rank 0 enough of them. A rank whose calibration
    failed makes every rank raise (no rank is left waiting in a collective).
    """
    import torch.distributed as dist

    if not _all_ok(True):
        raise RuntimeError("tmaf: calibrate: calibration failed on another rank (see its error)")
    dev = _comm_device()
    for n in names:
        layer = found[n]
        for t in (layer.breakpoints, layer.levels.data):
            buf = t.to(dev)
            dist.broadcast(buf, src=0)
            t.copy_(buf)
    box = [stats]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _calibrate_layer(name, layer, r: _Reservoir, lo, hi, m_new) -> dict[str, float]:
    if r.seen == 0:
        raise ValueError(f"tmaf: calibrate: layer {name!r} never ran on the inputs")
    if r.dropped:
        warnings.warn(f"tmaf: calibrate: layer {name!r}: {r.dropped} of {r.seen} input positions "
                      f"held NaN/inf and were left out of the statistics", RuntimeWarning, stacklevel=3)
    if r.values is None or r.values.shape[0] == 0:
        raise ValueError(f"tmaf: calibrate: layer {name!r} saw only non-finite inputs")
    x, lv, bp = r.values, layer.levels, layer.breakpoints
    m = bp.shape[-1] if m_new is None else m_new
    L, C = lv.shape[0], x.shape[1]
    if L not in (1, C):
        raise ValueError(f"tmaf: calibrate: layer {name!r} has {L} channels, its input {C}")
    dt = bp.dtype
    xs = x.reshape(-1, 1) if L == 1 else x
    new_bp = torch.stack([_quantile_grid(xs[:, j], m, lo, hi, dt) for j in range(xs.shape[1])])
    new_bp = new_bp.to(dtype=dt, device=bp.device)
    _checks.check_breakpoints(new_bp, None)
    old_bp2, old_lv3 = bp.reshape(-1, bp.shape[-1]).to(x.device), lv.view(L, -1, lv.shape[-1])
    new_lv = _transfer(old_bp2.double(), old_lv3, new_bp.to(x.device).double(), x)
    xin = x.to(lv.dtype).to(lv.device)
    before = F.banded_tmaf(xin, bp, old_lv3.expand(C, -1, -1), 1, layer.backend)
    new_bp = new_bp[0] if L == 1 else new_bp
    new_lv = new_lv.to(lv.dtype).to(lv.device).view(*lv.shape[:-1], m + 1)
    layer.breakpoints = new_bp
    if m + 1 == lv.shape[-1]:
        lv.copy_(new_lv)
    else:
        layer.levels = nn.Parameter(new_lv, requires_grad=lv.requires_grad)
    after = F.banded_tmaf(xin, new_bp, layer.levels.view(L, -1, m + 1).expand(C, -1, -1), 1,
                          layer.backend)
    norm = float(before.double().norm())
    change = float((after.double() - before.double()).norm())
    return {"rel_change": change / norm if norm > 0 else change,
            "outside_old": _outside(x, old_bp2),
            "outside_new": _outside(x, new_bp.reshape(-1, m).to(x.device))}


@torch.no_grad()
def outside_fraction(model: nn.Module, inputs: Tensor | Iterable,
                     layers: Iterable[str] | None = None) -> dict[str, float]:
    """Fraction of each TMAF layer's finite input values outside its channel's grid.

    "Outside" = below the channel's first or above its last breakpoint, where alpha is one
    constant and the layer is linear. ``inputs`` as in :func:`calibrate` (runs the model under
    ``torch.no_grad()`` in its current mode). Returns ``{layer name: fraction}`` in model order.
    Raises ValueError: no (selected) TMAF layer, an unknown name, empty ``inputs``, a layer that
    never ran.
    """
    found, names = _select(model, layers, "outside_fraction")
    counts = {n: [0, 0] for n in names}  # outside, finite values

    def hook(mod, args, name):
        x = args[0].detach().movedim(_checks.check_input(args[0], mod.channel_dim), -1)
        bp = mod.breakpoints.to(x.dtype)
        finite = torch.isfinite(x)
        out = ((x < bp[..., 0]) | (x > bp[..., -1])) & finite
        counts[name][0] += int(out.sum())
        counts[name][1] += int(finite.sum())

    _run_with_hooks(model, inputs, {n: (lambda mod, args, n=n: hook(mod, args, n))
                                    for n in names}, found, "outside_fraction")
    never = [n for n in names if counts[n][1] == 0]
    if never:
        raise ValueError(f"tmaf: outside_fraction: layer(s) {never} saw no finite input")
    return {n: counts[n][0] / counts[n][1] for n in names}
