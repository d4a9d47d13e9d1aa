"""`tmaf study gpu`: the dry run end to end on the CPU, resume, its report, and the deadline of
``--minutes`` (no round of seeds starts that would end after it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tmaf_lab.study import Run
from tmaf_lab.study import cli as study_cli
from tmaf_lab.study import run as runner

FILES = ("config.json", "metrics.jsonl", "results.json")


def test_dry_run_end_to_end_then_resume_and_report(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("TMAF_DATA", str(tmp_path / "no-data"))  # synthetic images
    out = tmp_path / "gpu"
    argv = ["gpu", "--dry-run", "--part", "train", "--arms", "relu,pwl", "--seeds", "1",
            "--out", str(out)]
    assert study_cli.main(argv) == 0
    runs = out / "train" / "cifar10-airbench"
    for act in ("relu", "pwl"):
        assert all((runs / act / "seed1" / f).is_file() for f in FILES), act
    assert not (runs / "relu" / "seed0").exists()
    cfg = json.loads((runs / "pwl" / "seed1" / "config.json").read_text())["config"]
    assert cfg["recipe"] == "gpu-cifar" and cfg["model"] == "airbench-white" and cfg["dry_run"]
    assert cfg["width"] == 8 and cfg["tta"] == "flip-translate" and not cfg["deterministic"]
    assert study_cli.main([*argv, "--report"]) == 0
    stats = json.loads((out / "report" / "stats.json").read_text())["records"]
    pwl = next(r for r in stats if r["activation"] == "pwl")
    assert pwl["vs_relu"]["n"] == 1 and pwl["vs_relu"]["verdict"]
    # the same command again: every run is kept, nothing retrains
    mtime = (runs / "relu" / "seed1" / "results.json").stat().st_mtime
    capsys.readouterr()
    assert study_cli.main(argv) == 0
    assert (runs / "relu" / "seed1" / "results.json").stat().st_mtime == mtime
    assert "2 done" in capsys.readouterr().out


def test_the_gpu_plan_runs_where_torch_finds_a_device(capsys):
    assert study_cli.main(["gpu", "--print", "--out", "g"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 * 10 + 1 and "--device" not in " ".join(lines)
    assert lines[-1] == "tmaf bench --quick --parts act,train --out g/bench"


def _fake_runs(monkeypatch, tmp_path, seconds: float) -> list[str]:
    """``launch`` that takes ``seconds`` of the study's clock and finishes the run."""
    now, started = [0.0], []
    monkeypatch.setattr(runner, "clock", lambda: now[0])

    def launch(run, out):
        started.append(run.folder)
        now[0] += seconds
        (out / run.folder).mkdir(parents=True)
        (out / run.folder / "results.json").write_text("{}")
        return 0

    monkeypatch.setattr(runner, "launch", launch)
    return started


RUNS = [Run("train", f"{a}/seed{s}", arm=a, seed=s) for s in range(3) for a in ("relu", "gelu")]


def test_no_round_of_seeds_starts_past_the_deadline(tmp_path, monkeypatch):
    started = _fake_runs(monkeypatch, tmp_path, 10.0)
    outcome = runner.execute(RUNS, tmp_path, deadline=45.0)  # rounds of 20 s: two fit
    assert started == ["relu/seed0", "gelu/seed0", "relu/seed1", "gelu/seed1"]
    assert outcome["relu/seed2"] == outcome["gelu/seed2"] == "not run"


def test_the_deadline_stops_a_round_that_overruns(tmp_path, monkeypatch):
    started = _fake_runs(monkeypatch, tmp_path, 50.0)
    outcome = runner.execute(RUNS, tmp_path, deadline=45.0)
    assert started == ["relu/seed0"] and outcome["gelu/seed0"] == "not run"


def test_without_a_deadline_every_run_starts(tmp_path, monkeypatch):
    started = _fake_runs(monkeypatch, tmp_path, 1e6)
    assert set(runner.execute(RUNS, tmp_path).values()) == {"done"} and len(started) == 6


@pytest.mark.parametrize("args, message", [
    (["--minutes", "0"], "> 0"), (["--part", "cpu"], "has parts train, bench"),
    (["--seeds", "x"], "seed")])
def test_option_errors(args, message, capsys):
    assert study_cli.main(["gpu", "--plan", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err
