"""Atomic checkpoints holding everything an exact resume needs.

A checkpoint is written to a temp file in the run folder, fsynced, then renamed over
``checkpoint.pt``: a kill at any moment leaves either the previous or the new one.
It holds model, optimiser, scheduler and grad-scaler states, the torch / numpy /
python RNG states, the position (completed epochs = sampler epoch, step within the
epoch and the partial sums of an interrupted epoch) and the metrics so far.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files import atomic_open

FORMAT = 1
NAME = "checkpoint.pt"


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(out_dir: Path, payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` (plus format and RNG states) to ``out_dir/checkpoint.pt``."""
    path = Path(out_dir) / NAME
    payload = {"format": FORMAT, **payload, "rng": rng_state()}
    with atomic_open(path, "wb") as f:
        torch.save(payload, f)
    return path


def load(out_dir: Path) -> dict[str, Any] | None:
    """The checkpoint in ``out_dir`` or None; a damaged file raises ValueError."""
    path = Path(out_dir) / NAME
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise ValueError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e})") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path} has an unknown format; expected format {FORMAT}")
    return payload


def match_grids(net: torch.nn.Module, state: dict[str, Any]) -> None:
    """Give every TMAF layer of ``net`` the breakpoint shape that the state dict ``state``
    holds ((m,), or (C, m) after ``tmaf.calibrate``), so ``load_state_dict`` can take it.
    Raises ValueError when ``state`` lacks a layer's breakpoints."""
    import tmaf

    for name, layer in tmaf.tmaf_modules(net):
        key = f"{name}.breakpoints" if name else "breakpoints"
        if key not in state:
            raise ValueError(f"the checkpoint has no {key}; it was not written by this model")
        layer.breakpoints = torch.empty_like(state[key], device=layer.breakpoints.device)
