"""`tmaf approx` end to end at dry-run sizes: files, results.json schema, bad options."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from tmaf_lab.approx import cli as approx_cli
from tmaf_lab.cli import main as tmaf_main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RUN_KEYS = {"activation", "seed", "params", "rel_l2", "rmse", "max_err", "train_seconds",
            "width", "history", "diverged"}


def check_run_folder(folder: Path, activations: list[str], seeds: int, plots: bool = True) -> dict:
    """Every file of one run folder exists and results.json follows the documented schema."""
    for name in ("config.json", "results.json", "runs.csv", "summary.csv"):
        assert (folder / name).is_file(), name
    for name in ("fits.png", "error_vs_step.png", "activations.png"):
        if plots:
            assert (folder / name).read_bytes()[:8] == PNG_MAGIC, name
        else:
            assert not (folder / name).exists(), name
    res = json.loads((folder / "results.json").read_text())
    assert isinstance(res["target"], str) and isinstance(res["expression"], str)
    assert len(res["runs"]) == len(activations) * seeds
    for run in res["runs"]:
        assert RUN_KEYS <= set(run)
        assert run["activation"] in activations and 0 <= run["seed"] < seeds
        for key in ("rel_l2", "rmse", "max_err", "train_seconds"):
            assert math.isfinite(run[key]) and run[key] >= 0
        assert run["history"] and {"step", "rel_l2"} == set(run["history"][-1])
    assert list(res["summary"]) == activations
    for act, s in res["summary"].items():
        assert {"rel_l2_mean", "rel_l2_std", "params"} <= set(s)
        errs = [r["rel_l2"] for r in res["runs"] if r["activation"] == act]
        assert s["rel_l2_mean"] == pytest.approx(sum(errs) / len(errs))
    rows = list(csv.DictReader((folder / "runs.csv").open()))
    assert len(rows) == len(res["runs"]) and set(rows[0]) >= {"activation", "seed", "rel_l2"}
    cfg = json.loads((folder / "config.json").read_text())
    assert {"config", "argv", "commit", "environment"} <= set(cfg)
    return res


def test_dry_run_through_the_tmaf_command(tmp_path, capsys):
    out = tmp_path / "study"
    assert tmaf_main(["approx", "--dry-run", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    acts = ["relu", "prelu", "diagonal", "tridiagonal"]
    targets = approx_cli.DEFAULTS.targets[:2]  # a dry run keeps at most two targets
    for t in targets:
        res = check_run_folder(out / t, acts, seeds=1)
        assert res["target"] == t and f"target `{t}`" in printed
    summary = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["target"] for r in summary] == [t for t in targets for _ in acts]
    assert json.loads((out / "config.json").read_text())["config"]["dry_run"] is True


def test_expression_target_writes_into_out(tmp_path):
    out = tmp_path / "expr"
    expr = "sin(7*x)*exp(-x**2) + 0.1*abs(x)"
    rc = approx_cli.main(["--target", expr, "--activations", "relu,diagonal", "--domain", "-2,3",
                          "--dry-run", "--out", str(out), "--dtype", "float64", "--no-plots"])
    assert rc == 0
    res = check_run_folder(out, ["relu", "diagonal"], seeds=1, plots=False)
    assert res["target"] == expr and res["dim"] == 1 and res["domain"] == [-2.0, 3.0]
    assert res["dtype"] == "float64"


def test_two_dimensional_target_without_param_matching(tmp_path):
    out = tmp_path / "2d"
    rc = approx_cli.main(["--target", "sin2d", "--activations", "relu,tridiagonal",
                          "--no-match-params", "--width", "6", "--depth", "2", "--dry-run",
                          "--out", str(out)])
    assert rc == 0
    res = check_run_folder(out, ["relu", "tridiagonal"], seeds=1)
    assert res["dim"] == 2 and {r["width"] for r in res["runs"]} == {6}
    assert all(r["rel_l2"] < 10 for r in res["runs"])  # the toy grid does not sit on zeros
    params = {r["activation"]: r["params"] for r in res["runs"]}
    assert params["tridiagonal"] - params["relu"] == 2 * 6 * 3 * 10  # levels are counted


@pytest.mark.parametrize(("argv", "needle"), [
    (["--nope"], "unrecognized arguments"),
    (["--dim", "3"], "--dim"),
    (["--domain", "1,0"], "a < b"),
    (["--domain", "abc"], "two numbers"),
    (["--activations", "relu,bogus"], "bogus"),
    (["--activations", "relu,relu"], "repeat"),
    (["--target", "__import__('os')"], "'__'"),
    (["--target", "x.real"], "Attribute"),
    (["--target", "sin(x)*y", "--dim", "1"], "'y'"),
    (["--target", "log(x)"], "not finite"),
    (["--target", "1/x", "--domain", "0,1"], "not finite"),
    (["--target", "0*x"], "zero on the whole"),
    (["--dtype", "float16"], "float16"),
    (["--steps", "0"], "positive integer"),
    (["--lr", "nan"], "positive finite"),
    (["--breakpoints", "8"], "odd"),
    (["--seeds", "two"], "two"),
])
def test_bad_options_exit_2_with_one_error_line(argv, needle, tmp_path, capsys):
    assert approx_cli.main([*argv, "--dry-run", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and "Traceback" not in err
    assert not (tmp_path / "o" / "results.json").exists()


def test_help_exits_0(capsys):
    assert approx_cli.main(["--help"]) == 0
    assert "--match-params" in capsys.readouterr().out


def test_negative_domain_can_be_written_with_a_space():
    argv = approx_cli._fix_negative_domain(["--domain", "-2,2", "--width", "4"])
    args = approx_cli.build_parser().parse_args(argv)
    assert args.domain == (-2.0, 2.0) and args.width == 4


def test_unwritable_out_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert approx_cli.main(["--dry-run", "--out", str(blocker / "sub")]) == 2
    assert "not writable" in capsys.readouterr().err


def test_sweep_summary_reads_the_run_folders(tmp_path, capsys):
    from tmaf_lab.approx import sweep

    for w in ("4", "6"):
        assert approx_cli.main(["--target", "sin2", "--target", "sin4", "--activations",
                                "relu,diagonal", "--width", w, "--dry-run", "--no-plots",
                                "--out", str(tmp_path / f"w{w}")]) == 0
    assert sweep.main([str(tmp_path)]) == 0
    md = (tmp_path / "sweep.md").read_text()
    assert "| sin2 | sin4 |" in md and "| 6 | diagonal |" in md
    assert (tmp_path / "sweep.png").read_bytes()[:8] == PNG_MAGIC
    rows = sweep.collect(tmp_path)
    assert len(rows) == 2 * 2 * 2  # widths x targets x activations
    assert sweep.main([str(tmp_path / "missing")]) == 2


def test_calibrate_moves_tmaf_grids_and_records_them(tmp_path):
    """--calibrate: TMAF runs record tmaf.calibrate's statistics (exact ReLU start: no change of
    the function); ReLU runs are untouched and equal to an uncalibrated run, seed for seed."""
    runs = {}
    for flag in ([], ["--calibrate"]):
        out = tmp_path / ("cal" if flag else "fixed")
        argv = ["--target", "highfreq", "--activations", "relu,diagonal,tridiagonal", "--dry-run",
                "--no-plots", "--out", str(out), *flag]
        assert approx_cli.main(argv) == 0
        res = json.loads((out / "results.json").read_text())
        assert res["calibrate"] is bool(flag)
        runs[bool(flag)] = {r["activation"]: r for r in res["runs"]}
    cal, fixed = runs[True], runs[False]
    assert "calibration" not in cal["relu"] and cal["relu"]["rel_l2"] == fixed["relu"]["rel_l2"]
    for act in ("diagonal", "tridiagonal"):
        stats = cal[act]["calibration"]
        assert len(stats) == len(cal[act]["outside_grid"]) == 3  # one per hidden layer
        assert all(s["rel_change"] == 0.0 for s in stats.values())
        # the central 99 % of 64 samples: about one sample on each side lies outside
        assert all(s["outside_new"] <= 0.05 for s in stats.values()), stats
        assert "calibration" not in fixed[act]
        assert cal[act]["rel_l2"] != fixed[act]["rel_l2"]  # the grids did move


def test_recalibrate_every_refits_during_training(tmp_path):
    out = tmp_path / "re"
    argv = ["--target", "smooth", "--activations", "relu,diagonal", "--steps", "30",
            "--n-train", "256", "--seeds", "0", "--width", "8", "--no-plots", "--calibrate",
            "--recalibrate-every", "10", "--out", str(out)]
    assert approx_cli.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["recalibrate_every"] == 10
    runs = {r["activation"]: r for r in res["runs"]}
    assert "recalibrations" not in runs["relu"]
    recs = runs["diagonal"]["recalibrations"]
    assert [r["step"] for r in recs] == [10, 20]  # never after the last step
    assert all(0 <= r["outside_new"] <= 0.05 and r["rel_change"] >= 0 for r in recs)
    assert approx_cli.main([*argv[:-3], "--recalibrate-every", "-1", "--out",
                            str(tmp_path / "x")]) == 2


def test_outside_grid_is_per_channel():
    import tmaf
    from tmaf_lab.approx.fit import TargetData, outside_grid

    grids = torch.tensor([[-1.0, 0.0, 1.0], [-10.0, 0.0, 10.0]])
    act = tmaf.DiagonalTMAF(2, breakpoints=grids, channel_dim=-1)
    x = torch.tensor([[5.0, 5.0], [0.5, 0.5]])  # only channel 0 of the first row is outside
    data = TargetData(x, x[:, 0], x, x[:, 0], 0.0, 1.0, x)
    assert outside_grid(torch.nn.Sequential(act), data) == [0.25]
    act1 = tmaf.DiagonalTMAF(2, breakpoints=grids, channel_dim=1)  # channels not last
    x3 = x[:, :, None].expand(2, 2, 3)
    assert outside_grid(act1, TargetData(x3, x[:, 0], x3, x[:, 0], 0.0, 1.0, x3)) == [0.25]
