"""Build of the native operator library ``tmaf._C`` (src/tmaf/csrc).

Everything else about the package is in pyproject.toml. The extension is compiled against the
torch that will run it, so install torch first and build without pip's build isolation (which
would hide that torch):

    pip install torch==2.13.0
    pip install --no-build-isolation .

A build that cannot make the native operators for that torch fails, naming the command to
type: torch not importable at build time (pip's default isolated build), a build environment
whose torch differs from the installed one, no C++ compiler, or a failed compile. The
pure-Python install (the 'eager' and 'compiled' backends only) is opt-in.

Environment:
    TMAF_NO_NATIVE=1       install without the native operators (tmaf warns once at import; at
                           run time the same variable hides a built extension, see tmaf._loader);
    TMAF_REQUIRE_NATIVE=1  the native operators must build (the default; the variable is kept
                           for the README's set-up and CI, and overrides TMAF_NO_NATIVE);
    TMAF_PIN_TORCH=1       the wheel requires the torch release it was built for (torch==X.Y.*)
                           instead of a range: scripts/build_wheel.sh sets it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from setuptools import Extension, setup
from setuptools.command.build import build
from setuptools.command.build_ext import build_ext
from setuptools.errors import SetupError

CSRC = os.path.join("src", "tmaf", "csrc")
SOURCES = ["ops.cpp", "build_info.cpp", "kernels_default.cpp", "kernels_avx2.cpp", "kernels_avx512.cpp"]
TORCH_RANGE = "torch>=2.4"
PURE = "TMAF_NO_NATIVE=1 pip install .   (no native operators: slower pure-PyTorch backends)"


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def _installed_torch() -> str | None:
    """The torch version installed for this interpreter, looked up outside pip's isolated build
    environment (``-I`` drops the PYTHONPATH through which pip isolates the build); None if none."""
    code = "import importlib.metadata as m; print(m.version('torch'))"
    try:
        out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def _fail(why: str, commands: list[str], editable: bool = False) -> SetupError:
    lines = [f"tmaf: cannot build the native operators (tmaf._C): {why}.", "tmaf: type instead:"]
    lines += [f"    {c}" for c in commands] + ["tmaf: or, without them:", f"    {PURE}"]
    if editable:  # pip install -e: the same commands, editable
        lines = [ln.replace("install .", "install -e .").replace("isolation .", "isolation -e .")
                 for ln in lines]
    bar = "*" * 78
    print(f"\n{bar}\n" + "\n".join(lines) + f"\n{bar}\n", file=sys.stderr)
    return SetupError(" ".join(lines[:1]))


class Refuse(build_ext):
    """The build_ext of a build that cannot make the extension: fails with the command to type
    (at build time, not when setup.py is read, so an sdist or metadata still builds without torch)."""

    why: str = ""
    commands: list[str] = []

    def run(self):
        raise _fail(self.why, self.commands, editable="editable_wheel" in self.distribution.commands)


class BuildExtFirst(build):
    """``build`` with build_ext first, so that a refusal is the first thing pip shows."""

    sub_commands = sorted(build.sub_commands, key=lambda c: c[0] != "build_ext")


def refuse(why: str, commands: list[str]) -> dict:
    cls = type("RefuseBuild", (Refuse,), {"why": why, "commands": commands})
    placeholder = Extension("tmaf._C", [os.path.join(CSRC, s) for s in SOURCES])
    return {"ext_modules": [placeholder], "cmdclass": {"build_ext": cls, "build": BuildExtFirst},
            "install_requires": [TORCH_RANGE]}


def native_build() -> dict:
    if _flag("TMAF_NO_NATIVE") and not _flag("TMAF_REQUIRE_NATIVE"):
        print("tmaf: TMAF_NO_NATIVE is set: installing without the native operators", file=sys.stderr)
        return {"install_requires": [TORCH_RANGE]}
    installed = _installed_torch()
    try:
        import torch
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:  # pip's isolated build environment, or torch not installed yet
        if installed:
            return refuse(f"torch is not importable in the build environment (pip builds in an isolated "
                          f"one by default), while torch {installed} is installed",
                          ["pip install --no-build-isolation ."])
        return refuse("torch is not installed (pip builds in an isolated environment without it)",
                      ["pip install torch==2.13.0   (or the torch you want)",
                       "pip install --no-build-isolation ."])
    if installed and installed != torch.__version__:
        return refuse(f"the build environment has torch {torch.__version__}, but torch {installed} is "
                      "installed: the extension would not load", ["pip install --no-build-isolation ."])
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return refuse(f"no C++ compiler ({compiler!r} is not on PATH)",
                      ["apt-get install g++   (or your system's C++ compiler; CXX=... names another)",
                       "pip install --no-build-isolation ."])

    class BuildNative(BuildExtension):
        """Builds the extension, times it, and turns a failed compile into a failed install."""

        def build_extension(self, ext):
            start = time.perf_counter()
            try:
                super().build_extension(ext)
            except Exception as e:
                raise _fail(f"the compile failed ({e}; the compiler's messages are above)",
                            ["pip install --no-build-isolation .   (after fixing the cause)"]) from e
            print(f"tmaf: built the native operators ({ext.name}) for torch {torch.__version__} in "
                  f"{time.perf_counter() - start:.1f} s", file=sys.stderr)

    # -g0 and -s: no debug info (21.4 MB -> 2.6 MB); the torch version it is built for goes into
    # build_info.cpp, which tmaf._loader compares with the running torch.
    flags = ["-O3", "-g0", "-fopenmp", "-ffp-contract=off", "-Wno-psabi",
             f'-DTMAF_TORCH_VERSION="{torch.__version__}"']
    ext = CppExtension("tmaf._C", [os.path.join(CSRC, s) for s in SOURCES],
                       extra_compile_args={"cxx": flags}, extra_link_args=["-fopenmp", "-s"])
    release = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    requires = [f"torch=={release}.*"] if _flag("TMAF_PIN_TORCH") else [TORCH_RANGE]
    return {"ext_modules": [ext], "install_requires": requires,
            "cmdclass": {"build_ext": BuildNative.with_options(no_python_abi_suffix=False)}}


setup(**native_build())
