"""tmaf train across processes: exact resume after kill -9 and after Ctrl-C, and 2-process DDP.

Each test launches the real command in subprocesses on tiny synthetic data (one thread each)
and compares the final checkpoint and metrics with an uninterrupted single-process run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

TINY = ["synthetic", "--model", "mlp", "--width", "64", "--batch-size", "64", "--threads", "1",
        "--device", "cpu"]


def env() -> dict:
    e = dict(os.environ, OMP_NUM_THREADS="1")
    e.pop("WORLD_SIZE", None)
    return e


def popen(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tmaf_lab", "train", *args], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def metrics(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def without(rows, key):
    return [{k: v for k, v in r.items() if k != key} for r in rows]


def final_state(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)


def assert_same_run(a: Path, b: Path, exact: bool = True, atol: float = 1e-5) -> None:
    """Same weights and metrics (timings aside); bit-identical when ``exact``."""
    sa, sb = final_state(a), final_state(b)
    assert sa["model"].keys() == sb["model"].keys()
    for k in sa["model"]:
        if exact:
            assert torch.equal(sa["model"][k], sb["model"][k]), k
        else:
            torch.testing.assert_close(sa["model"][k], sb["model"][k], atol=atol, rtol=atol)
    ma, mb = without(metrics(a), "seconds"), without(metrics(b), "seconds")
    assert len(ma) == len(mb) > 0
    if exact:
        assert ma == mb
    else:
        for ra, rb in zip(ma, mb, strict=True):
            for k in ra:
                assert abs(ra[k] - rb[k]) <= max(atol, 2e-3 if "acc" in k else atol), (k, ra, rb)
    ra = json.loads((a / "results.json").read_text())
    rb = json.loads((b / "results.json").read_text())
    assert ra.keys() == rb.keys()


def run_to_end(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    proc = popen(args)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-2000:]
    return subprocess.CompletedProcess(args, 0, out, err)


def wait_for_epochs(proc: subprocess.Popen, out: Path, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(metrics(out)) < n:
        if proc.poll() is not None:
            pytest.fail(f"run ended (rc {proc.returncode}) before epoch {n}: "
                        f"{proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no epoch {n} within {timeout} s")
        time.sleep(0.005)


RUN = [*TINY, "--width", "128", "--epochs", "5", "--subset", "1024", "--activation", "diagonal"]


def run_here(args: list[str]) -> None:
    """The same command in this process (same threads, backend and determinism settings)."""
    from tmaf_lab.train.cli import main

    assert main(args) == 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    run_here([*RUN, "--out", str(out)])
    return out


def test_resume_after_kill_9_is_bit_identical(tmp_path, reference):
    out = tmp_path / "killed"
    proc = popen([*RUN, "--out", str(out)])
    wait_for_epochs(proc, out, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = len(metrics(out))
    assert not (out / "results.json").exists() and 2 <= done < 5, "killed too late"
    assert final_state(out)["epoch"] >= done  # the checkpoint is never behind the metrics
    run_to_end([*RUN, "--out", str(out), "--resume"])
    assert_same_run(out, reference, exact=True)


def test_ctrl_c_saves_and_resume_is_bit_identical(tmp_path, reference):
    out = tmp_path / "interrupted"
    proc = popen([*RUN, "--out", str(out)])
    wait_for_epochs(proc, out, 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in err and "Traceback" not in err
    state = final_state(out)
    assert 1 <= state["epoch"] < 5 and not (out / "results.json").exists()
    run_to_end([*RUN, "--out", str(out), "--resume"])
    assert_same_run(out, reference, exact=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_two(args: list[str], out: Path) -> subprocess.CompletedProcess:
    """``tmaf train ARGS --out OUT`` under torchrun with 2 CPU processes; asserts success."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node",
           "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
           "-m", "tmaf_lab", "train", *args, "--out", str(out)]
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path):
    args = [*TINY, "--epochs", "2", "--subset", "1024", "--test-subset", "256"]
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    run_here([*args, "--out", str(single)])
    proc = torchrun_two(args, ddp)
    assert proc.stdout.count("epoch 2/2") == 1  # rank-0 logging only
    assert "x2" in proc.stdout
    assert_same_run(ddp, single, exact=False, atol=1e-4)


@pytest.mark.slow
def test_two_process_ddp_with_calibrate(tmp_path):
    """--calibrate under torchrun: the grids are those of the single-process run (every rank
    calibrates on the global first N batches), then DDP trains; rank 0 writes calibration.json."""
    out, single = tmp_path / "ddp", tmp_path / "single"
    args = [*TINY, "--activation", "tridiagonal", "--calibrate", "2", "--subset", "512",
            "--test-subset", "128", "--epochs", "1"]
    run_here([*args, "--out", str(single)])
    torchrun_two(args, out)
    stats = json.loads((out / "calibration.json").read_text())
    assert stats == json.loads((single / "calibration.json").read_text())
    assert all(s["rel_change"] == 0.0 for s in stats.values())
    grids = {}
    for run in (out, single):
        state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
        grids[run] = {k: v for k, v in state["model"].items() if k.endswith("breakpoints")}
    assert grids[out] and all(g.dim() == 2 for g in grids[out].values())
    # the grids were fixed before training; only the levels train, so they stay equal
    assert all(torch.equal(grids[out][k], grids[single][k]) for k in grids[out])
