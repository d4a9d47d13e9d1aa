"""``tmaf study``: every study's commands parse with the study's sizes, committed runs count as
done, the competence gate stops a stream, finished runs are kept on the next call."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tmaf_lab.approx import cli as approx_cli
from tmaf_lab.studies import STUDIES
from tmaf_lab.study import cli as study_cli
from tmaf_lab.train import cli as train_cli
from tmaf_lab.train.recipes import RECIPES

ROOT = Path(__file__).resolve().parents[2]


def printed(capsys, *argv: str) -> list[list[str]]:
    assert study_cli.main(list(argv)) == 0
    return [shlex.split(line) for line in capsys.readouterr().out.splitlines()]


def parse_train(argv):
    args = train_cli._parser().parse_args(argv)
    parser = train_cli._parser()
    if args.recipe:
        parser.set_defaults(**RECIPES[args.recipe])
    args = parser.parse_args(argv)
    return train_cli._config(args, args.seeds[0])


def test_committed_converged_mlp_runs_are_done(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    lines = printed(capsys, "converged", "--part", "mlp", "--print")
    assert len(lines) == 2 * 5 * 6 and all(line[0] == "done:" for line in lines)
    for name in ("approx", "train", "calibration"):
        states = printed(capsys, name, "--plan")
        assert states and all(s[:2] == ["[", "done]"] for s in states), name


@pytest.mark.parametrize("part, seeds, acts", [
    ("mlp", 5, {"relu", "prelu", "gelu", "pwl", "diagonal", "tridiagonal"}),
    ("cnn", 3, {"relu", "pwl", "diagonal", "tridiagonal"})])
def test_converged_training_parts(part, seeds, acts, tmp_path, capsys):
    cmds = printed(capsys, "converged", "--part", part, "--print", "--out", str(tmp_path))
    cfgs = [parse_train(c[2:]) for c in cmds]
    assert len(cfgs) == 2 * seeds * len(acts) and {c.activation for c in cfgs} == acts
    assert all(c.recipe == f"converged-{part}" and c.threads == 1 and "--resume" in cmd
               for c, cmd in zip(cfgs, cmds, strict=True))
    assert cmds[0][cmds[0].index("--out") + 1] == f"{tmp_path}/{part}/mnist/relu/seed0"
    runs = STUDIES["converged"].runs(part, tmp_path)
    assert runs[0].gate == f"{part}/mnist" and all(r.gate is None for r in runs[1:len(acts)])


def test_converged_approx_part(tmp_path, capsys):
    seen = set()
    for cmd in printed(capsys, "converged", "--part", "approx", "--print", "--out",
                       str(tmp_path)):
        cfg = approx_cli.config_from_args(approx_cli.build_parser().parse_args(cmd[2:]))
        assert cfg.steps == 10_000 and cfg.seeds == (0, 1, 2, 3, 4) and cfg.match_params
        seen.add((cfg.targets[0], cfg.width))
    assert seen == {(t, w) for t in ("sin1", "sin4", "sin16", "sin32", "chirp", "sin2d")
                    for w in (32, 64)}


def test_calibration_and_tuning_commands_parse(tmp_path, capsys):
    for cmd in printed(capsys, "calibration", "--print", "--out", str(tmp_path)):
        if cmd[1] == "train":
            assert parse_train(cmd[2:]).calibrate == 32
        else:
            approx_cli.config_from_args(approx_cli.build_parser().parse_args(cmd[2:]))
    cfgs = [parse_train(c[2:]) for c in printed(capsys, "tuning", "--print", "--out",
                                                  str(tmp_path))]
    assert len(cfgs) == 2 * 4 * 4 and all(c.val_split == 10000 for c in cfgs)
    assert {c.act_lr for c in cfgs} == {3e-4, 1e-3, 3e-3, 1e-2}


def test_gate_stops_the_stream_and_finished_runs_are_kept(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TMAF_DATA", str(tmp_path / "data"))  # no data: dry runs use synthetic
    base = ["converged", "--part", "mlp", "--seeds", "0", "--arms", "pwl", "--out",
            str(tmp_path), "--command-option=--dry-run"]
    assert study_cli.main(base) == 1  # a 2-step ReLU run is far below its bar
    assert "competence bar" in capsys.readouterr().err
    assert (tmp_path / "mlp/mnist/relu/seed0/results.json").is_file()
    assert not (tmp_path / "mlp/mnist/pwl").exists()  # nothing ran past the gate
    capsys.readouterr()
    lines = [c for c in printed(capsys, *base, "--print") if c[0] in ("done:", "tmaf")]
    assert lines[0] == ["done:", f"{tmp_path}/mlp/mnist/relu/seed0"]
    # both streams (MNIST, Fashion-MNIST) stopped after their ReLU run: only pwl is left
    assert [c[0] for c in lines] == ["done:", "tmaf", "done:", "tmaf"]
    assert all(c[c.index("--activation") + 1] == "pwl" for c in lines[1::2])


def test_unknown_study_and_part(capsys):
    assert study_cli.main(["nope"]) == 2 and "expected one of" in capsys.readouterr().err
    assert study_cli.main(["converged", "--part", "x", "--print"]) == 2


def test_gpt_study_runs_every_arm_of_a_seed_before_the_next_seed(tmp_path, capsys):
    cmds = printed(capsys, "gpt", "--print", "--out", str(tmp_path))
    cfgs = [train_cli._config(train_cli.parse_args(c[2:]), int(c[c.index("--seeds") + 1]))
            for c in cmds]
    arms = ["gelu", "relu", "pwl", "diagonal", "tridiagonal", "continuous_tridiagonal"]
    assert len(cfgs) == 5 * len(arms)
    assert [c.activation for c in cfgs[:len(arms)]] == arms
    assert [c.seed for c in cfgs] == [s for s in range(5) for _ in arms]
    assert all(c.recipe == "cpu-gpt" and c.model == "gpt" and c.steps == 3000 and c.threads == 1
               for c in cfgs)
    assert cmds[3][cmds[3].index("--out") + 1] == f"{tmp_path}/shakespeare-gpt/diagonal/seed0"
    assert {r.stream for r in STUDIES["gpt"].runs("main", tmp_path)} == {"A", "B"}


def test_converged_peers_part_fits_the_six_targets_with_the_peers(tmp_path, capsys):
    cmds = printed(capsys, "converged", "--part", "peers-approx", "--print", "--out",
                   str(tmp_path))
    assert len(cmds) == 6
    for c in cmds:
        assert c[c.index("--activations") + 1] == "pwl_knots,deepbspline,rational,kan"
        assert c[c.index("--steps") + 1] == "10000" and c[c.index("--width") + 1] == "32"
    assert {c[c.index("--target") + 1] for c in cmds} == {"sin1", "sin4", "sin16", "sin32",
                                                          "chirp", "sin2d"}
    assert cmds[0][cmds[0].index("--out") + 1] == f"{tmp_path}/approx-peers/w32/sin1"


def test_gpt_schedule_part_doubles_the_steps_of_gelu_and_relu(tmp_path, capsys):
    cmds = printed(capsys, "gpt", "--part", "schedule", "--print", "--out", str(tmp_path))
    cfgs = [train_cli._config(train_cli.parse_args(c[2:]), 0) for c in cmds]
    assert [c.activation for c in cfgs] == ["gelu", "relu"]
    assert all(c.steps == 6000 and c.recipe == "cpu-gpt" and c.warmup == 0.02 for c in cfgs)
    assert cmds[0][cmds[0].index("--out") + 1] == f"{tmp_path}/shakespeare-gpt-6000/gelu/seed0"
    assert {r.stream for r in STUDIES["gpt"].runs("schedule", tmp_path)} == {"A", "B"}


def _train_configs(cmds):
    return [train_cli._config(train_cli.parse_args(c[2:]), int(c[c.index("--seeds") + 1]))
            for c in cmds]


def test_cifar_study_pilot_then_gated_main(tmp_path, capsys):
    pilot = _train_configs(printed(capsys, "cifar", "--part", "pilot", "--print", "--out",
                                   str(tmp_path)))
    recipe = pilot[0]
    assert recipe.recipe == "cpu-cifar" and recipe.model == "airbench-white"
    assert all(c.activation == "relu" and c.seed == 0 and c.threads == 1 for c in pilot)
    changed = [{f for f in ("model", "bn_bias_lr_scale", "augment", "whiten_bias_epochs")
                if getattr(c, f) != getattr(recipe, f)} for c in pilot[1:]]
    assert changed == [{"model", "whiten_bias_epochs"}, {"bn_bias_lr_scale"}, {"augment"}]
    cmds = printed(capsys, "cifar", "--part", "main", "--print", "--out", str(tmp_path))
    main = _train_configs(cmds)
    arms = ["relu", "gelu", "pwl", "diagonal", "tridiagonal"]
    assert [c.activation for c in main] == [a for _ in range(3) for a in arms]
    assert [c.seed for c in main] == [s for s in range(3) for _ in arms]
    assert all(c.recipe == "cpu-cifar" and c.memory_format == "channels-last" for c in main)
    assert cmds[0][cmds[0].index("--out") + 1] == f"{tmp_path}/cifar10-airbench/relu/seed0"
    runs = STUDIES["cifar"].runs("main", tmp_path)
    assert [r.gate for r in runs[:2]] == ["cifar10-airbench", None]
    assert {r.stream for r in runs} == {"A", "B"}
    # the pilot's recipe run is the main part's relu/seed0: listed by both, planned once
    pilot_cmds = printed(capsys, "cifar", "--part", "pilot", "--print", "--out", str(tmp_path))
    assert pilot_cmds[0] == cmds[0]
    both = printed(capsys, "cifar", "--print", "--out", str(tmp_path))
    outs = [c[c.index("--out") + 1] for c in both]
    assert len(both) == 3 + 15 and len(set(outs)) == len(outs)
    assert outs[0] == f"{tmp_path}/cifar10-airbench/relu/seed0"
    calibrated = _train_configs(printed(capsys, "cifar", "--part", "calibrated", "--print",
                                        "--out", str(tmp_path)))
    assert {(c.activation, c.calibrate) for c in calibrated} == {("diagonal", 8)}


def test_cifar_competence_bar(tmp_path):
    import json

    from tmaf_lab.train.recipes import check

    for seed, acc in enumerate((0.915, 0.90)):
        run = tmp_path / "cifar10-airbench" / "relu" / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "results.json").write_text(json.dumps(
            {"activation": "relu", "dataset": "cifar10", "model": "airbench-white",
             "test_acc": acc}))
    assert check(tmp_path) == ["BELOW cifar10 airbench-white: relu 90.75 % over 2 seed(s), "
                               "bar 91.0 %"]


def test_the_approx_and_train_studies_are_exactly_what_results_holds():
    """`tmaf study approx` and `tmaf study train` rerun the committed runs: both directions."""
    from tmaf_lab.study.run import status

    found = sorted(p.parent for name in ("approx", "train") if (ROOT / "results" / name).is_dir()
                   for p in (ROOT / "results" / name).rglob("results.json"))
    if not found:
        pytest.skip("no runs under results/ in this checkout")
    runs = [(ROOT / "results" / name, r) for name in ("approx", "train")
            for part in STUDIES[name].parts for r in STUDIES[name].runs(part, ROOT / "results" / name)
            if r.command != "sweep"]
    roots = [out / r.folder for out, r in runs]
    extra = [str(f.relative_to(ROOT)) for f in found
             if not any(f == r or r in f.parents for r in roots)]
    assert not extra, f"runs under results/ that the studies would not rerun: {extra}"
    unfinished = [r.folder for out, r in runs if status(r, out) != "done"]
    assert not unfinished, f"study runs missing from results/: {unfinished}"


def test_the_sweep_runs_as_a_tmaf_subcommand(tmp_path, capsys):
    lines = printed(capsys, "approx", "--part", "sweep", "--print", "--out", str(tmp_path))
    assert lines[-1] == ["tmaf", "approx", "sweep", f"{tmp_path}/sweep"]


def test_dry_run_appends_toy_sizes_and_drops_the_gate(tmp_path, capsys):
    cmds = printed(capsys, "cifar", "--part", "main", "--dry-run", "--print", "--seeds", "0",
                   "--out", str(tmp_path))
    assert cmds and all("--dry-run" in c and c[c.index("--threads") + 1] == "1" for c in cmds)
    runs = study_cli.plan(study_cli.build_parser().parse_args(
        ["cifar", "--part", "main", "--dry-run"]))[2]
    assert all(r.gate is None for r in runs)
    assert str(study_cli.plan(study_cli.build_parser().parse_args(
        ["cifar", "--dry-run"]))[1]) == "runs/study-cifar-dry-run"
