"""Test configuration: one switch for device and dtypes, one tolerance table.

TMAF_TEST_DEVICE=cuda runs the device-aware tests on a GPU (skipped when none is present).
Tests run the path users get: the backend is left at ``auto`` (the native operators on a CPU
where they are built; tests/core/test_native.py fails if they are not). Tests of the eager,
compiled and reference paths ask for them explicitly.
"""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

DEVICE = os.environ.get("TMAF_TEST_DEVICE", "cpu")

#: (atol, rtol) per dtype for fast-vs-reference comparisons.
TOL = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-5, 1e-5),
    torch.bfloat16: (2e-2, 2e-2),
    torch.float16: (2e-3, 2e-3),
}


@pytest.fixture
def device() -> torch.device:
    if DEVICE.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("TMAF_TEST_DEVICE asks for CUDA but none is available")
    return torch.device(DEVICE)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def assert_close(actual, expected, dtype=None, msg=""):
    atol, rtol = TOL[dtype or expected.dtype]
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol, msg=lambda m: f"{msg}: {m}")
