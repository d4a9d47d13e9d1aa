"""`tmaf reproduce`: budgets, plan, dry run, skip/resume/continue-after-failure, final report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tmaf_lab import reproduce
from tmaf_lab.cli import main as tmaf_main


@pytest.fixture(autouse=True)
def no_data(tmp_path: Path, monkeypatch):
    """An empty data cache: every real data set counts as not installed."""
    monkeypatch.setenv("TMAF_DATA", str(tmp_path / "empty-cache"))


@pytest.mark.parametrize("name", sorted(reproduce.BUDGETS))
def test_budget_plan_covers_the_study(name: str, tmp_path: Path):
    budget = reproduce.BUDGETS[name]
    steps = reproduce.plan(budget, tmp_path)
    assert set(budget.activations) >= {"relu", "prelu", "diagonal", "tridiagonal"}
    assert {j.dataset for j in budget.train} >= {"mnist", "fashion-mnist", "cifar10"}
    assert budget.approx and all(len(j.seeds) >= 2 for j in budget.train)
    n_train = sum(len(j.activations) * len(j.seeds) for j in budget.train)
    assert len(steps) == len(budget.approx) + len(budget.sweeps) + n_train
    assert len({s.name for s in steps}) == len(steps)  # one folder per run
    for s in steps:
        assert s.argv[-1 if s.kind == "sweep" else s.argv.index("--out") + 1] == \
            str(tmp_path / s.name)
        if s.kind == "train":
            assert "--resume" in s.argv and s.argv[0] == s.dataset


def test_narrowing_options():
    cfg = reproduce.ReproduceConfig("cpu", "x", only=("approx", "cifar10"),
                                    activations=("relu", "diagonal"), seeds=(4,))
    budget = reproduce.select(cfg)
    assert [j.dataset for j in budget.train] == ["cifar10"]
    assert all(j.activations == ("relu", "diagonal") and j.seeds == (4,) for j in budget.train)
    assert all(set(j.activations) <= {"relu", "diagonal"} and j.seeds == (4,)
               for j in budget.approx)
    steps = reproduce.plan(budget, Path("x"), threads=1)
    approx = next(s for s in steps if s.kind == "approx")
    assert approx.argv[approx.argv.index("--seeds") + 1] == "4"  # seed 4, not 4 seeds
    train = next(s for s in steps if s.kind == "train")
    assert train.name.endswith("/seed4") and "--threads" in train.argv
    assert budget.sweeps == ("sweep",)


def test_dry_run_prints_plan_and_writes_nothing(tmp_path: Path, capsys):
    out = tmp_path / "study"
    assert tmaf_main(["reproduce", "--budget", "cpu", "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    budget = reproduce.BUDGETS["cpu"]
    assert f"{len(reproduce.plan(budget, out))} run(s)" in text
    assert "skip (data not installed)" in text and "tmaf approx --activations relu,prelu" in text
    assert "then: tmaf report" in text
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--budget", "huge", "--out", "x"], "invalid choice"),
    (["--budget", "smoke"], "--out"),
    (["--budget", "smoke", "--out", "x", "--only", "imagenet"], "unknown part"),
    (["--budget", "smoke", "--out", "x", "--activations", "gelu"], "not in the smoke budget"),
    (["--budget", "smoke", "--out", "x", "--seeds", "two"], "comma-separated seed values"),
    (["--budget", "smoke", "--out", "x", "--seeds", "1,1"], "distinct seed values"),
    (["--budget", "smoke", "--out", "x", "--bugdet", "cpu"], "unrecognized"),
])
def test_bad_options(args, message, capsys):
    assert reproduce.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err


def _statuses(out: Path) -> dict[str, str]:
    return {r["run"]: r["status"] for r in json.loads((out / "reproduce.json").read_text())["runs"]}


def test_reduced_smoke_run_skips_resumes_and_survives_failures(tmp_path: Path, capsys):
    pytest.importorskip("tmaf_lab.report.layer_figures")
    out = tmp_path / "study"
    args = ["reproduce", "--budget", "smoke", "--out", str(out), "--only",
            "approx,synthetic,mnist", "--activations", "relu,diagonal", "--seeds", "0"]
    # a damaged checkpoint makes one training run fail; the others must still run
    bad = out / "train" / "synthetic-mlp" / "relu" / "seed0"
    bad.mkdir(parents=True)
    (bad / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert tmaf_main(args) == 1
    status = _statuses(out)
    assert status == {"approx/highfreq": "done",
                      "train/synthetic-mlp/relu/seed0": "failed",
                      "train/synthetic-mlp/diagonal/seed0": "done",
                      "train/mnist-mlp/relu/seed0": "skipped",
                      "train/mnist-mlp/diagonal/seed0": "skipped"}
    runs = json.loads((out / "reproduce.json").read_text())["runs"]
    assert "tmaf data install mnist" in runs[-1]["reason"]
    md = (out / "report" / "report.md").read_text()
    assert "| highfreq |" in md and "| synthetic | mlp | 2 |" in md
    assert "Learned activations" in md  # from the diagonal run's checkpoint
    html = (out / "report" / "report.html").read_text()
    assert html.count('<img src="data:image/png;base64,') >= 3

    # rerun: finished runs are kept untouched, the repaired run resumes from scratch
    kept = out / "approx" / "highfreq" / "results.json"
    stamp = kept.stat().st_mtime_ns
    (bad / "checkpoint.pt").unlink()
    capsys.readouterr()
    assert tmaf_main(args) == 0
    status = _statuses(out)
    assert status["train/synthetic-mlp/relu/seed0"] == "done"
    assert kept.stat().st_mtime_ns == stamp
    runs = {r["run"]: r for r in json.loads((out / "reproduce.json").read_text())["runs"]}
    assert runs["approx/highfreq"]["reason"].startswith("results.json exists")
    assert "exit_code" in runs["train/synthetic-mlp/relu/seed0"]


def test_interrupt_stops_the_study(tmp_path: Path, monkeypatch, capsys):
    calls = []

    def fake_run(step):
        calls.append(step.name)
        return reproduce.EXIT_INTERRUPTED, ""  # what tmaf train returns after Ctrl-C

    monkeypatch.setattr(reproduce, "run_step", fake_run)
    out = tmp_path / "study"
    args = ["--budget", "smoke", "--out", str(out), "--only", "synthetic", "--seed", "0"]
    assert reproduce.main(args) == reproduce.EXIT_INTERRUPTED
    assert calls == ["train/synthetic-mlp/relu/seed0"]  # nothing after the interrupted run
    assert _statuses(out) == {"train/synthetic-mlp/relu/seed0": "interrupted"}
    assert "rerun the same command to resume" in capsys.readouterr().err
    assert not (out / "report").exists()


RESULTS = Path(__file__).resolve().parents[2] / "results"


def test_cpu_budget_is_exactly_what_results_holds():
    """`tmaf reproduce --budget cpu` claims to rerun the committed runs: both directions."""
    found = sorted(p.parent for part in ("approx", "train") if (RESULTS / part).is_dir()
                   for p in (RESULTS / part).rglob("results.json"))
    if not found:
        pytest.skip("no runs under results/ in this checkout")
    steps = [s for s in reproduce.plan(reproduce.CPU, RESULTS) if s.kind != "sweep"]
    roots = [RESULTS / s.name for s in steps]
    extra = [str(f.relative_to(RESULTS)) for f in found
             if not any(f == r or r in f.parents for r in roots)]
    assert not extra, f"runs under results/ that the cpu budget would not rerun: {extra}"
    unfinished = [s.name for s in steps if reproduce.status_of(s, RESULTS) != "done"]
    assert not unfinished, f"cpu budget runs missing from results/: {unfinished}"
