"""Loading tmaf._C: the build record it carries, and what happens under another torch (simulated)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import tmaf
from tmaf import _loader

BUILT = pytest.mark.skipif(not tmaf.native_available(), reason=tmaf.native_status())


def test_mismatch_rules():
    run = {"torch": "2.13.0+cpu", "cxx11_abi": "1"}
    assert _loader.mismatch({"torch": "2.13.0+cpu", "cxx11_abi": "1"}, run) is None
    assert _loader.mismatch({"torch": "2.13.1", "cxx11_abi": "1"}, run) is None  # same release
    assert _loader.mismatch({}, run) is None  # no record: nothing to compare
    msg = _loader.mismatch({"torch": "2.14.1+cpu", "cxx11_abi": "1"}, run)
    assert "built for torch 2.14.1+cpu" in msg and "this is torch 2.13.0+cpu" in msg
    assert _loader.REBUILD in msg and "torch==2.14.1" in msg and "\n" not in msg
    msg = _loader.mismatch({"torch": "2.13.0+cpu", "cxx11_abi": "0"}, run)
    assert "_GLIBCXX_USE_CXX11_ABI=0" in msg and _loader.REBUILD in msg


@BUILT
def test_extension_records_the_torch_it_was_built_for():
    built = _loader.parse_build_info(torch.ops.tmaf.build_info())
    assert built == _loader.running() == {"torch": torch.__version__,
                                           "cxx11_abi": str(int(torch._C._GLIBCXX_USE_CXX11_ABI))}
    # the same record is readable from the file, for an extension that cannot be loaded
    assert _loader.build_info_in_file(tmaf._C.__file__) == built
    status = tmaf.native_status()
    assert f"built for torch {torch.__version__}" in status and f"running torch {torch.__version__}" in status


@BUILT
def test_extension_that_fails_to_load_under_another_torch_names_both(monkeypatch):
    def undefined_symbol(name):
        raise ImportError(f"{tmaf._C.__file__}: undefined symbol: _ZN3c1010TensorImpl")

    monkeypatch.setattr(_loader.importlib, "import_module", undefined_symbol)
    monkeypatch.setattr(_loader, "running", lambda: {"torch": "2.14.1+cpu", "cxx11_abi": "1"})
    reason, built = _loader._import()
    assert built["torch"] == torch.__version__
    assert f"built for torch {torch.__version__}, but this is torch 2.14.1+cpu" in reason
    assert _loader.REBUILD in reason
    # same torch, yet it does not load: the loader's own error, not a guess
    same = {"torch": torch.__version__, "cxx11_abi": built["cxx11_abi"]}
    monkeypatch.setattr(_loader, "running", lambda: same)
    reason, _ = _loader._import()
    assert reason.startswith("tmaf._C failed to load (") and "undefined symbol" in reason


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TMAF_BACKEND": "auto", **env})


@BUILT
def test_loading_under_another_torch_release_warns_once_and_falls_back():
    code = ("import warnings, torch\n"
            "built = torch.__version__\n"
            "torch.__version__ = '2.99.0+cpu'  # as if torch had been upgraded after the build\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    import tmaf\n"
            "    x = torch.randn(4, 3, requires_grad=True)\n"
            "    tmaf.DiagonalTMAF(3)(x).sum().backward()\n"
            "msgs = [str(m.message) for m in w if 'tmaf' in str(m.message)]\n"
            "where = [m.filename for m in w if 'tmaf' in str(m.message)]\n"
            "print(len(msgs), tmaf.native_available(), tmaf.resolve_backend(x), where[0])\n"
            "print(msgs[0])\n"
            "print(tmaf.native_status())\n")
    out = _python(code)
    assert out.returncode == 0, out.stderr
    first, msg, status = out.stdout.splitlines()[:3]
    assert first == "1 False eager <string>"  # the warning points at the user's import line
    assert msg.startswith("tmaf: native operators unavailable, running on the slower pure-PyTorch backends: ")
    assert f"built for torch {torch.__version__}, but this is torch 2.99.0+cpu" in msg
    assert "pip install --no-build-isolation ." in msg
    assert status.startswith("unavailable: tmaf._C was built for torch")
    assert f"built for torch {torch.__version__}" in status and "running torch 2.99.0+cpu" in status


@BUILT
def test_patch_release_difference_keeps_the_native_path_without_warning():
    code = ("import warnings, torch\n"
            "major, minor = torch.__version__.split('.')[:2]\n"
            "torch.__version__ = f'{major}.{minor}.99'\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    import tmaf\n"
            "print(sum('tmaf' in str(m.message) for m in w), tmaf.native_available())\n")
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "True"]
