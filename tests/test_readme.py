"""The README's Python examples execute (docs that run), and its commands match .ci/run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples():
    assert python_blocks(), "README.md lost its Python quick start"


@pytest.mark.parametrize("i", range(len(python_blocks()) if README.exists() else 0))
def test_readme_python_block_runs(i, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(python_blocks()[i], f"README.md[python block {i}]", "exec"), {"__name__": "__readme__"})


def test_ci_runs_the_readme_setup_and_test_commands():
    text = README.read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    setup = re.search(r"<!-- setup -->\n```bash\n(.*?)```", text, flags=re.S)
    test = re.search(r"<!-- test -->\n```bash\n(.*?)```", text, flags=re.S)
    assert setup and test, "README must mark its set-up and test commands"
    for line in (setup.group(1) + test.group(1)).splitlines():
        if line.strip() and not line.startswith("#"):
            assert line.strip() in ci, f".ci/run does not run the README command {line!r}"
