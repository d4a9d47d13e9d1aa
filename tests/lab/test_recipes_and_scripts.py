"""Named training recipes, the competence check and shift augmentation (the studies that use
the recipes: tests/lab/test_study.py)."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from tmaf_lab.train import cli as train_cli
from tmaf_lab.train.batches import augment
from tmaf_lab.train.config import CHOICES, TrainConfig
from tmaf_lab.train.recipes import COMPETENCE, RECIPES, check
from tmaf_lab.train.recipes import main as recipes_main

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "converged.sh"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_values_are_valid_config_fields(name):
    names = {f.name for f in fields(TrainConfig)}
    for key, value in RECIPES[name].items():
        assert key in names, key
        if key in CHOICES:
            assert value in CHOICES[key], (key, value)
    TrainConfig(**RECIPES[name])  # builds


def test_recipes_are_pinned():
    """Committed runs are rerun from `--recipe NAME`: a recipe must not change under its name."""
    assert RECIPES["converged-mlp"] == {
        "model": "mlp", "epochs": 15, "batch_size": 128, "optimizer": "adamw", "lr": 1e-3,
        "weight_decay": 0.05, "schedule": "onecycle", "warmup": 0.05, "label_smoothing": 0.1,
        "augment": "off"}
    assert RECIPES["converged-cnn"] == {**RECIPES["converged-mlp"], "model": "cnn", "epochs": 5,
                                        "lr": 2e-3, "warmup": 0.1}


def test_recipe_fills_defaults_and_explicit_options_win(tmp_path: Path):
    out = tmp_path / "run"
    assert train_cli.main(["synthetic", "--recipe", "converged-mlp", "--lr", "0.003",
                           "--width", "16", "--dry-run", "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["recipe"] == "converged-mlp" and cfg["lr"] == 0.003  # given: wins
    assert cfg["weight_decay"] == 0.05 and cfg["label_smoothing"] == 0.1  # from the recipe
    assert cfg["model"] == "mlp" and cfg["augment"] == "off" and cfg["warmup"] == 0.05


def _fake_run(folder: Path, dataset: str, model: str, act: str, acc: float) -> None:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(
        {"dataset": dataset, "model": model, "activation": act, "test_acc": acc}))


def test_competence_check(tmp_path: Path, capsys):
    _fake_run(tmp_path / "a", "mnist", "mlp", "relu", 0.985)
    _fake_run(tmp_path / "b", "mnist", "mlp", "relu", 0.983)
    _fake_run(tmp_path / "c", "mnist", "mlp", "diagonal", 0.50)  # not a ReLU run: ignored
    _fake_run(tmp_path / "d", "fashion-mnist", "cnn", "relu", 0.914)
    lines = check(tmp_path)
    assert lines == ["ok    fashion-mnist cnn: relu 91.40 % over 1 seed(s), bar 91.5 %"
                     .replace("ok   ", "BELOW"),
                     "ok    mnist mlp: relu 98.40 % over 2 seed(s), bar 98.2 %"]
    assert recipes_main(["check", str(tmp_path)]) == 1
    (tmp_path / "d" / "results.json").unlink()
    assert recipes_main(["check", str(tmp_path)]) == 0
    assert recipes_main(["check", str(tmp_path / "nope")]) == 2
    assert set(COMPETENCE) == {(d, m) for d in ("mnist", "fashion-mnist")
                               for m in ("mlp", "cnn")} | {("cifar10", "airbench-white")}


def test_shift_augmentation_translates_without_flipping():
    x = torch.arange(3 * 1 * 6 * 6, dtype=torch.float32).view(3, 1, 6, 6)
    y = augment(x, torch.Generator().manual_seed(1), pad=2, flip=False)
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(3):
        crops = [xp[i, :, a:a + 6, b:b + 6] for a in range(5) for b in range(5)]
        assert any(torch.equal(y[i], c) for c in crops)
    assert TrainConfig(augment="shift").augment_mode() == (2, False)
    assert TrainConfig(dataset="cifar10").augment_mode() == (4, True)
    assert TrainConfig(dataset="mnist").augment_mode() is None


def test_cifar_recipes_are_pinned_and_the_gpu_one_is_the_cpu_one_scaled_up():
    assert RECIPES["cpu-cifar"] == {
        "model": "airbench-white", "width": 32, "epochs": 15, "batch_size": 512,
        "optimizer": "sgd", "lr": 0.75, "momentum": 0.85, "weight_decay": 1.33e-3,
        "bn_bias_lr_scale": 64.0, "schedule": "onecycle", "warmup": 0.23,
        "label_smoothing": 0.2, "augment": "flip-shift", "whiten_bias_epochs": 3,
        "tta": "flip-translate", "ema": 0.99, "memory_format": "channels-last",
        "eval_batch_size": 1000}
    assert RECIPES["gpu-cifar"] == {**RECIPES["cpu-cifar"], "width": 64, "epochs": 10,
                                    "eval_batch_size": 2000}
