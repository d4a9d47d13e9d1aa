"""`tmaf reproduce --budget gpu`: the dry run end to end on the CPU, resume, the time budget,
a failing benchmark recorded, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tmaf_lab import gpu_study
from tmaf_lab.reproduce import main as reproduce

FILES = ("config.json", "metrics.jsonl", "results.json")


def test_dry_run_end_to_end_then_resume(tmp_path: Path, capsys):
    out = tmp_path / "gpu"
    argv = ["--budget", "gpu", "--dry-run", "--no-bench", "--activations", "relu,pwl,diagonal",
            "--out", str(out)]
    assert reproduce(argv) == 0
    runs = out / "train" / "cifar10-airbench"
    for act in ("relu", "pwl", "diagonal"):
        for seed in (0, 1):
            assert all((runs / act / f"seed{seed}" / f).is_file() for f in FILES), (act, seed)
    cfg = json.loads((runs / "pwl" / "seed1" / "config.json").read_text())["config"]
    assert cfg["recipe"] == "gpu-cifar" and cfg["model"] == "airbench-white" and cfg["dry_run"]
    assert cfg["width"] == 8 and cfg["tta"] == "flip-translate" and cfg["ema"] == 0.99  # dry run
    study = json.loads((out / "study.json").read_text())
    assert [s["status"] for s in study["steps"]] == ["done"] * 6
    assert study["note"] == "all seeds done" and study["config"]["seeds"] == [0, 1]
    stats = json.loads((out / "report" / "stats.json").read_text())["records"]
    pwl = next(r for r in stats if r["activation"] == "pwl")
    assert pwl["vs_relu"]["n"] == 2 and pwl["vs_relu"]["verdict"]
    assert "Paired differences to ReLU" in (out / "report" / "report.md").read_text()
    # the same command again: every run is kept, nothing retrains
    mtime = (runs / "relu" / "seed0" / "results.json").stat().st_mtime
    assert reproduce(argv) == 0
    study = json.loads((out / "study.json").read_text())
    assert all(s.get("reason") == "results.json exists" for s in study["steps"])
    assert (runs / "relu" / "seed0" / "results.json").stat().st_mtime == mtime


def test_no_round_of_seeds_starts_past_the_budget(tmp_path: Path):
    cfg = gpu_study.GpuStudyConfig(str(tmp_path / "g"), ("relu",), (0, 1, 2), minutes=0.01,
                                   bench=False, device="cpu", dry_run=True)
    assert gpu_study.run(cfg, ["test"]) == 0
    study = json.loads((tmp_path / "g" / "study.json").read_text())
    assert [s["step"] for s in study["steps"]] == ["train relu seed 0"]  # one timed round
    assert study["note"].startswith("stopped before seed 1")


def test_the_deadline_stops_a_round_that_overruns(tmp_path: Path):
    cfg = gpu_study.GpuStudyConfig(str(tmp_path / "g"), ("relu", "gelu"), (0, 1), minutes=0.01,
                                   bench=False, device="cpu", dry_run=True)
    assert gpu_study.run(cfg, ["test"]) == 0
    study = json.loads((tmp_path / "g" / "study.json").read_text())
    assert [s["step"] for s in study["steps"]] == ["train relu seed 0"]
    assert study["note"].startswith("stopped at gelu seed 0")


def test_a_failing_benchmark_is_recorded_not_raised(tmp_path: Path):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "bench").write_text("")  # a file where the benchmark wants its folder
    cfg = gpu_study.GpuStudyConfig(str(tmp_path / "g"), dry_run=True, device="cpu")
    rec = gpu_study.bench_step(cfg, tmp_path / "g")
    assert rec["status"] == "failed" and rec["exit_code"] != 0
    assert any("output folder" in line for line in rec["tail"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the no-GPU message")
def test_the_real_study_without_a_gpu_is_a_clear_error(tmp_path: Path, capsys):
    assert reproduce(["--budget", "gpu", "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "CUDA" in err and "--dry-run" in err
    assert not (tmp_path / "g").exists()


@pytest.mark.parametrize("args, message", [
    (["--activations", "relu,swishy"], "swishy"),
    (["--activations", "relu,relu"], "distinct"),
    (["--minutes", "0"], "> 0"),
    (["--seeds", "x"], "seed"),
])
def test_option_errors(args, message, tmp_path: Path, capsys):
    assert reproduce(["--budget=gpu", "--dry-run", "--out", str(tmp_path / "g"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err
