"""Named training recipes, the competence check, shift augmentation, and the study script
scripts/converged.sh (every command it would run parses, with the study's sizes)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from tmaf_lab.approx import cli as approx_cli
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
        "model": "mlp", "epochs": 15, "batch_size": 128, "optimizer": "adam", "lr": 1e-3,
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
    assert set(COMPETENCE) == {(d, m) for d in ("mnist", "fashion-mnist") for m in ("mlp", "cnn")}


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


def script_commands(part: str, stream: str, **env) -> list[list[str]]:
    proc = subprocess.run(["bash", str(SCRIPT), part, stream], capture_output=True, text=True,
                          env={**os.environ, "PRINT": "1", **env}, check=True)
    return [shlex.split(line) for line in proc.stdout.splitlines() if not line.startswith("done:")]


def tmaf_args(cmd: list[str], sub: str) -> list[str] | None:
    """The options after ``tmaf SUB`` in a printed command, or None for another command."""
    i = next((i for i, x in enumerate(cmd) if x == "tmaf" or x.endswith("/tmaf")), None)
    return cmd[i + 2:] if i is not None and cmd[i + 1:i + 2] == [sub] else None


def parse_train(argv: list[str]) -> TrainConfig:
    args = train_cli._parser().parse_args(argv)
    parser = train_cli._parser()
    parser.set_defaults(**RECIPES[args.recipe])
    args = parser.parse_args(argv)
    return train_cli._config(args, args.seeds[0])


@pytest.mark.parametrize("part, seeds, acts, epochs", [
    ("mlp", 5, {"relu", "prelu", "gelu", "pwl", "diagonal", "tridiagonal"}, 15),
    ("cnn", 3, {"relu", "pwl", "diagonal", "tridiagonal"}, 5),
])
def test_training_parts_of_the_study_script(part, seeds, acts, epochs, tmp_path: Path):
    # an empty OUT: runs already committed under results/converged would print "done:" instead
    for stream, dataset in (("A", "mnist"), ("B", "fashion-mnist")):
        cmds = script_commands(part, stream, OUT=str(tmp_path))
        trains = [a for a in (tmaf_args(c, "train") for c in cmds) if a is not None]
        gates = [c for c in cmds if "tmaf_lab.train.recipes" in c]
        assert len(trains) == seeds * len(acts) and len(gates) == seeds
        cfgs = [parse_train(argv) for argv in trains]
        assert {c.activation for c in cfgs} == acts and {c.seed for c in cfgs} == set(range(seeds))
        assert all(c.dataset == dataset and c.epochs >= epochs and c.threads == 1
                   and c.model == part and c.subset is None for c in cfgs)
        outs = [a[a.index("--out") + 1] for a in trains]
        assert outs[0] == f"{tmp_path}/{part}/{dataset}/relu/seed0"
        assert len(set(outs)) == len(outs) and all("--resume" in a for a in trains)
        assert cfgs[0].activation == "relu"  # ReLU first in each seed, then the gate
        assert cmds.index(gates[0]) == 1


def test_approx_part_of_the_study_script(tmp_path: Path):
    seen = []
    for stream in ("A", "B"):
        for cmd in script_commands("approx", stream, OUT=str(tmp_path)):
            args = approx_cli.build_parser().parse_args(tmaf_args(cmd, "approx"))
            cfg = approx_cli.config_from_args(args)
            assert cfg.steps >= 10_000 and cfg.seeds == (0, 1, 2, 3, 4) and cfg.threads == 1
            assert set(cfg.activations) == {"relu", "prelu", "gelu", "pwl", "diagonal",
                                            "tridiagonal"} and cfg.match_params
            seen.append((cfg.targets[0], cfg.width))
    assert sorted(seen) == sorted((t, w) for t in ("sin1", "sin4", "sin16", "sin32", "chirp",
                                                   "sin2d") for w in (32, 64))
    # a finished fit is skipped on the next run
    done = tmp_path / "approx" / "w32" / "sin4"
    done.mkdir(parents=True)
    (done / "results.json").write_text("{}")
    cmds = script_commands("approx", "B", OUT=str(tmp_path), TARGETS="sin4")
    assert len(cmds) == 1 and cmds[0][cmds[0].index("--width") + 1] == "64"
    out = run_script("approx", "B", PRINT="1", OUT=str(tmp_path), TARGETS="sin4").stdout
    assert out.startswith(f"done: {done}\n")


def test_script_usage_error():
    proc = subprocess.run(["bash", str(SCRIPT), "mlp", "C"], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage" in proc.stderr


def run_script(*args: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **env}, timeout=300)


def test_script_trains_gates_and_resumes(tmp_path: Path):
    # the venv running the tests; an empty data cache: dry runs use synthetic images
    env = {"OUT": str(tmp_path / "out"), "SEEDS": "0", "ACTS": "pwl", "EXTRA": "--dry-run",
           "VENV": str(Path(sys.executable).parent.parent), "TMAF_DATA": str(tmp_path / "d")}
    tmp_path = tmp_path / "out"
    proc = run_script("mlp", "A", **env)  # a 2-step ReLU run is far below the 98.2 % bar
    assert proc.returncode == 1 and "misses its bar" in proc.stderr
    assert (tmp_path / "mlp/mnist/relu/seed0/results.json").is_file()
    assert not (tmp_path / "mlp/mnist/pwl").exists()  # nothing ran past the gate
    proc = run_script("mlp", "A", GATE="0", **env)
    assert proc.returncode == 0, proc.stderr
    assert f"done: {tmp_path}/mlp/mnist/relu/seed0" in proc.stdout  # kept, not retrained
    for f in ("config.json", "metrics.jsonl", "results.json"):
        assert (tmp_path / "mlp/mnist/pwl/seed0" / f).is_file()
    proc = run_script("report", PRINT="1", **env)
    assert proc.stdout.split()[1:3] == ["report", str(tmp_path / "mlp")]  # cnn, approx: absent
