"""The cpu-cifar recipe's pieces: the whitening stem (whitened patches, frozen filters, a bias
that trains in the first epochs only), test-time augmentation, and the recipe end to end on a
2000-image subset (what `tmaf train cifar10 --recipe cpu-cifar --epochs 1 --subset 2000` runs)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tmaf_lab.data import load_dataset
from tmaf_lab.data.cache import DataMissing
from tmaf_lab.models import WhiteningStem, create_model, init_whitening
from tmaf_lab.train import cli
from tmaf_lab.train.tta import _shift, tta_views


def _images(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 3, 16, 16, generator=g)
    return base + 0.8 * base.roll(1, dims=-1) + 0.5 * base[:, :1]  # correlated pixels, channels


def test_whitening_stem_whitens_the_patches_and_is_frozen():
    model = create_model("airbench-white", (3, 32, 32), 10, "relu", width=8)
    stem = model[0]
    assert isinstance(stem, WhiteningStem) and stem.out_channels == 24
    assert not stem.weight.requires_grad and stem.bias.requires_grad
    x = _images()
    init_whitening(model, x, eps=0.0)
    with torch.no_grad():
        out = torch.nn.functional.conv2d(x.double(), stem.weight.double())  # no bias
    half = out[:, :12].transpose(0, 1).reshape(12, -1)
    cov = torch.cov(half, correction=0)
    torch.testing.assert_close(cov, torch.eye(12, dtype=torch.float64), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, 12:], -out[:, :12])  # both signs
    with pytest.raises(ValueError, match="no whitening stem"):
        init_whitening(create_model("airbench", (3, 32, 32), 10, "relu", width=8), x)


def test_batchnorm_settings_of_the_whitened_model():
    model = create_model("airbench-white", (3, 32, 32), 10, "diagonal", width=8)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 6 and all(b.momentum == 0.4 and b.eps == 1e-12 for b in bns)
    assert all(not b.weight.requires_grad and b.bias.requires_grad for b in bns)


def test_shift_and_tta():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    right = _shift(x, 0, 1)
    assert torch.equal(right[..., 1:], x[..., :-1]) and torch.equal(right[..., 0], x[..., 1])
    down = _shift(x, 1, 0)
    assert torch.equal(down[..., 1:, :], x[..., :-1, :])
    up_left = _shift(x, -1, -1)
    assert torch.equal(up_left[..., :-1, :-1], x[..., 1:, 1:])

    views = [x, x.flip(-1)]
    views += [_shift(v, s, s) for v in views[:2] for s in (-1, 1)]
    for level, n in (("off", 1), ("flip", 2), ("flip-translate", 6)):
        got = tta_views(x, level)
        assert len(got) == n and all(torch.equal(a, b) for a, b in zip(got, views, strict=False))


def test_evaluate_averages_the_logits_of_each_levels_views():
    """Trainer.evaluate at every level against the mean of the model's logits over that
    level's views, computed here by hand (a model whose logits depend on the left column, so
    that flips and shifts change them)."""
    from tmaf_lab.data import synthetic
    from tmaf_lab.train.batches import normalise
    from tmaf_lab.train.config import TrainConfig
    from tmaf_lab.train.distributed import Dist
    from tmaf_lab.train.trainer import StopFlag, Trainer

    data = synthetic(n_train=32, n_test=24, shape=(3, 8, 8))
    cfg = TrainConfig(dataset="synthetic", model="cnn", width=4, activation="relu",
                      batch_size=8, eval_batch_size=10)
    trainer = Trainer(cfg, data, None, Dist(), torch.device("cpu"), StopFlag())

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(1)
            self.w = torch.nn.Parameter(torch.randn(3, 8, 10, generator=g))

        def forward(self, v):
            return torch.einsum("bch,chk->bk", v[..., :, 0], self.w)

    net = Probe()
    levels = ("off", "flip", "flip-translate")
    got = trainer.evaluate(net, levels)
    x = normalise(trainer.test_x, trainer.mean, trainer.std)
    y = trainer.test_y
    with torch.no_grad():
        for level in levels:
            logits = torch.stack([net(v) for v in tta_views(x, level)]).mean(0)
            loss = float(torch.nn.functional.cross_entropy(logits, y))
            acc = int((logits.argmax(1) == y).sum()) / len(y)
            assert got[level][0] == pytest.approx(loss, rel=1e-5)
            assert got[level][1] == acc
    assert got["off"] != got["flip-translate"]


def test_bad_whitening_options_are_clear_errors(capsys):
    assert cli.main(["cifar10", "--model", "cnn", "--whiten-bias-epochs", "2", "--dry-run",
                     "--out", "/tmp/never"]) == 2
    assert "--whiten-bias-epochs needs --model airbench-white" in capsys.readouterr().err
    assert cli.main(["cifar10", "--tta", "rotate", "--dry-run"]) == 2
    assert "--tta" in capsys.readouterr().err


def _cifar_installed() -> bool:
    try:
        load_dataset("cifar10")
    except DataMissing:
        return False
    return True


@pytest.mark.slow
def test_cpu_cifar_recipe_runs_and_freezes_the_stem_bias(tmp_path: Path):
    """The recipe on a small subset (the real data when installed, else the dry-run images):
    config, whitening from the data, the stem bias trained in epoch 1 and frozen from epoch 2
    (whiten_bias_epochs=1 here), TTA in evaluation, results.json."""
    out = tmp_path / "run"
    data = ["--subset", "600", "--test-subset", "200"] if _cifar_installed() else ["--dry-run"]
    argv = ["cifar10", "--recipe", "cpu-cifar", "--epochs", "2", "--width", "8",
            "--whiten-bias-epochs", "1", "--batch-size", "100", *data, "--seeds", "0",
            "--out", str(out)]
    if "--dry-run" in data:
        argv[argv.index("--epochs") + 1] = "1"
    assert cli.main(argv) == 0
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["recipe"] == "cpu-cifar" and cfg["model"] == "airbench-white"
    assert cfg["tta"] == "flip-translate" and cfg["whiten_bias_epochs"] == 1
    res = json.loads((out / "results.json").read_text())
    assert 0.0 <= res["test_acc"] <= 1.0
    state = torch.load(out / "checkpoint.pt", weights_only=False)["model"]
    w = state["0.weight"]
    assert w.shape == (24, 3, 2, 2) and torch.equal(w[12:], -w[:12])


def test_ema_update_averages_floats_and_copies_counts():
    from tmaf_lab.train.trainer import ema_update

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ema = __import__("copy").deepcopy(net).requires_grad_(False)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    net(torch.randn(8, 3))  # moves BatchNorm's statistics and its step count
    with torch.no_grad():
        net[0].weight.add_(1.0)
    ema_update(ema, net, 0.75)
    now, src = ema.state_dict(), net.state_dict()
    for k, v in now.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, 0.75 * before[k] + 0.25 * src[k])
        else:
            assert torch.equal(v, src[k])


def test_ema_run_evaluates_the_average_and_checkpoints_it(tmp_path: Path, capsys):
    out = tmp_path / "run"
    assert cli.main(["cifar10", "--model", "airbench-white", "--width", "8", "--ema", "0.9",
                     "--dry-run", "--seeds", "0", "--out", str(out)]) == 0
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert set(state["ema"]) == set(state["model"])
    assert not torch.equal(state["ema"]["2.weight"], state["model"]["2.weight"])
    assert cli.main(["cifar10", "--ema", "1.0", "--dry-run", "--out", str(tmp_path / "x")]) == 2
    assert "--ema must be in [0, 1)" in capsys.readouterr().err


def test_airbench_white_convs_start_as_identity_and_logits_are_scaled():
    from tmaf_lab.models import LOGIT_SCALE, Scale, _dirac_conv

    torch.manual_seed(0)
    x = torch.randn(2, 5, 6, 6)
    conv = _dirac_conv(5, 8)
    out = conv(x)
    torch.testing.assert_close(out[:, :5], x)  # the first c_in filters pass their channel
    assert out[:, 5:].abs().sum() > 0  # the others keep a random start
    square = _dirac_conv(8, 8)
    z = torch.randn(1, 8, 4, 4)
    torch.testing.assert_close(square(z), z)
    model = create_model("airbench-white", (3, 32, 32), 10, "relu", width=8)
    assert isinstance(model[-1], Scale) and model[-1].factor == LOGIT_SCALE == 1 / 9
    convs = [m for m in model if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 6
    for c in convs:
        k = min(c.in_channels, c.out_channels)
        torch.testing.assert_close(c.weight[:k], torch.nn.init.dirac_(torch.empty(k, *c.weight.shape[1:])))


def _recipe_config(**over):
    from tmaf_lab.train.config import TrainConfig
    from tmaf_lab.train.recipes import RECIPES

    return TrainConfig(dataset="cifar10", **{**RECIPES["cpu-cifar"], **over})


def test_batchnorm_shifts_get_their_own_learning_rate_and_the_same_decay_per_step():
    from tmaf_lab.train.optim import make_optimizer

    model = create_model("airbench-white", (3, 32, 32), 10, "diagonal", width=8)
    cfg = _recipe_config()
    assert cfg.bn_bias_lr_scale == 64.0
    groups = {g["name"]: g for g in make_optimizer(model, cfg).param_groups}
    assert set(groups) == {"weights", "norm shifts", "activation"}
    shifts = [m.bias for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {id(p) for p in groups["norm shifts"]["params"]} == {id(p) for p in shifts}
    assert groups["norm shifts"]["lr"] == pytest.approx(64 * cfg.lr)
    assert groups["norm shifts"]["lr"] * groups["norm shifts"]["weight_decay"] == pytest.approx(
        groups["weights"]["lr"] * groups["weights"]["weight_decay"])
    every = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(every) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    plain = make_optimizer(model, _recipe_config(bn_bias_lr_scale=1.0)).param_groups
    assert [g["name"] for g in plain] == ["weights", "activation"]


def test_flip_shift_augmentation_is_a_two_pixel_crop_with_flips():
    assert _recipe_config().augment_mode() == (2, True)
    assert _recipe_config(augment="shift").augment_mode() == (2, False)
    assert _recipe_config(augment="on").augment_mode() == (4, True)


def test_final_evaluation_reports_every_tta_level_of_net_and_average(tmp_path: Path):
    out = tmp_path / "run"
    assert cli.main(["cifar10", "--recipe", "cpu-cifar", "--width", "8", "--dry-run",
                     "--seeds", "0", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    final = res["final"]
    assert set(final) == {"net", "ema"}
    assert all(set(v) == {"off", "flip", "flip-translate"} for v in final.values())
    assert res["test_acc"] == final["ema"]["flip-translate"]["acc"]
    assert res["test_loss"] == final["ema"]["flip-translate"]["loss"]
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["test_acc"] == final["ema"]["off"]["acc"]  # per-epoch evaluations: no TTA
    plain = tmp_path / "plain"
    assert cli.main(["cifar10", "--model", "airbench-white", "--width", "8", "--dry-run",
                     "--seeds", "0", "--out", str(plain)]) == 0
    res = json.loads((plain / "results.json").read_text())
    last = json.loads((plain / "metrics.jsonl").read_text().splitlines()[-1])
    assert "final" not in res and res["test_acc"] == last["test_acc"]


def test_channels_last_trains_the_same_model(tmp_path: Path, capsys):
    states = {}
    for fmt in ("contiguous", "channels-last"):
        out = tmp_path / fmt
        assert cli.main(["cifar10", "--model", "airbench-white", "--width", "8", "--dry-run",
                         "--activation", "diagonal", "--memory-format", fmt, "--seeds", "0",
                         "--optimizer", "sgd", "--lr", "0.1", "--out", str(out)]) == 0
        states[fmt] = torch.load(out / "checkpoint.pt", weights_only=False)["model"]
    conv = states["channels-last"]["2.weight"]
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    # Two float32 trainings that differ only in the order of their sums (oneDNN picks other
    # convolution algorithms per memory format and per CPU): the rounding noise of a sum of K
    # terms grows like sqrt(K) u (u = 2^-24, unit roundoff), K = the longest reduction of a step
    # (the stem's weight gradient: batch 256 x 32 x 32 pixels). 16x that, relative to each value
    # and to the largest value in the model (small tensors, e.g. the biases after two steps,
    # carry the noise of the big ones): a wrong layout changes the model by the size of its
    # updates (1e-2 and more), far above this.
    tol = 16 * 2.0 ** -24 * math.sqrt(256 * 32 * 32)
    scale = max(v.abs().max().item() for v in states["contiguous"].values() if v.is_floating_point())
    for key, value in states["contiguous"].items():
        torch.testing.assert_close(states["channels-last"][key], value, atol=tol * scale, rtol=tol,
                                   msg=lambda m, key=key: f"{key}: {m}")
    assert cli.main(["shakespeare", "--memory-format", "channels-last", "--steps", "2",
                     "--dry-run", "--out", str(tmp_path / "t")]) == 2
    assert "--memory-format channels-last needs image data" in capsys.readouterr().err
    assert cli.main(["cifar10", "--bn-bias-lr-scale", "0", "--dry-run",
                     "--out", str(tmp_path / "b")]) == 2
    assert "--bn-bias-lr-scale must be > 0" in capsys.readouterr().err
