"""tmaf train in-process: dry runs of every model, outputs and their schemas, seeds, bad input."""

from __future__ import annotations

import json

import pytest
import torch

from tmaf_lab.seedstats import mean_std
from tmaf_lab.train import cli
from tmaf_lab.train.summary import table

TINY = ["synthetic", "--model", "mlp", "--width", "64", "--batch-size", "64", "--threads", "1",
        "--device", "cpu"]


def metrics(out):
    path = out / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def final_state(out):
    return torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)

METRIC_KEYS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds"]
RESULT_KEYS = ["dataset", "model", "activation", "epochs", "seed", "params", "test_acc",
               "test_loss", "train_seconds"]


@pytest.mark.parametrize("dataset, model, extra", [
    ("synthetic", "mlp", []), ("mnist", "cnn", ["--width", "8"]),
    ("cifar10", "fastnet", ["--width", "8"]), ("cifar10", "resnet18", ["--width", "8"])])
def test_dry_run_every_model(tmp_path, dataset, model, extra):
    out = tmp_path / "run"
    argv = [dataset, "--model", model, "--activation", "diagonal", "--batch-size", "16",
            "--threads", "1", "--dry-run", "--out", str(out), *extra]
    assert cli.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert list(res) == RESULT_KEYS and res["model"] == model and res["epochs"] == 1
    assert [list(r) for r in metrics(out)] == [METRIC_KEYS]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["activation"] == "diagonal" and cfg["argv"][:2] == ["tmaf", "train"]
    state = final_state(out)
    assert state["epoch"] == 1 and state["step"] == 0 and "rng" in state


def test_seeds_write_summary_with_mean_and_std(tmp_path):
    out = tmp_path / "multi"
    assert cli.main([*TINY, "--subset", "256", "--seeds", "0,1", "--out", str(out)]) == 0
    accs = [json.loads((out / f"seed{s}" / "results.json").read_text())["test_acc"]
            for s in (0, 1)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "summary" and summary["n"] == 2 and summary["seeds"] == [0, 1]
    assert summary["test_acc_mean"] == pytest.approx(mean_std(accs)[0])
    assert summary["test_acc_std"] == pytest.approx(torch.tensor(accs).std().item())
    assert "+-" in (out / "summary.md").read_text()
    row = table(tmp_path).splitlines()[2]
    assert row.startswith("| synthetic | mlp (64) | 256 | relu | 1 |") and "| 2 |" in row


def test_augmentation_and_tmaf_param_group(tmp_path):
    out = tmp_path / "aug"
    argv = ["synthetic", "--model", "fastnet", "--width", "4", "--activation", "tridiagonal",
            "--augment", "on", "--optimizer", "sgd", "--lr", "0.05", "--tmaf-lr", "0.01",
            "--subset", "128", "--test-subset", "64", "--batch-size", "32", "--threads", "1",
            "--out", str(out)]
    assert cli.main(argv) == 0
    groups = final_state(out)["optimizer"]["param_groups"]
    assert len(groups) >= 2 and {g["initial_lr"] for g in groups} == {0.05, 0.01}


def test_augment_keeps_shape_and_pixels():
    from tmaf_lab.train.batches import augment

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    y = augment(x, torch.Generator().manual_seed(0), pad=2)
    assert y.shape == x.shape
    assert set(y.unique().tolist()) <= set(x.unique().tolist())  # reflect padding: no new values


@pytest.mark.parametrize("argv, msg", [
    (["imagenet"], "invalid choice"),
    (["synthetic", "--model", "vgg"], "invalid choice"),
    (["synthetic", "--activation", "swishy"], "swishy"),
    (["synthetic", "--seed", "1", "--seeds", "1,2"], "give the seeds once"),
    (["synthetic", "--seeds", "1,x"], "comma-separated"),
    (["synthetic", "--epochs", "0"], "--epochs must be >= 1"),
    (["synthetic", "--lr", "-1"], "--lr must be > 0"),
    (["synthetic", "--subset", "0"], "--subset must be >= 1"),
    (["synthetic", "--warmup", "1.5"], "--warmup must be in"),
    (["synthetic", "--bogus-option"], "unrecognized"),
])
def test_bad_options_exit_2_with_message(tmp_path, capsys, argv, msg):
    assert cli.main([*argv, "--out", str(tmp_path / "o")]) == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "o" / "checkpoint.pt").exists()


def test_missing_data_names_the_install_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TMAF_DATA", str(tmp_path / "empty"))
    assert cli.main(["fashion-mnist", "--out", str(tmp_path / "o")]) == 2
    assert "tmaf data install fashion-mnist" in capsys.readouterr().err


def test_unwritable_output_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert cli.main([*TINY, "--dry-run", "--out", str(tmp_path / "file" / "run")]) == 2
    assert "not writable" in capsys.readouterr().err


def test_existing_runs_are_never_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    base = [*TINY, "--subset", "128", "--epochs", "2", "--out", str(out)]
    assert cli.main(base) == 0
    before = (out / "results.json").read_text()
    assert cli.main(base) == 2 and "already holds a finished run" in capsys.readouterr().err
    assert cli.main([*base, "--resume"]) == 0 and (out / "results.json").read_text() == before
    (out / "results.json").unlink()  # now it looks unfinished: a checkpoint without results
    assert cli.main(base) == 2 and "--resume" in capsys.readouterr().err
    assert cli.main([*base, "--resume", "--lr", "0.1"]) == 2
    assert "different config" in capsys.readouterr().err
    assert len(metrics(out)) == 2


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    out = tmp_path / "nan"
    real = torch.nn.functional.cross_entropy
    calls = {"n": 0}

    def poisoned(logits, y, **kw):  # finite for epoch 1 (4 steps), NaN from epoch 2 step 2
        calls["n"] += 1
        loss = real(logits, y, **kw)
        return loss * float("nan") if calls["n"] > 6 and logits.requires_grad else loss

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", poisoned)
    argv = [*TINY, "--subset", "256", "--epochs", "3", "--out", str(out)]
    assert cli.main(argv) == cli.EXIT_NONFINITE
    assert "NaN/inf" in capsys.readouterr().err
    state = final_state(out)
    assert state["epoch"] == 1 and len(metrics(out)) == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (out / "results.json").exists()


def test_dry_run_refuses_a_corrupted_cache(tmp_path, capsys, monkeypatch):
    """Only a missing data set falls back to synthetic images; a damaged one is an error."""
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    files = {k: {"file": f"{k}.npy", "sha256": "0" * 64, "bytes": 1, "shape": [1]}
             for k in ("train_images", "train_labels", "test_images", "test_labels")}
    (folder / "manifest.json").write_text(json.dumps({"format": 1, "files": files}))
    monkeypatch.setenv("TMAF_DATA", str(tmp_path / "data"))
    assert cli.main(["mnist", "--dry-run", "--out", str(tmp_path / "o")]) == 2
    assert "tmaf data install mnist" in capsys.readouterr().err


def test_calibrate_sets_per_channel_grids_before_the_first_step(tmp_path):
    """--calibrate N: (C, m) grids from N training batches, calibration.json, results.json; a
    resume takes the grids from the checkpoint (not from a new calibration); an uncalibrated
    checkpoint cannot be resumed with --calibrate."""
    out = tmp_path / "cal"
    argv = ["synthetic", "--model", "cnn", "--width", "8", "--activation", "tridiagonal",
            "--batch-size", "16", "--threads", "1", "--dry-run", "--calibrate", "2",
            "--out", str(out)]
    assert cli.main(argv) == 0
    stats = json.loads((out / "calibration.json").read_text())
    assert stats and all(s["rel_change"] == 0.0 for s in stats.values())
    assert json.loads((out / "results.json").read_text())["calibrate"] == 2
    model = final_state(out)["model"]
    grids = [v for k, v in model.items() if k.endswith("breakpoints")]
    assert grids and all(g.dim() == 2 and g.shape[1] == 9 for g in grids)
    fixed = tmp_path / "fixed"
    assert cli.main([*argv[:-4], "--out", str(fixed)]) == 0
    ref = final_state(fixed)["model"]
    assert all(v.dim() == 1 for k, v in ref.items() if k.endswith("breakpoints"))
    assert (out / "checkpoint.pt").exists()
    # resume of an unfinished run loads its (C, m) grids: mark them to see where they come from
    state = final_state(out)
    state["epoch"], state["metrics"] = 0, []
    marked = {k: v * 1.5 for k, v in state["model"].items() if k.endswith("breakpoints")}
    state["model"].update(marked)
    torch.save(state, out / "checkpoint.pt")
    (out / "results.json").unlink()
    assert cli.main([*argv, "--resume"]) == 0
    assert json.loads((out / "results.json").read_text())["calibrate"] == 2
    resumed = final_state(out)["model"]
    assert all(torch.equal(resumed[k], v) for k, v in marked.items())
    # a checkpoint written without calibrate (e.g. before the option existed) refuses it
    state = final_state(fixed)
    state["epoch"], state["metrics"] = 0, []
    del state["config"]["calibrate"]
    torch.save(state, fixed / "checkpoint.pt")
    (fixed / "results.json").unlink()
    assert cli.main([*argv[:-2], "--out", str(fixed), "--resume"]) == 2


def test_calibrate_bn_statistics_and_weights_are_as_without_it():
    from tmaf_lab.data import synthetic
    from tmaf_lab.train.config import TrainConfig
    from tmaf_lab.train.distributed import Dist
    from tmaf_lab.train.trainer import StopFlag, Trainer

    data = synthetic(n_train=64, n_test=16, shape=(1, 28, 28))
    kw = dict(dataset="synthetic", model="cnn", width=8, activation="diagonal", batch_size=16)
    dist = Dist()
    nets = [Trainer(TrainConfig(**kw, calibrate=c), data, None, dist, torch.device("cpu"),
                    StopFlag()).net for c in (0, 2)]
    for (k, a), b in zip(nets[0].state_dict().items(), nets[1].state_dict().values(),
                             strict=True):
        if not k.endswith(("breakpoints", "levels")):  # TMAF's own state moves to the new grid
            assert torch.equal(a, b), k


@pytest.mark.parametrize("argv, needle", [
    (["--calibrate", "-1"], "--calibrate must be >= 0"),
    (["--calibrate", "2", "--activation", "relu"], "needs a TMAF activation"),
])
def test_calibrate_bad_input(tmp_path, capsys, argv, needle):
    """Bad --calibrate values are one-line errors."""
    assert cli.main([*TINY, "--dry-run", *argv, "--out", str(tmp_path / "o")]) == 2
    assert needle in capsys.readouterr().err


def test_val_split_evaluates_on_held_out_training_images(tmp_path, capsys):
    """--val-split N: N training images (one fixed split) replace the test set; the outputs
    say val_, never test_; the split is the same for every seed and disjoint from training."""
    from tmaf_lab.data import synthetic

    data = synthetic(n_train=100, n_test=10)
    a, b = data.validation_split(20), data.validation_split(20)
    assert torch.equal(a.test_x, b.test_x) and len(a.train_y) == 80 and len(a.test_y) == 20
    rows = {tuple(r.flatten().tolist()) for r in data.train_x.flatten(1)}
    held = {tuple(r.flatten().tolist()) for r in a.test_x.flatten(1)}
    kept = {tuple(r.flatten().tolist()) for r in a.train_x.flatten(1)}
    assert held <= rows and kept <= rows and not (held & kept)
    out = tmp_path / "val"
    assert cli.main([*TINY, "--subset", "256", "--val-split", "64", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert "val_acc" in res and "test_acc" not in res and "val loss" in capsys.readouterr().out
    assert [list(r) for r in metrics(out)] == [[k.replace("test", "val") for k in METRIC_KEYS]]
    with pytest.raises(ValueError, match="need 0 < n < 100"):
        data.validation_split(100)
    assert cli.main([*TINY, "--subset", "256", "--val-split", "256", "--dry-run",
                     "--out", str(tmp_path / "x")]) == 2
    assert cli.main([*TINY, "--val-split", "-1", "--dry-run", "--out", str(tmp_path / "y")]) == 2
    assert "--val-split" in capsys.readouterr().err


@pytest.mark.parametrize("spelling", ["--act-lr", "--tmaf-lr"])
def test_act_lr_is_recorded_as_act_lr_and_older_configs_still_resume(spelling, tmp_path):
    """New runs record ``act_lr``; runs recorded with ``tmaf_lr`` compare equal under it (resume,
    rerun) and are read as their arm by the report and the tuning summary."""
    from tmaf_lab.report.stats import arm_name
    from tmaf_lab.train.config import config_diff, upgraded

    out = tmp_path / "a"
    assert cli.main([*TINY, "--activation", "diagonal", spelling, "3e-3", "--dry-run",
                     "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["act_lr"] == 3e-3 and "tmaf_lr" not in saved
    cfg = cli.resolved_config([*TINY, "--activation", "diagonal", "--act-lr", "3e-3",
                               "--dry-run"], saved["seed"])
    older = {("tmaf_lr" if k == "act_lr" else k): v for k, v in saved.items()}
    assert upgraded(older)["act_lr"] == 3e-3 and config_diff(older, cfg) == []
    assert config_diff({**older, "tmaf_lr": 1e-2}, cfg) == ["act_lr: checkpoint 0.01, now 0.003"]
    assert arm_name("diagonal", saved) == arm_name("diagonal", older) == "diagonal (tmaf_lr=0.003)"
