"""tmaf train shakespeare --model gpt on a small cached text built here: the run's files and
losses, the activation seeing (B, T, C) with channels innermost, and exact resume after an
interruption (every parameter and the curve equal to an uninterrupted run's)."""

from __future__ import annotations

import json

import pytest
import torch

import tmaf
from tests.lab.test_text_data import archive, works
from tmaf_lab.data import load_dataset, text
from tmaf_lab.files import file_digest
from tmaf_lab.gpt import GPT
from tmaf_lab.models import create_model
from tmaf_lab.train import checkpoint as ckpt
from tmaf_lab.train import cli as train_cli
from tmaf_lab.train.distributed import Dist
from tmaf_lab.train.text import train_text
from tmaf_lab.train.trainer import StopFlag

TINY = ["--model", "gpt", "--width", "16", "--depth", "1", "--heads", "2", "--context", "16",
        "--batch-size", "8", "--eval-every", "4", "--eval-windows", "8", "--eval-batch-size", "64",
        "--threads", "1", "--device", "cpu"]


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    src = archive(tmp_path, works())
    monkeypatch.setattr(text, "SHA256", file_digest(src, "sha256"))
    root = tmp_path / "cache"
    text.install_text(root, src, log=lambda *a: None)
    monkeypatch.setenv("TMAF_DATA", str(root))
    return root


def test_a_short_run_beats_the_unigram_entropy_and_writes_its_files(data_root, tmp_path):
    out = tmp_path / "run"
    assert train_cli.main(["shakespeare", *TINY, "--activation", "diagonal", "--steps", "40",
                           "--lr", "3e-3", "--seeds", "0", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert {"val_loss", "val_bpc", "test_loss", "test_bpc"} <= set(res)
    assert res["val_loss"] < res["unigram_entropy"]
    assert abs(res["val_bpc"] - res["val_loss"] / 0.6931471805599453) < 1e-9
    curve = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [p["step"] for p in curve] == [4 * k for k in range(1, 11)]
    assert (out / "samples.txt").read_text().count("--- sample ") == 3


def test_tmaf_in_the_mlp_sees_channels_innermost():
    model = create_model("gpt", (8,), 11, "tridiagonal", width=8, depth=1, heads=2)
    assert isinstance(model, GPT)
    act = model.blocks[0].mlp.act
    assert isinstance(act, tmaf.TridiagonalTMAF) and act.channel_dim == -1
    assert not model.blocks[0].mlp.flatten
    assert model(torch.randint(0, 11, (3, 8))).shape == (3, 8, 11)
    assert model.head.weight is model.tok.weight


def test_resume_after_an_interruption_is_exact(data_root, tmp_path):
    def config(out):
        args = train_cli.parse_args(["shakespeare", *TINY, "--activation", "diagonal",
                                     "--steps", "12", "--seeds", "0", "--out", str(out)])
        return train_cli._config(args, 0)

    data = load_dataset("shakespeare")
    dist, cpu = Dist(), torch.device("cpu")
    full = tmp_path / "full"
    assert train_text(config(full), data, full, dist, cpu, StopFlag(), log=lambda *a: None)[0] == "done"

    class StopAfterStep5:  # what the signal handler sets, read once per step with no curve point
        calls = 0

        @property
        def requested(self):
            self.calls += 1
            return self.calls >= 5  # steps 1-3 and 5: stop after step 5

    part = tmp_path / "part"
    status, _ = train_text(config(part), data, part, dist, cpu, StopAfterStep5(), log=lambda *a: None)
    assert status == "interrupted" and not (part / "results.json").exists()
    status, _ = train_text(config(part), data, part, dist, cpu, StopFlag(), resume=True,
                           log=lambda *a: None)
    assert status == "done"
    a, b = ckpt.load(full), ckpt.load(part)
    assert a["step"] == b["step"] == 12
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert (full / "metrics.jsonl").read_text().count("\n") == 3
    drop = ("seconds",)
    strip = [{k: v for k, v in json.loads(line).items() if k not in drop}
             for line in (full / "metrics.jsonl").read_text().splitlines()]
    strip_b = [{k: v for k, v in json.loads(line).items() if k not in drop}
               for line in (part / "metrics.jsonl").read_text().splitlines()]
    assert strip == strip_b
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (full, part))
    assert ra["val_loss"] == rb["val_loss"] and ra["test_loss"] == rb["test_loss"]


def test_gpt_needs_shakespeare_and_a_step_budget(data_root, tmp_path, capsys):
    assert train_cli.main(["shakespeare", *TINY, "--out", str(tmp_path / "x")]) == 2
    assert "--steps" in capsys.readouterr().err
    assert train_cli.main(["mnist", "--model", "gpt", "--steps", "2", "--out", str(tmp_path / "y")]) == 2
    assert "--model gpt trains on shakespeare" in capsys.readouterr().err
