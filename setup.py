"""Build of the optional native operator library ``tmaf._C`` (src/tmaf/csrc).

Everything else about the package is in pyproject.toml. Install with the project's torch
already present, so the extension is compiled against it:

    pip install --no-build-isolation -e .

Without a C++ compiler (or without torch at build time) the install still succeeds, with a
warning, and tmaf runs on its pure-PyTorch backends (``tmaf.native_available()`` is False).

Environment:
    TMAF_NO_NATIVE=1       install without the native operators (the same variable hides a built
                           extension at run time, see tmaf._native);
    TMAF_REQUIRE_NATIVE=1  the native operators must build: any failure is an error, not a warning
                           (the README's set-up and CI use it).
"""

from __future__ import annotations

import os
import sys
import time

from setuptools import setup

CSRC = os.path.join("src", "tmaf", "csrc")
SOURCES = ["ops.cpp", "kernels_default.cpp", "kernels_avx2.cpp", "kernels_avx512.cpp"]


def _require_native() -> bool:
    return os.environ.get("TMAF_REQUIRE_NATIVE", "") not in ("", "0")


def _warn(msg: str) -> None:
    if _require_native():
        raise RuntimeError(f"tmaf: {msg}; TMAF_REQUIRE_NATIVE=1 asks for the native operators, so "
                           "the install fails (unset it to install without them)")
    print(f"\n*** tmaf: {msg}\n*** tmaf: installing without the native operators; the "
          "'eager' and 'compiled' backends still work.\n", file=sys.stderr)


def native_build() -> dict:
    if os.environ.get("TMAF_NO_NATIVE", "") not in ("", "0"):
        _warn("TMAF_NO_NATIVE is set")
        return {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError as e:  # torch missing at build time (build isolation, or not installed yet)
        _warn(f"torch is not importable at build time ({e}); install torch first and use "
              "pip install --no-build-isolation")
        return {}

    class BuildNative(BuildExtension):
        """Builds the extension, times it, and turns a failed build into a warning."""

        def build_extension(self, ext):
            start = time.perf_counter()
            try:
                super().build_extension(ext)
            except Exception as e:  # no compiler, unsupported platform, ...
                _warn(f"building the native operators failed: {e}")  # raises under TMAF_REQUIRE_NATIVE
                return
            print(f"tmaf: built the native operators ({ext.name}) in "
                  f"{time.perf_counter() - start:.1f} s", file=sys.stderr)

    flags = ["-O3", "-fopenmp", "-ffp-contract=off", "-Wno-psabi"]
    ext = CppExtension("tmaf._C", [os.path.join(CSRC, s) for s in SOURCES],
                       extra_compile_args={"cxx": flags}, extra_link_args=["-fopenmp"])
    return {"ext_modules": [ext], "cmdclass": {"build_ext": BuildNative.with_options(no_python_abi_suffix=False)}}


setup(**native_build())
