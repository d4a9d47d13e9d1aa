"""The benchmark harness: timing, saved-bytes accounting, reference checks, and a dry run."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # benchmarks/ is a top-level folder, not an installed package
    sys.path.insert(0, str(REPO))

from benchmarks import cli, timing  # noqa: E402
from benchmarks.candidates import Candidate, Spec, check_against_reference  # noqa: E402
from benchmarks.oracle import oracle_outputs_and_grads  # noqa: E402


def test_time_interleaved_rotates_order_and_counts_samples():
    calls: list[str] = []
    fns = {n: (lambda n=n: calls.append(n)) for n in "abc"}
    out = timing.time_interleaved(fns, repeats=4, warmup=1, sync=lambda: None, min_sample_s=0.0)
    assert {n: len(t.samples) for n, t in out.items()} == {"a": 4, "b": 4, "c": 4}
    timed = calls[3:]  # after one warm-up call of each (no calibration call: min_sample_s=0)
    assert timed == list("abc" "bca" "cab" "abc")


def test_paired_ratio_cancels_common_drift():
    a = timing.Timing((1.0, 2.0, 4.0), 1)
    b = timing.Timing((2.0, 4.0, 8.0), 1)
    assert timing.paired_ratio(a, b) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="equal repeats"):
        timing.paired_ratio(a, timing.Timing((1.0,), 1))


def test_saved_bytes_counts_each_storage_once_and_separates_parameters():
    x = torch.randn(10, 6, requires_grad=True)
    w = torch.randn(6, requires_grad=True)
    relu = timing.saved_bytes(lambda: torch.relu(x))
    assert relu.total == 10 * 6 * 4 and relu.parameters == 0
    twice = timing.saved_bytes(lambda: x * x)  # saves x twice: one storage
    assert twice.total == 10 * 6 * 4
    scaled = timing.saved_bytes(lambda: x * w, params=[w])  # saves x and w
    assert scaled.total == (60 + 6) * 4 and scaled.parameters == 6 * 4 and scaled.activations == 240


@pytest.mark.parametrize("bandwidth", [0, 1, 2])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("shape, channel_dim", [((6, 5), 1), ((2, 5, 3, 3), 1), ((3, 4, 5), -1)])
def test_oracle_matches_the_tmaf_reference(bandwidth, per_channel, shape, channel_dim):
    import tmaf.functional as F

    gen = torch.Generator().manual_seed(bandwidth + 10 * per_channel)
    C = shape[channel_dim]
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * 2
    x.view(-1)[:3] = torch.tensor([-1.0, 0.0, 0.5], dtype=torch.float64)  # values on breakpoints
    g = torch.randn(shape, generator=gen, dtype=torch.float64)
    bp = torch.tensor([-1.0, 0.0, 0.5, 1.5], dtype=torch.float64)
    if per_channel:
        bp = bp + 0.1 * torch.arange(C, dtype=torch.float64)[:, None]
    levels = torch.randn(C, 2 * bandwidth + 1, 5, generator=gen, dtype=torch.float64)
    xr, lr = x.clone().requires_grad_(True), levels.clone().requires_grad_(True)
    out = F.banded_tmaf(xr, bp, lr, channel_dim, backend="reference")
    out.backward(g)
    got = oracle_outputs_and_grads(x, g, bp, levels, channel_dim)
    for a, b in zip(got, [out.detach(), xr.grad, lr.grad], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["diagonal", "tridiagonal"])
@pytest.mark.parametrize("shape", [(6, 5), (2, 4, 3, 3)])
def test_eager_fast_path_passes_the_reference_check(kind, shape):
    x = torch.randn(shape, requires_grad=True)
    cand = Candidate(Spec(kind, "eager", 5), x, torch.randn(shape))
    assert check_against_reference(cand) < 1e-5


def test_a_wrong_fast_kernel_fails_the_check(monkeypatch):
    import tmaf._fused as fused

    right = fused.banded_tmaf_fwd
    monkeypatch.setattr(fused, "banded_tmaf_fwd", lambda *a: right(*a) * 1.001)
    x = torch.randn(4, 6, requires_grad=True)
    with pytest.raises(AssertionError, match="output differs from the reference"):
        check_against_reference(Candidate(Spec("diagonal", "eager", 5), x, torch.randn(4, 6)))


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_dry_run_writes_checked_results(tmp_path, capsys):
    assert cli.main(["--dry-run", "--out", str(tmp_path)]) == 0
    rows = _read(tmp_path / "activations.csv")
    names = {r["candidate"] for r in rows}
    assert {"relu/eager", "prelu/eager", "gelu/eager", "diagonal-m5/eager",
            "tridiagonal-m1/eager", "diagonal-m1/reference"} <= names
    for r in rows:
        assert float(r["check_max_rel_err"]) < 1e-4
        assert float(r["median_ms"]) > 0
        if r["kind"] in ("relu", "diagonal", "tridiagonal") and r["mode"] == "eager":
            # ReLU and the TMAF fast path save one input-sized tensor (autograd references more)
            assert float(r["saved_act_bytes_vs_relu_eager"]) == 1.0, r["candidate"]
    steps = _read(tmp_path / "train_step.csv")
    assert {(r["model"], r["activation"]) for r in steps} >= {
        ("mlp", "relu"), ("resnet18", "diagonal/eager"), ("resnet18", "tridiagonal/eager")}
    assert (tmp_path / "config.json").exists() and (tmp_path / "summary.md").exists()
    assert "diagonal fwd+bwd vs eager ReLU" in (tmp_path / "summary.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--dry-run", "--parts", "act,nope"], "--parts"),
    (["--dry-run", "--quick"], "not allowed with"),
    (["--quick", "--compile"], "--compile only applies"),
    (["--dry-run", "--repeats", "0"], "--repeats"),
    (["--dry-run", "--no-such-option"], "unrecognized arguments"),
])
def test_bad_options_are_clear_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_module_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--dry-run" in proc.stdout
