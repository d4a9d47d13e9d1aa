"""Provenance saved with every run: config, command line, git commit, versions, hardware.

``config.json`` records what a rerun needs to explain a difference: the CPU model, the
torch thread count, torch/numpy versions and the TMAF backend (the setting and what it
resolves to on the run's device). Runs are bit-identical on the same CPU model and
software; across CPU models float32 results differ slightly (see README, "Reproducibility").
"""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tmaf_lab.files import atomic_write_text, write_json

__all__ = ["OutputFolderError", "atomic_write_text", "check_writable", "cpu_model", "environment",
           "git_commit", "save_config", "tmaf_backend", "write_json"]


class OutputFolderError(OSError):
    """The output folder cannot be created or written; the message names it and why."""


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """The current git commit (with ``-dirty`` if the tree has changes), or ``"unknown"``."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def tmaf_backend(device: str | None = None) -> dict[str, str]:
    """The TMAF backend setting (``tmaf.get_backend()``) and the implementation it selects
    for a float32 tensor on ``device`` (default: CPU)."""
    import torch

    import tmaf

    dev = torch.device("cpu" if device in (None, "auto") else device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        return {"setting": tmaf.get_backend(), "resolved": "unknown (CUDA not available)"}
    probe = torch.empty(0, device=dev)
    # tmaf.resolve_backend is the rule the functional API applies to every call
    return {"setting": tmaf.get_backend(), "resolved": tmaf.resolve_backend(probe)}


def environment(device: str | None = None) -> dict[str, Any]:
    """Versions of Python, torch, numpy and tmaf; the CPU model, thread count, host, device
    and TMAF backend."""
    import torch

    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    try:
        import numpy

        env["numpy"] = numpy.__version__
    except ImportError:
        pass
    if device is not None:
        env["device"] = str(device)
        if str(device).startswith("cuda") and torch.cuda.is_available():
            env["device_name"] = torch.cuda.get_device_name(torch.device(device))
    env["tmaf_backend"] = tmaf_backend(device)
    return env


def save_config(out_dir: str | os.PathLike, config: Any, argv: list[str] | None = None,
                device: str | None = None) -> dict[str, Any]:
    """Save ``config.json`` (a frozen dataclass) with command line, commit, versions, device."""
    cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    record = {
        "config": cfg,
        "argv": list(sys.argv if argv is None else argv),
        "commit": git_commit(),
        "environment": environment(device),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(Path(out_dir) / "config.json", record)
    return record


_ANNOUNCE: dict[Path, str] = {}  # output folder -> the line check_writable prints for it


def output_folder(command: str, given, default):
    """The folder ``command`` writes to: ``given`` (its --out) or ``default``. When the command
    starts writing there (:func:`check_writable`) one stderr line gives its absolute path, and says
    when it is the default under the current folder, so that is never a surprise."""
    out = given or default
    note = "" if given else " (the default, under the current folder; --out DIR writes elsewhere)"
    _ANNOUNCE[Path(out).resolve()] = f"tmaf {command}: writing to {Path(out).resolve()}{note}"
    return out


def check_writable(out_dir: str | os.PathLike) -> Path:
    """Prove that ``out_dir`` can be created and written, without creating it.

    The probe runs in ``out_dir`` if it exists, else in its nearest existing parent, so a
    command that fails later leaves no empty output folder behind. Raises
    :class:`OutputFolderError` naming the folder and the reason.
    """
    out = Path(out_dir)
    probe_dir = out
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise OutputFolderError(f"output folder {str(out)!r} is not writable "
                                f"({str(probe_dir)!r} is a file, not a folder)")
    try:
        with tempfile.TemporaryFile(dir=probe_dir, prefix=".write-probe-"):
            pass
    except OSError as e:
        raise OutputFolderError(f"output folder {str(out)!r} is not writable "
                                f"({e.strerror or e} in {str(probe_dir)!r})") from e
    if (line := _ANNOUNCE.pop(out.resolve(), None)) is not None:
        print(line, file=sys.stderr)
    return out
