"""What ``tmaf.convert`` did, per site: kept on the model as ``model.tmaf_conversion`` (plain,
JSON-ready dicts) and printed by :func:`conversion_report`."""

from __future__ import annotations

from torch import nn
from torch.nn.parameter import UninitializedParameter

__all__ = ["site_record", "conversion_report"]


def _params(module: nn.Module) -> int | None:
    ps = list(module.parameters())
    if any(isinstance(p, UninitializedParameter) for p in ps):
        return None
    return sum(p.numel() for p in ps)


def site_record(name, module, known, sites, calls, how) -> dict:
    """One replaced module: its names, what it computed, and one entry per call site."""
    out = []
    for k, site in enumerate(sites):
        call = calls[k] if k < len(calls) else None
        lazy = _params(site) is None
        out.append({
            "input_shape": list(call.shape) if call is not None and call.shape else None,
            "channel_dim": site.channel_dim if hasattr(site, "channel_dim") else None,
            "num_channels": None if lazy else getattr(site, "num_channels", None),
            "params": _params(site),
            "via": call.via if call is not None else "lazy: C from the first input",
            "match_error": getattr(site, "match_error", None),
        })
    return {"names": [name], "replaced": type(module).__name__,
            "function": known[0] if known else None, "found_by": how, "sites": out}


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2g}"
    if isinstance(v, list):
        return "(" + ", ".join(map(str, v)) + ")"
    return str(v)


def conversion_report(model: nn.Module) -> str:
    """A table of every site ``tmaf.convert`` replaced in ``model``: module name (#call for
    reused modules), the replaced class and its function, input shape, channel axis, C,
    parameters added, the fit error of ``init="match"`` and where the axis came from."""
    records = getattr(model, "tmaf_conversion", None)
    if not records:
        return f"tmaf: no activation of {type(model).__name__} was converted"
    head = ("site", "replaced", "input shape", "axis", "C", "params", "match err", "axis from")
    rows = []
    for r in records:
        for k, s in enumerate(r["sites"]):
            site = " = ".join(r["names"]) + (f" #{k}" if len(r["sites"]) > 1 else "")
            what = r["replaced"] + (f" ({r['function']})" if r["function"] else "")
            rows.append((site, what, _fmt(s["input_shape"]), _fmt(s["channel_dim"]),
                         _fmt(s["num_channels"]), _fmt(s["params"]), _fmt(s["match_error"]), s["via"]))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip()
             for row in (head, *rows)]
    total = sum(s["params"] or 0 for r in records for s in r["sites"])
    lines.append(f"{len(rows)} site(s) converted, {total} parameters added")
    return "\n".join(lines)
