"""tmaf bench module-call: this checkout's tmaf.modules against a revision's, in one process."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tmaf_lab.bench.cli import main as bench_main

ROOT = Path(__file__).resolve().parents[2]


def _has_git_head() -> bool:
    done = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=ROOT, capture_output=True)
    return done.returncode == 0


@pytest.mark.skipif(not _has_git_head(), reason="needs a git checkout (reads modules.py at HEAD)")
def test_dry_run_prints_one_row_per_layer_and_input(capsys):
    assert bench_main(["module-call", "--dry-run", "--before", "HEAD"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| levels") or
            line.startswith("| knot_values")]
    assert len(rows) == 4, out
    assert "before = HEAD" in out


def test_an_unknown_revision_is_one_error_line(capsys):
    assert bench_main(["module-call", "--dry-run", "--before", "no-such-revision-here"]) == 2
    err = capsys.readouterr().err
    assert "cannot read src/tmaf/modules.py at 'no-such-revision-here'" in err
