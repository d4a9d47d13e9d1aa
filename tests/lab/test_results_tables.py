"""Every marked table in the committed results READMEs equals what its source files give
(``tmaf tables --check``), and a changed number is caught."""

from __future__ import annotations

from pathlib import Path

from tmaf_lab.report import tables

ROOT = Path(__file__).resolve().parents[2]
READMES = sorted((ROOT / "results").rglob("README.md"))


def test_committed_tables_match_their_sources():
    marked = [p for p in READMES if "<!-- table:" in p.read_text()]
    assert marked  # at least results/converged/README.md
    for path in marked:
        text = path.read_text()
        assert tables.regenerate(text, path.parent) == text, f"tmaf tables {path}"


def test_a_changed_number_is_caught(tmp_path, capsys):
    src = ROOT / "results/converged/README.md"
    copy = tmp_path / "README.md"
    copy.write_text(src.read_text().replace("| MNIST | prelu | 98.59 |", "| MNIST | prelu | 98.60 |"))
    (tmp_path / "tuning").symlink_to(src.parent / "tuning")
    assert tables.main([str(copy), "--check"]) == 1 and "differs" in capsys.readouterr().out
    assert tables.main([str(copy)]) == 0 and copy.read_text() == src.read_text()
