"""docs/library.md names every public name of the core (``tmaf.__all__``, ``tmaf.functional.__all__``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import tmaf
import tmaf.functional

LIBRARY = Path(__file__).resolve().parents[1] / "docs" / "library.md"


def code_names(text: str) -> set[str]:
    """The identifiers written as code in ``text``: in code blocks and in `inline code`."""
    blocks = re.findall(r"```.*?```", text, flags=re.S)
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", "\n".join(blocks + spans)))


def test_code_names_reads_blocks_and_spans_not_prose():
    text = "prose convert\n`tmaf.calibrate(model)` and\n```python\nx = DiagonalTMAF(4)\n```\n"
    names = code_names(text)
    assert {"calibrate", "DiagonalTMAF", "tmaf"} <= names
    assert "convert" not in names and "prose" not in names


@pytest.mark.parametrize("module", [tmaf, tmaf.functional], ids=lambda m: m.__name__)
def test_library_doc_names_every_public_name(module):
    missing = [n for n in module.__all__ if n not in code_names(LIBRARY.read_text())]
    assert not missing, (f"docs/library.md does not name {missing} of {module.__name__}.__all__ "
                         "as code; add them to its 'Public names' table")
