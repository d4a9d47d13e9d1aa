"""Test-time augmentation: the views of an image batch whose predictions the final evaluation
averages (none; the mirror image; both also shifted by one pixel up-left and down-right)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """x moved by (dy, dx) pixels, the uncovered border filled by reflection."""
    pad = F.pad(x, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)), mode="reflect")
    h, w = x.shape[-2:]
    return pad[..., max(-dy, 0):max(-dy, 0) + h, max(-dx, 0):max(-dx, 0) + w]


TTA_VIEWS = {"off": 1, "flip": 2, "flip-translate": 6}  # the first N of tta_views


def tta_views(x: torch.Tensor, tta: str = "flip-translate") -> list[torch.Tensor]:
    """The views of a test-time augmentation, in an order whose first ``TTA_VIEWS[t]`` views
    are those of every level t: x, its mirror image, then both shifted by one pixel up-left
    and down-right."""
    views = [x, x.flip(-1)][:TTA_VIEWS[tta]]
    if tta == "flip-translate":
        views += [_shift(v, s, s) for v in views[:2] for s in (-1, 1)]
    return views
