"""setup.py: a build that cannot make the native operators fails with the command to type.

Each case runs setup.py's build_ext in a subprocess up to the point where it refuses (nothing is
compiled). The wheel itself (scripts/build_wheel.sh, installed with no compiler on PATH) is
tested by .ci/run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _setup(tmp_path, prelude: str = "", *args: str, **env) -> subprocess.CompletedProcess:
    code = (f"import sys\n{prelude}\n"
            f"sys.argv = ['setup.py', *{list(args)!r}]\n"
            "exec(compile(open('setup.py').read(), 'setup.py', 'exec'))\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TMAF_")}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**clean, **env})


def _build_ext(tmp_path, prelude: str = "", **env) -> subprocess.CompletedProcess:
    return _setup(tmp_path, prelude, "build_ext", "--build-lib", str(tmp_path / "lib"),
                  "--build-temp", str(tmp_path / "tmp"), **env)


def test_isolated_build_without_torch_fails_with_the_command(tmp_path):
    """pip's default (isolated) build: torch cannot be imported, though it is installed."""
    out = _build_ext(tmp_path, "sys.modules['torch'] = None")
    assert out.returncode != 0
    assert "cannot build the native operators (tmaf._C): torch is not importable" in out.stderr
    assert "pip install --no-build-isolation ." in out.stderr
    assert "TMAF_NO_NATIVE=1 pip install ." in out.stderr
    assert not (tmp_path / "lib").exists()


def test_no_compiler_fails_with_the_command(tmp_path):
    out = _build_ext(tmp_path, CXX="/nonexistent/c++")
    assert out.returncode != 0
    assert "no C++ compiler ('/nonexistent/c++' is not on PATH)" in out.stderr
    assert "pip install --no-build-isolation ." in out.stderr


def test_build_torch_other_than_installed_fails(tmp_path):
    out = _build_ext(tmp_path, "import torch; torch.__version__ = '2.99.0'")
    assert out.returncode != 0
    assert "the build environment has torch 2.99.0, but torch" in out.stderr


@pytest.mark.parametrize("pin, expected", [("", "torch>=2.4"), ("1", "torch==")])
def test_requirement_is_a_range_unless_pinned(tmp_path, pin, expected):
    import torch

    out = _setup(tmp_path, "", "egg_info", "--egg-base", str(tmp_path), TMAF_PIN_TORCH=pin)
    assert out.returncode == 0, out.stderr
    requires = next(tmp_path.rglob("requires.txt")).read_text()
    release = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    assert requires.splitlines()[0] == (f"torch=={release}.*" if pin else expected)
    assert expected in requires


def test_pure_python_install_is_opt_in(tmp_path):
    out = _build_ext(tmp_path, TMAF_NO_NATIVE="1")
    assert out.returncode == 0, out.stderr
    assert "TMAF_NO_NATIVE is set: installing without the native operators" in out.stderr
    # TMAF_REQUIRE_NATIVE=1 wins: the README's set-up never installs without them by accident
    out = _build_ext(tmp_path, "sys.modules['torch'] = None", TMAF_NO_NATIVE="1", TMAF_REQUIRE_NATIVE="1")
    assert out.returncode != 0 and "cannot build the native operators" in out.stderr
