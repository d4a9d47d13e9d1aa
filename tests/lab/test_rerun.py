"""python -m tmaf_lab.train.rerun: replay a run's recorded command, compare, refuse bad input."""

from __future__ import annotations

import json

import pytest

from tmaf_lab.train import cli
from tmaf_lab.train.rerun import main, rerun_argv

TINY = ["synthetic", "--model", "mlp", "--width", "32", "--batch-size", "64", "--threads", "1",
        "--device", "cpu", "--subset", "128", "--test-subset", "64", "--activation", "diagonal"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    assert cli.main([*TINY, "--seed", "3", "--out", str(root / "one")]) == 0
    assert cli.main([*TINY, "--seeds", "0,1", "--out", str(root / "multi")]) == 0
    return root


def record(out):
    return json.loads((out / "rerun.json").read_text())


def test_rerun_of_a_run_on_the_same_machine_is_bit_identical(runs, tmp_path, capsys):
    assert main([str(runs / "one"), "--out", str(tmp_path / "re")]) == 0
    rec = record(tmp_path / "re")
    assert rec["verdict"] == "bit-identical" and rec["difference_pp"] == 0.0
    assert rec["same_cpu_model"] and rec["metric"] == "test_acc"
    assert rec["run_dir"] == str(runs / "one") and rec["rerun_dir"] == str(tmp_path / "re")
    assert rec["rerun"] == rec["original"] == json.loads(
        (runs / "one" / "results.json").read_text())["test_acc"]
    assert rec["command"][-4:] == ["--seeds", "3", "--out", str(tmp_path / "re")]
    assert str(runs / "one") not in rec["command"]
    assert rec["original_environment"]["torch_threads"] == 1
    assert "bit-identical" in capsys.readouterr().out


def test_one_seed_of_a_multi_seed_command(runs, tmp_path):
    assert main([str(runs / "multi" / "seed1"), "--out", str(tmp_path / "re")]) == 0
    rec = record(tmp_path / "re")
    assert rec["verdict"] == "bit-identical"
    assert json.loads((tmp_path / "re" / "results.json").read_text())["seed"] == 1


@pytest.mark.parametrize("shift, verdict, status", [
    (0.001, "within tolerance", 0), (-0.002, "within tolerance", 0),
    (0.01, "outside tolerance", 1), (-0.003, "outside tolerance", 1)])
def test_verdict_follows_the_tolerance(runs, tmp_path, shift, verdict, status):
    """A finished rerun in --out is compared again without training; the original's accuracy
    is shifted by `shift` (0.001 = 0.1 percentage point)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text((runs / "one" / "config.json").read_text())
    res = json.loads((runs / "one" / "results.json").read_text())
    res["test_acc"] += shift
    (run / "results.json").write_text(json.dumps(res))
    re = tmp_path / "re"
    re.mkdir()
    for f in ("config.json", "results.json"):
        (re / f).write_text((runs / "one" / f).read_text())
    assert main([str(run), "--out", str(re), "--tolerance", "0.25"]) == status
    rec = record(re)
    assert rec["verdict"] == verdict
    assert rec["difference_pp"] == pytest.approx(-100 * shift)


def test_recorded_out_seed_and_resume_are_replaced():
    cfg = {"argv": ["tmaf", "train", "mnist", "--out=old", "--seed", "7", "--resume",
                    "--recipe", "converged-mlp", "--seeds=1,2"]}
    assert rerun_argv(cfg, 2, "new") == ["mnist", "--recipe", "converged-mlp", "--seeds", "2",
                                         "--out", "new"]


@pytest.mark.parametrize("setup, needle", [
    ("missing", "config.json"),
    ("unfinished", "results.json"),
    ("same", "must differ from the run folder"),
    ("tolerance", "tolerance >= 0"),
    ("approx", "'tmaf', 'train'"),
    ("summary", "test_acc/test_loss"),
    ("no-value", "no value"),
])
def test_bad_input_exits_2_with_a_message(runs, tmp_path, capsys, setup, needle):
    run, extra = tmp_path / "run", []
    run.mkdir()
    cfg = json.loads((runs / "one" / "config.json").read_text())
    res = json.loads((runs / "one" / "results.json").read_text())
    out = tmp_path / "re"
    if setup != "missing":
        (run / "config.json").write_text(json.dumps(cfg))
    if setup not in ("missing", "unfinished"):
        (run / "results.json").write_text(json.dumps(res))
    if setup == "same":
        out = run
    elif setup == "tolerance":
        extra = ["--tolerance", "-1"]
    elif setup == "approx":
        cfg["argv"] = ["tmaf", "approx", "--target", "sin16"]
        (run / "config.json").write_text(json.dumps(cfg))
    elif setup == "summary":
        (run / "results.json").write_text(json.dumps({"kind": "summary", "n": 2}))
    elif setup == "no-value":
        cfg["argv"] = ["tmaf", "train", "synthetic", "--out"]
        (run / "config.json").write_text(json.dumps(cfg))
    assert main([str(run), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err
    assert not (out / "rerun.json").exists()


def test_a_failing_rerun_names_its_folder(runs, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    cfg = json.loads((runs / "one" / "config.json").read_text())
    cfg["argv"] = [*cfg["argv"], "--epochs", "0"]  # the train command refuses it
    (run / "config.json").write_text(json.dumps(cfg))
    (run / "results.json").write_text((runs / "one" / "results.json").read_text())
    assert main([str(run), "--out", str(tmp_path / "re")]) == 2
    assert "the rerun stopped with exit status 2" in capsys.readouterr().err
