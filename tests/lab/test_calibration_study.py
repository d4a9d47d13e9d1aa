"""``tmaf study calibration`` and ``tmaf study tuning`` (every command parses with the study's
sizes, a dry run end to end) and ``tmaf compare`` (paired variant-vs-base statistics)."""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import replace
from pathlib import Path

import pytest

import tmaf
from tmaf_lab.approx import cli as approx_cli
from tmaf_lab.report import trees as pair
from tmaf_lab.report.stats import t975
from tmaf_lab.studies import STUDIES
from tmaf_lab.study import cli as study_cli
from tmaf_lab.study.run import execute, shown, status
from tmaf_lab.train import cli as train_cli
from tmaf_lab.train.recipes import RECIPES

ROOT = Path(__file__).resolve().parents[2]


def printed(part: str, stream: str, out: Path, study: str = "calibration") -> list[list[str]]:
    """The commands of one stream of a study part, as ``tmaf study --print`` shows them."""
    return [shlex.split(shown(r, out)) for r in STUDIES[study].runs(part, out)
            if r.stream == stream and status(r, out) != "done"]


def study(*argv: str) -> int:
    return study_cli.main(list(argv))


def after(cmd: list[str], sub: str) -> list[str]:
    i = next(i for i, x in enumerate(cmd) if x.endswith("tmaf"))
    assert cmd[i + 1] == sub
    return cmd[i + 2:]


def test_approx_part_pairs_fixed_with_calibrated(tmp_path):
    cfgs = {}
    for stream, mode in (("A", "fixed"), ("B", "calibrated"), ("C", "recalibrated")):
        cmds = printed("approx", stream, tmp_path)
        assert len(cmds) == 3
        for cmd in cmds:
            cfg = approx_cli.config_from_args(approx_cli.build_parser().parse_args(
                after(cmd, "approx")))
            assert cfg.calibrate is (mode != "fixed") and cfg.out.endswith(
                f"approx/{mode}/{cfg.targets[0]}")
            assert cfg.recalibrate_every == (1000 if mode == "recalibrated" else 0)
            cfgs[mode, cfg.targets[0]] = cfg
    for target in ("smooth", "highfreq", "chirp"):
        a = cfgs["fixed", target]
        assert a.steps >= 10_000 and a.seeds == (0, 1, 2, 3, 4) and a.threads == 1
        assert a.activations == ("diagonal", "tridiagonal") and a.width == 32
        # the arms differ only in calibrate, recalibrate_every and the folder
        arm = ("calibrate", "recalibrate_every", "out")
        for mode in ("calibrated", "recalibrated"):
            assert {k: v for k, v in vars(a).items() if k not in arm} == \
                {k: v for k, v in vars(cfgs[mode, target]).items() if k not in arm}


def test_mlp_part_matches_the_converged_recipe_plus_calibrate(tmp_path):
    for stream, dataset in (("A", "mnist"), ("B", "fashion-mnist")):
        cmds = printed("mlp", stream, tmp_path)
        assert len(cmds) == 10
        for cmd in cmds:
            argv = after(cmd, "train")
            args = train_cli._parser().parse_args(argv)
            parser = train_cli._parser()
            parser.set_defaults(**RECIPES[args.recipe])
            args = parser.parse_args(argv)
            cfg = train_cli._config(args, args.seeds[0])
            assert args.recipe == "converged-mlp" and cfg.calibrate == 32
            assert cfg.dataset == dataset and cfg.activation in ("diagonal", "tridiagonal")
            assert "--resume" in argv and cfg.threads == 1


def test_dry_run_end_to_end_and_report(tmp_path, monkeypatch):
    monkeypatch.setenv("TMAF_DATA", str(tmp_path / "d"))
    runs = [replace(r, options=(*r.options, "--dry-run"))
            for r in STUDIES["calibration"].runs("approx", tmp_path) if "smooth" in r.folder]
    runs += [replace(r, options=(*r.options, "--dry-run"))
             for r in STUDIES["calibration"].runs("mlp", tmp_path)
             if r.seed == 0 and r.dataset == "mnist"]
    assert set(execute(runs, tmp_path, streams=2).values()) == {"done"}
    assert all(status(r, tmp_path) == "done" for r in runs)  # resumable
    base = STUDIES["calibration"].reports[2][1]
    monkeypatch.setitem(STUDIES, "calibration", replace(STUDIES["calibration"], reports=tuple(
        tuple(str(tmp_path / "mlp") if x == base else x for x in r)
        for r in STUDIES["calibration"].reports)))  # the MLP pairs with itself
    assert study("calibration", "--report", "--out", str(tmp_path)) == 0
    for name in ("approx", "approx-recalibrated"):
        stats = json.loads((tmp_path / "report" / name / "stats.json").read_text())
        assert [r["group"][0] for r in stats["approx"]] == ["smooth", "smooth"]
    mlp = json.loads((tmp_path / "report/mlp/stats.json").read_text())["train"]
    assert all(r["diff_pp"] == 0 for r in mlp)  # self-pair


def _train_run(root: Path, act: str, seed: int, acc: float) -> None:
    d = root / act / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({
        "dataset": "mnist", "model": "mlp", "activation": act, "epochs": 15, "seed": seed,
        "params": 10, "test_acc": acc, "test_loss": 0.1, "train_seconds": 1.0}))


def _approx_study(root: Path, errors: dict[int, float]) -> None:
    root.mkdir(parents=True)
    runs = [{"activation": "diagonal", "seed": s, "width": 26, "params": 1, "rel_l2": e,
             "rmse": e, "max_err": e, "train_seconds": 1.0} for s, e in errors.items()]
    (root / "results.json").write_text(json.dumps({"target": "smooth", "runs": runs,
                                                   "summary": {}}))


def test_pair_statistics_against_hand_computed_values(tmp_path, capsys):
    base, var = tmp_path / "base", tmp_path / "var"
    for s, (a, b) in enumerate([(0.90, 0.91), (0.92, 0.94), (0.95, 0.95)]):
        _train_run(base, "diagonal", s, a)
        _train_run(var, "diagonal", s, b)
    _train_run(var, "diagonal", 7, 0.5)  # no partner: left out
    _approx_study(base / "fit", {0: 0.1, 1: 0.2, 2: 0.4})
    _approx_study(var / "fit", {0: 0.05, 1: 0.1, 2: 0.19})
    assert pair.main([str(base), str(var), "--out", str(tmp_path / "r")]) == 0
    stats = json.loads((tmp_path / "r" / "stats.json").read_text())
    (t,), (a,) = stats["train"], stats["approx"]
    d = [1.0, 2.0, 0.0]  # pp
    half = t975(2) * 1.0 / math.sqrt(3)  # sd of d is 1
    assert t["seeds"] == [0, 1, 2] and t["diff_pp"] == pytest.approx(1.0)
    assert (t["low"], t["high"]) == pytest.approx((1 - half, 1 + half))
    assert t["verdict"] == "no difference detected at n = 3" and sum(d) / 3 == 1.0
    logs = [math.log(0.5), math.log(0.5), math.log(0.475)]
    m = sum(logs) / 3
    sd = math.sqrt(sum((x - m) ** 2 for x in logs) / 2)
    assert a["ratio"] == pytest.approx(math.exp(m))
    assert a["high"] == pytest.approx(math.exp(m + t975(2) * sd / math.sqrt(3)))
    assert a["verdict"] == "better"  # the interval lies below 1
    assert "variant − base (pp)" in (tmp_path / "r" / "report.md").read_text()


def test_pair_refuses_duplicate_runs(tmp_path, capsys):
    base = tmp_path / "base"
    _train_run(base / "a", "diagonal", 0, 0.9)
    _train_run(base / "b", "diagonal", 0, 0.8)  # the same group and seed twice
    _train_run(tmp_path / "var", "diagonal", 0, 0.9)
    assert pair.main([str(base), str(tmp_path / "var"), "--out", str(tmp_path / "r")]) == 2
    assert "appears twice" in capsys.readouterr().err


def test_pair_errors(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    assert pair.main([str(tmp_path / "a"), str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert pair.main([str(tmp_path / "a"), str(tmp_path / "a"), "--out", str(tmp_path)]) == 2
    assert "has a partner" in capsys.readouterr().err


def test_coverage_of_trained_runs(tmp_path, capsys):
    """tmaf coverage: rebuilds fixed and calibrated runs from their
    checkpoints and measures the test inputs outside each grid; skips ReLU runs."""
    from tmaf_lab.report import coverage

    base = ["synthetic", "--width", "32", "--batch-size", "64", "--subset", "256",
            "--test-subset", "128", "--threads", "1", "--device", "cpu"]
    for name, extra in (("fixed", []), ("cal", ["--calibrate", "2"])):
        assert train_cli.main([*base, "--activation", "diagonal", *extra, "--out",
                               str(tmp_path / name)]) == 0
    assert train_cli.main([*base, "--out", str(tmp_path / "relu")]) == 0
    assert coverage.main([str(tmp_path), "--out", str(tmp_path / "cov")]) == 0
    data = json.loads((tmp_path / "cov" / "coverage.json").read_text())
    runs = {Path(r["run"]).name: r for r in data["runs"]}
    assert set(runs) == {"fixed", "cal"} and [Path(s["run"]).name for s in data["skipped"]] == [
        "relu"]
    assert runs["cal"]["calibrate"] == 2 and len(runs["cal"]["layers"]) == 2
    assert all(0.0 <= v <= 1.0 for r in runs.values() for v in r["layers"].values())
    # the same number straight from the model: the rebuilt model is the trained one
    model, _, _ = coverage.load_trained(tmp_path / "cal")
    assert all(m.breakpoints.dim() == 2 for _, m in tmaf.tmaf_modules(model))
    assert "--calibrate 2" in (tmp_path / "cov" / "coverage.md").read_text()
    assert coverage.main([str(tmp_path / "relu"), "--out", str(tmp_path / "c2")]) == 2
    assert "no finished TMAF training run" in capsys.readouterr().err


def test_coverage_keeps_earlier_rows_of_runs_without_a_checkpoint(tmp_path, capsys):
    """tmaf coverage --out DIR keeps the rows already in DIR/coverage.json of runs it does
    not measure again (their checkpoints are elsewhere); --fresh drops them; a malformed
    coverage.json is a clear error, not a lost file."""
    from tmaf_lab.report import coverage
    from tmaf_lab.train import checkpoint as ckpt

    base = ["synthetic", "--width", "32", "--batch-size", "64", "--subset", "256",
            "--test-subset", "128", "--threads", "1", "--device", "cpu", "--activation",
            "diagonal"]
    for seed in ("0", "1"):
        assert train_cli.main([*base, "--seeds", seed, "--out", str(tmp_path / f"s{seed}")]) == 0
    cov = tmp_path / "cov"
    assert coverage.main([str(tmp_path / "s0"), "--out", str(cov)]) == 0
    first = json.loads((cov / "coverage.json").read_text())["runs"]
    assert [Path(r["run"]).name for r in first] == ["s0"]
    (tmp_path / "s0" / ckpt.NAME).unlink()
    assert coverage.main([str(tmp_path), "--out", str(cov)]) == 0
    data = json.loads((cov / "coverage.json").read_text())
    rows = {Path(r["run"]).name: r for r in data["runs"]}
    assert set(rows) == {"s0", "s1"} and data["skipped"] == []
    assert rows["s0"] == first[0]  # kept as measured, with the command that measured it
    assert rows["s0"]["argv"] != rows["s1"]["argv"]
    md = (cov / "coverage.md").read_text()
    assert "| 2 |" in md and "1 run(s) measured by this command, 1 kept" in md
    assert coverage.main([str(tmp_path), "--out", str(cov), "--fresh"]) == 0
    data = json.loads((cov / "coverage.json").read_text())
    assert [Path(r["run"]).name for r in data["runs"]] == ["s1"]
    assert [Path(s["run"]).name for s in data["skipped"]] == ["s0"]
    capsys.readouterr()
    (cov / "coverage.json").write_text('{"rows": []}')
    assert coverage.main([str(tmp_path), "--out", str(cov)]) == 2
    err = capsys.readouterr().err
    assert "coverage.json" in err and "'runs'" in err and "--fresh" in err
    assert (cov / "coverage.json").read_text() == '{"rows": []}'


def test_tuning_search_and_table(tmp_path, capsys, monkeypatch):
    """tmaf study tuning: the same --act-lr grid for every learned activation, validation
    split only; tmaf tuning picks the best rate and refuses test runs."""
    from tmaf_lab.train import tuning

    cmds = printed("search", "B", tmp_path / "p", study="tuning")
    assert len(cmds) == 16
    for cmd in cmds:
        argv = after(cmd, "train")
        parser = train_cli._parser()
        parser.set_defaults(**RECIPES["converged-mlp"])
        args = parser.parse_args(argv)
        cfg = train_cli._config(args, args.seeds[0])
        assert cfg.val_split == 10000 and cfg.dataset == "fashion-mnist" and cfg.act_lr
    assert {after(c, "train")[after(c, "train").index("--activation") + 1] for c in cmds} == {
        "prelu", "pwl", "diagonal", "tridiagonal"}
    # a dry run has 512 training images: hold out fewer than that (the last --val-split wins)
    monkeypatch.setenv("TMAF_DATA", str(tmp_path / "d"))
    out = tmp_path / "t"
    runs = [replace(r, options=(*r.options, "--dry-run", "--val-split", "64"))
            for r in STUDIES["tuning"].runs("search", out)
            if r.arm == "diagonal" and r.stream == "A" and r.folder[-4:] in ("1e-3", "3e-3")]
    assert len(runs) == 2 and set(execute(runs, out).values()) == {"done"}
    assert tuning.main([str(out / "tuning")]) == 0
    best = json.loads((out / "tuning" / "tuning.json").read_text())
    assert [b["activation"] for b in best] == ["diagonal"]
    assert set(best[0]["val_acc"]) == {"0.001", "0.003"} and best[0]["best_tmaf_lr"] in (1e-3, 3e-3)
    _train_run(out / "tuning" / "mixed", "relu", 0, 0.9)  # a test-set run: refused
    assert tuning.main([str(out / "tuning")]) == 2
    assert "evaluated on the test set" in capsys.readouterr().err


def test_tuning_tie_goes_to_the_base_rate():
    from tmaf_lab.train.tuning import best_rates

    runs = [{"dataset": "d", "model": "m", "activation": "a", "seed": 0, "base_lr": 1e-3,
             "tmaf_lr": lr, "val_acc": acc, "run": "x"}
            for lr, acc in ((3e-4, 0.9), (1e-3, 0.9), (1e-2, 0.8))]
    assert best_rates(runs)[0]["best_tmaf_lr"] == 1e-3


def _val_run(root: Path, ds: str, act: str, lr: float, acc: float) -> None:
    d = root / ds / act / f"lr{lr}"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({
        "dataset": ds, "model": "mlp", "activation": act, "epochs": 15, "seed": 0,
        "params": 10, "val_acc": acc, "val_loss": 0.1, "train_seconds": 1.0}))
    (d / "config.json").write_text(json.dumps({"config": {"lr": 1e-3, "tmaf_lr": lr}}))


def test_tuning_final_trains_only_changed_rates_on_the_test_set(tmp_path, capsys):
    """tmaf study tuning --part final: each activation whose best validation rate is not the
    recipe's gets seeds 0-4 on the test set at that rate, beside the untuned runs."""
    from tmaf_lab.train import tuning

    tune = tmp_path / "tuning"
    for ds in ("mnist", "fashion-mnist"):
        for lr, (a, b) in {1e-3: (0.90, 0.91), 3e-3: (0.92, 0.905), 1e-2: (0.91, 0.90)}.items():
            _val_run(tune, ds, "diagonal", lr, a)
            _val_run(tune, ds, "pwl", lr, b)
    assert tuning.main([str(tune), "--changed"]) == 0
    assert sorted(capsys.readouterr().out.splitlines()) == [
        "fashion-mnist mlp diagonal 0.003", "mnist mlp diagonal 0.003"]
    assert not (tune / "tuning.json").exists()  # a query writes nothing
    cmds = printed("final", "B", tmp_path, study="tuning")
    assert len(cmds) == 5
    for seed, cmd in enumerate(cmds):
        argv = after(cmd, "train")
        parser = train_cli._parser()
        parser.set_defaults(**RECIPES["converged-mlp"])
        args = parser.parse_args(argv)
        cfg = train_cli._config(args, args.seeds[0])
        assert (cfg.dataset, cfg.activation, cfg.act_lr, cfg.val_split, cfg.seed) == (
            "fashion-mnist", "diagonal", 0.003, 0, seed)
        assert args.out == tmp_path / "mlp" / "fashion-mnist" / "diagonal-act-lr0.003" / \
            f"seed{seed}"
    (tmp_path / "mlp/mnist/diagonal-tmaf-lr0.003").mkdir(parents=True)  # the older name: kept
    assert all("diagonal-tmaf-lr0.003" in r.folder
               for r in STUDIES["tuning"].runs("final", tmp_path) if r.dataset == "mnist")
    _val_run(tmp_path / "same/tuning", "mnist", "diagonal", 1e-3, 0.95)  # best = the recipe's
    _val_run(tmp_path / "same/tuning", "mnist", "diagonal", 3e-3, 0.94)
    assert STUDIES["tuning"].runs("final", tmp_path / "same") == []
