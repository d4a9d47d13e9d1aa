"""Every marked table in the committed results READMEs equals what its source files give
(``tmaf tables --check``), and a changed number is caught."""

from __future__ import annotations

from pathlib import Path

from tmaf_lab.report import tables

ROOT = Path(__file__).resolve().parents[2]
READMES = [ROOT / "README.md", *sorted((ROOT / "results").rglob("README.md"))]


def test_committed_tables_match_their_sources():
    marked = [p for p in READMES if "<!-- table:" in p.read_text()]
    assert ROOT / "README.md" in marked and ROOT / "results/converged/README.md" in marked
    for path in marked:
        text = path.read_text()
        assert tables.regenerate(text, path.parent) == text, f"tmaf tables {path}"


def test_a_changed_number_is_caught(tmp_path, capsys):
    src = ROOT / "results/converged/README.md"
    copy = tmp_path / "README.md"
    copy.write_text(src.read_text().replace("| MNIST | prelu | 98.59 |", "| MNIST | prelu | 98.60 |"))
    for source in ("tuning", "mlp", "cnn"):
        (tmp_path / source).symlink_to(src.parent / source)
    assert tables.main([str(copy), "--check"]) == 1 and "differs" in capsys.readouterr().out
    assert tables.main([str(copy)]) == 0 and copy.read_text() == src.read_text()


def test_a_changed_paired_difference_is_caught(tmp_path, capsys):
    """The paired-accuracy tables are recomputed from the runs' results.json: per-seed values
    and the 95 % intervals of the differences to ReLU and pwl."""
    src = ROOT / "results/converged/README.md"
    text = src.read_text()
    edited = text.replace("**+0.450 [+0.326, +0.574]**", "**+0.451 [+0.326, +0.574]**")
    assert edited != text
    copy = tmp_path / "README.md"
    copy.write_text(edited)
    for source in ("tuning", "mlp", "cnn"):
        (tmp_path / source).symlink_to(src.parent / source)
    assert tables.main([str(copy), "--check"]) == 1 and "differs" in capsys.readouterr().out
    assert tables.main([str(copy)]) == 0 and copy.read_text() == text


def test_a_table_source_without_runs_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "README.md").write_text("<!-- table:paired_accuracy runs/mnist -->\n| x |\n"
                                        "<!-- /table -->\n")
    assert tables.main([str(tmp_path / "README.md"), "--check"]) == 2
    assert "runs/mnist is not a folder" in capsys.readouterr().err
    (tmp_path / "runs" / "mnist" / "pwl" / "seed0").mkdir(parents=True)
    (tmp_path / "runs" / "mnist" / "pwl" / "seed0" / "results.json").write_text('{"test_acc": 0.9}')
    assert tables.main([str(tmp_path / "README.md"), "--check"]) == 2
    assert "no finished relu run" in capsys.readouterr().err


def test_the_front_door_fitting_table_follows_the_report(tmp_path, capsys):
    src = ROOT / "README.md"
    text = src.read_text()
    row = "| sin(16 pi x) | 0.36 / 0.34 | better |"
    edited = text.replace(row, row.replace("0.36", "0.35"))
    assert edited != text
    copy = tmp_path / "README.md"
    copy.write_text(edited)
    (tmp_path / "results").symlink_to(ROOT / "results")
    assert tables.main([str(copy), "--check"]) == 1 and "differs" in capsys.readouterr().out
    assert tables.main([str(copy)]) == 0 and copy.read_text() == text
