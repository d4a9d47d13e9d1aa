"""Loading the native operator library ``tmaf._C``: what it was built for, and why it is off when it is.

setup.py compiles the torch version (and the C++ ABI flag, ``_GLIBCXX_USE_CXX11_ABI``) it builds
against into the extension (csrc/build_info.cpp). :func:`load` imports the extension and compares
that record with the running torch. The extension is used only when both match in the torch
release (major.minor) and the ABI flag; a patch or local-label difference (2.13.0 vs 2.13.1+cpu)
keeps it, as the wheel's ``torch==X.Y.*`` pin does. Otherwise, and when the extension is missing
or fails to load, one warning names the cause (both torch versions when they differ) and the
command that fixes it, and tmaf runs on its pure-PyTorch backends. ``TMAF_NO_NATIVE=1`` hides the
extension deliberately, without a warning.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import warnings

import torch

MARKER = b"tmaf-build-info:"
REBUILD = ("pip install --no-build-isolation . (or -e . for an editable checkout; from the tmaf source, "
           "with a C++ compiler)")


def parse_build_info(text: str) -> dict[str, str]:
    """``"tmaf-build-info:torch=2.13.0+cpu;cxx11_abi=1;"`` -> ``{"torch": ..., "cxx11_abi": ...}``."""
    body = text.removeprefix(MARKER.decode())
    return dict(item.split("=", 1) for item in body.split(";") if "=" in item)


def build_info_in_file(path: str) -> dict[str, str]:
    """The build record of an extension file that cannot be loaded (read from its bytes); {} if none."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return {}
    start = data.find(MARKER)
    if start < 0:
        return {}
    end = data.find(b"\0", start)
    return parse_build_info(data[start:end].decode("ascii", "replace"))


def running() -> dict[str, str]:
    """The running torch's version and C++ ABI flag, in the build record's terms."""
    return {"torch": torch.__version__, "cxx11_abi": str(int(torch._C._GLIBCXX_USE_CXX11_ABI))}


def release(version: str) -> tuple[str, ...]:
    """``"2.13.1+cpu"`` -> ``("2", "13")``: what must match for the extension to be used."""
    return tuple(version.split("+")[0].split(".")[:2])


def mismatch(built: dict[str, str], run: dict[str, str]) -> str | None:
    """Why an extension with build record ``built`` must not run under ``run``; None if it may."""
    if not built.get("torch"):
        return None  # no record (an extension built before records existed): nothing to compare
    if release(built["torch"]) != release(run["torch"]):
        return (f"tmaf._C was built for torch {built['torch']}, but this is torch {run['torch']}; "
                f"rebuild it against this torch: {REBUILD}, or install torch=={built['torch'].split('+')[0]}")
    if built.get("cxx11_abi") not in (None, run["cxx11_abi"]):
        return (f"tmaf._C was built with _GLIBCXX_USE_CXX11_ABI={built['cxx11_abi']} but torch "
                f"{run['torch']} uses {run['cxx11_abi']}; rebuild it against this torch: {REBUILD}")
    return None


def load() -> tuple[str | None, dict[str, str]]:
    """Import ``tmaf._C`` (registers torch.ops.tmaf.*); returns (why the native path is off or
    None, the extension's build record). Warns once, in one line, when it is off by accident."""
    if os.environ.get("TMAF_NO_NATIVE", "") not in ("", "0"):
        return "disabled by TMAF_NO_NATIVE", {}
    reason, built = _import()
    if reason is None and torch.ops.tmaf.native_isa() == "none":
        return "this CPU lacks the vector instructions the kernels need (SSE4.2)", built
    if reason is not None:
        warnings.warn(f"tmaf: native operators unavailable, running on the slower pure-PyTorch "
                      f"backends: {reason}", RuntimeWarning, stacklevel=_importer_level())
    return reason, built


def _importer_level() -> int:
    """The ``stacklevel`` of the first frame outside tmaf (the user's ``import tmaf``), counted
    as warnings.warn counts from load(): importlib's own frames are skipped, not counted."""
    package = os.path.dirname(os.path.abspath(__file__))
    level, frame = 1, sys._getframe(2)  # load()'s caller
    while frame is not None:
        name = frame.f_code.co_filename
        if not ("importlib" in name and "_bootstrap" in name):
            level += 1
            if not os.path.abspath(name).startswith(package):
                return level
        frame = frame.f_back
    return level


def _import() -> tuple[str | None, dict[str, str]]:
    spec = importlib.util.find_spec("tmaf._C")
    if spec is None or spec.origin is None:
        return ("tmaf._C is not built (installed with TMAF_NO_NATIVE=1, or a source tree never built); "
                f"build it against this torch: {REBUILD}"), {}
    try:
        importlib.import_module("tmaf._C")
    except (ImportError, OSError) as e:
        built = build_info_in_file(spec.origin)
        why = mismatch(built, running())
        return why or f"tmaf._C failed to load ({e}); rebuild it against this torch: {REBUILD}", built
    built = parse_build_info(torch.ops.tmaf.build_info()) if hasattr(torch.ops.tmaf, "build_info") else {}
    return mismatch(built, running()), built
