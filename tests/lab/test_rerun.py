"""tmaf rerun: replay a run's recorded command, compare, refuse bad input."""

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
    assert rec["command"][2:6] == ["--seeds", "3", "--out", str(tmp_path / "re")]
    assert str(runs / "one") not in rec["command"]
    assert rec["original_environment"]["torch_threads"] == 1
    assert "bit-identical" in capsys.readouterr().out


def test_one_seed_of_a_multi_seed_command(runs, tmp_path):
    assert main([str(runs / "multi" / "seed1"), "--out", str(tmp_path / "re")]) == 0
    rec = record(tmp_path / "re")
    assert rec["verdict"] == "bit-identical"
    assert json.loads((tmp_path / "re" / "results.json").read_text())["seed"] == 1


def test_a_run_recorded_before_later_fields_existed_reruns(runs, tmp_path):
    """Runs committed before --recipe, --calibrate and --val-split existed lack those fields:
    their implicit values (no recipe, 0, 0) make them match their rerun, before and after."""
    old = tmp_path / "old"
    old.mkdir()
    config = json.loads((runs / "one" / "config.json").read_text())
    for key in ("recipe", "calibrate", "val_split"):
        del config["config"][key]
    (old / "config.json").write_text(json.dumps(config))
    (old / "results.json").write_text((runs / "one" / "results.json").read_text())
    assert main([str(old), "--out", str(tmp_path / "re")]) == 0
    assert record(tmp_path / "re")["verdict"] == "bit-identical"
    assert main([str(old), "--out", str(tmp_path / "re")]) == 0  # the finished rerun, reused


@pytest.fixture(scope="module")
def finished_rerun(runs):
    """A real rerun of runs/one, reused by the comparisons below without training."""
    out = runs / "rerun-of-one"
    assert main([str(runs / "one"), "--out", str(out)]) == 0
    return out


def shifted_copy(runs, tmp_path, key, shift):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text((runs / "one" / "config.json").read_text())
    res = json.loads((runs / "one" / "results.json").read_text())
    res[key] += shift
    (run / "results.json").write_text(json.dumps(res))
    return run


@pytest.mark.parametrize("shift, verdict, status", [
    (0.001, "within tolerance", 0), (-0.002, "within tolerance", 0),
    (0.01, "outside tolerance", 1), (-0.003, "outside tolerance", 1)])
def test_verdict_follows_the_tolerance(runs, finished_rerun, tmp_path, shift, verdict, status):
    """A finished rerun in --out is compared again without training; the original's accuracy
    is shifted by `shift` (0.001 = 0.1 percentage point)."""
    run = shifted_copy(runs, tmp_path, "test_acc", shift)
    assert main([str(run), "--out", str(finished_rerun), "--tolerance", "0.25"]) == status
    rec = record(finished_rerun)
    assert rec["verdict"] == verdict and rec["same_commit"] is True
    assert rec["difference_pp"] == pytest.approx(-100 * shift)


def test_same_accuracy_other_loss_is_within_tolerance_not_identical(runs, finished_rerun,
                                                                    tmp_path):
    run = shifted_copy(runs, tmp_path, "test_loss", 1e-6)
    assert main([str(run), "--out", str(finished_rerun)]) == 0
    assert record(finished_rerun)["verdict"] == "within tolerance"


def test_an_out_folder_holding_another_run_is_refused(runs, tmp_path, capsys):
    out = tmp_path / "re"
    out.mkdir()
    for f in ("config.json", "results.json"):  # seed 0 of the multi-seed run
        (out / f).write_text((runs / "multi" / "seed0" / f).read_text())
    assert main([str(runs / "one"), "--out", str(out)]) == 2
    assert "holds another run" in capsys.readouterr().err
    assert not (out / "rerun.json").exists()


def test_a_recorded_config_that_this_checkout_no_longer_gives_is_refused(runs, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    cfg = json.loads((runs / "one" / "config.json").read_text())
    cfg["config"]["lr"] = 0.5  # as if a recipe or default had changed since
    (run / "config.json").write_text(json.dumps(cfg))
    (run / "results.json").write_text((runs / "one" / "results.json").read_text())
    assert main([str(run), "--out", str(tmp_path / "re")]) == 2
    err = capsys.readouterr().err
    assert "trains a different config" in err and "lr: recorded 0.5" in err
    assert not (tmp_path / "re").exists()


def test_recorded_out_seed_and_resume_are_replaced():
    cfg = {"argv": ["tmaf", "train", "mnist", "--out=old", "--seed", "7", "--resume",
                    "--recipe", "converged-mlp", "--seeds=1,2"]}
    assert rerun_argv(cfg, 2, "new") == ["--seeds", "2", "--out", "new", "mnist", "--recipe",
                                         "converged-mlp"]


@pytest.mark.parametrize("setup, needle", [
    ("missing", "config.json"),
    ("unfinished", "results.json"),
    ("same", "must differ from the run folder"),
    ("tolerance", "tolerance >= 0"),
    ("approx", "'tmaf', 'train'"),
    ("summary", "test_acc/test_loss"),
    ("no-value", "no value"),
    ("bad-seed", "expected numbers"),
    ("bad-option", "does not parse under this checkout"),
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
    elif setup == "bad-seed":
        (run / "results.json").write_text(json.dumps({**res, "seed": None}))
    elif setup == "bad-option":
        cfg["argv"] = [*cfg["argv"], "--no-such-option"]
        (run / "config.json").write_text(json.dumps(cfg))
    elif setup == "no-value":
        cfg["argv"] = ["tmaf", "train", "synthetic", "--out"]
        (run / "config.json").write_text(json.dumps(cfg))
    assert main([str(run), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err
    assert not (out / "rerun.json").exists()


@pytest.mark.parametrize("status, started, needle", [
    (130, True, "repeat this command to continue it"), (3, True, "exit status 3"),
    (2, False, "could not start")])
def test_a_stopped_rerun_passes_on_the_train_status(runs, tmp_path, capsys, monkeypatch,
                                                    status, started, needle):
    out = tmp_path / "re"

    def stopped(argv):
        if started:
            out.mkdir()
            (out / "config.json").write_text("{}")
        return status

    monkeypatch.setattr(cli, "main", stopped)
    assert main([str(runs / "one"), "--out", str(out)]) == status
    err = capsys.readouterr().err
    assert needle in err and (str(out) in err) == started


@pytest.mark.parametrize("run", [
    "results/converged/mlp/mnist/prelu-tmaf-lr0.01/seed0",  # --tmaf-lr, optimizer "adam"
    "results/converged/mlp/fashion-mnist/diagonal/seed4",
    "results/calibration/mlp/mnist/diagonal/seed0",
    "results/train/mnist-mlp/relu/seed1"])
def test_committed_runs_resolve_to_their_recorded_config(run, tmp_path):
    """Every committed config still resolves under today's names (``--act-lr`` with the older
    ``--tmaf-lr``, ``adamw`` with the older ``adam``), so ``tmaf rerun`` accepts them."""
    from pathlib import Path

    from tmaf_lab.train.rerun import _config_changes

    folder = Path(__file__).resolve().parents[2] / run
    config = json.loads((folder / "config.json").read_text())
    seed = config["config"]["seed"]
    assert _config_changes(config, rerun_argv(config, seed, tmp_path / "r"), seed) == []
