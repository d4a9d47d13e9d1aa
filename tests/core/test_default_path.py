"""The suite runs the path users get: ``auto``, which on a CPU is the native operators.

A failed or missing native build must fail the suite, not skip the native tests silently. The
one way to run it without them is to ask: TMAF_NO_NATIVE=1 (then this module skips).
"""

from __future__ import annotations

import os

import pytest
import torch

import tmaf
import tmaf.functional as F

pytestmark = pytest.mark.skipif(os.environ.get("TMAF_NO_NATIVE", "") not in ("", "0"),
                                reason="TMAF_NO_NATIVE asks for a run without the native operators")


def test_native_operators_are_built_and_load():
    assert tmaf.native_available(), tmaf.native_status()
    assert tmaf.native_isas(), "the native library loaded but reports no CPU kernels"


def test_the_suite_runs_on_auto_which_resolves_to_native():
    assert os.environ.get("TMAF_BACKEND", "auto") in ("", "auto"), \
        "the suite must run on the default backend; tests of other backends ask for them"
    assert F.get_backend() == "auto"
    x = torch.randn(4, 3)
    assert F.resolve_backend(x) == "native"
    assert tmaf.resolve_backend(tmaf.DiagonalTMAF(3)(x)) == "native"
