"""Every marked table in the committed results READMEs equals what its source files give
(``tmaf tables --check``), and a changed number is caught."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tmaf_lab.report import fit_tables, image_tables, speed_tables, tables, text_tables

ROOT = Path(__file__).resolve().parents[2]
READMES = [ROOT / "README.md", *sorted((ROOT / "results").rglob("README.md")),
           *sorted((ROOT / "docs").glob("*.md"))]


def test_committed_tables_match_their_sources():
    marked = [p for p in READMES if "<!-- table:" in p.read_text()]
    assert ROOT / "README.md" in marked and ROOT / "results/converged/README.md" in marked
    for path in marked:
        text = path.read_text()
        assert tables.regenerate(text, path.parent) == text, f"tmaf tables {path}"


def test_a_changed_number_is_caught(tmp_path, capsys):
    src = ROOT / "results/converged/README.md"
    copy = tmp_path / "README.md"
    copy.write_text(src.read_text().replace("| MNIST | prelu | 98.59 |", "| MNIST | prelu | 98.60 |"))
    for source in ("tuning", "mlp", "cnn", "approx-mixing", "approx", "approx-peers"):
        (tmp_path / source).symlink_to(src.parent / source)
    assert tables.main([str(copy), "--check"]) == 1 and "differs" in capsys.readouterr().out
    assert tables.main([str(copy)]) == 0 and copy.read_text() == src.read_text()


def test_a_changed_paired_difference_is_caught(tmp_path, capsys):
    """The paired-accuracy tables are recomputed from the runs' results.json: per-seed values
    and the 95 % intervals of the differences to ReLU and pwl."""
    src = ROOT / "results/converged/README.md"
    text = src.read_text()
    edited = text.replace("**+0.450 [+0.326, +0.574]**", "**+0.451 [+0.326, +0.574]**")
    assert edited != text
    copy = tmp_path / "README.md"
    copy.write_text(edited)
    for source in ("tuning", "mlp", "cnn", "approx-mixing", "approx", "approx-peers"):
        (tmp_path / source).symlink_to(src.parent / source)
    assert tables.main([str(copy), "--check"]) == 1 and "differs" in capsys.readouterr().out
    assert tables.main([str(copy)]) == 0 and copy.read_text() == text


def test_a_table_source_without_runs_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "README.md").write_text("<!-- table:paired_accuracy runs/mnist -->\n| x |\n"
                                        "<!-- /table -->\n")
    assert tables.main([str(tmp_path / "README.md"), "--check"]) == 2
    assert "runs/mnist is not a folder" in capsys.readouterr().err
    (tmp_path / "runs" / "mnist" / "pwl" / "seed0").mkdir(parents=True)
    (tmp_path / "runs" / "mnist" / "pwl" / "seed0" / "results.json").write_text('{"test_acc": 0.9}')
    assert tables.main([str(tmp_path / "README.md"), "--check"]) == 2
    assert "no finished relu run" in capsys.readouterr().err


def test_the_front_door_fitting_table_follows_the_report(tmp_path, capsys):
    src = ROOT / "README.md"
    text = src.read_text()
    row = "| sin(16 pi x) | 0.36 / 0.34 | better |"
    edited = text.replace(row, row.replace("0.36", "0.35"))
    assert edited != text
    copy = tmp_path / "README.md"
    copy.write_text(edited)
    (tmp_path / "results").symlink_to(ROOT / "results")
    assert tables.main([str(copy), "--check"]) == 1 and "differs" in capsys.readouterr().out
    assert tables.main([str(copy)]) == 0 and copy.read_text() == text


def _text_run(folder: Path, arm: str, seed: int, test_loss: float) -> None:
    run = folder / arm / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({
        "seed": seed, "steps": 10, "params": 5, "val_loss": test_loss, "test_loss": test_loss,
        "test_bpc": test_loss / math.log(2), "train_seconds": 1.0}))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 300, "val_loss": test_loss}) + "\n")


def test_text_paired_differences_and_their_intervals(tmp_path):
    """Paired test-loss differences to GELU and of TMAF to its continuous twin, over the
    common seeds, with the 95 % t interval (t_0.975,2 = 4.303)."""
    runs = tmp_path / "runs"
    for seed, (gelu, diag, pwl) in enumerate([(1.70, 1.60, 1.61), (1.72, 1.61, 1.60),
                                              (1.68, 1.62, 1.62)]):
        _text_run(runs, "gelu", seed, gelu)
        _text_run(runs, "diagonal", seed, diag)
        _text_run(runs, "pwl", seed, pwl)
    _text_run(runs, "relu", 0, 1.65)  # one seed: a mean without an interval
    table = text_tables.text_paired_table(runs)
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
    # diagonal - gelu: -0.10, -0.11, -0.06 -> mean -0.09, sd 0.02646, half 4.303 * sd / sqrt 3
    assert "**−0.0900 [−0.1557, −0.0243]**" in rows["diagonal"]
    # diagonal - pwl: -0.01, +0.01, 0 -> mean 0, interval across 0, not bold
    assert "+0.0000 [−0.0248, +0.0248]" in rows["diagonal"] and "**+0.0000" not in rows["diagonal"]
    assert "−0.0500 (n=1)" in rows["relu"] and rows["gelu"].endswith("|  |  |  |")
    assert "−0.0400 (n=1)" in rows["pwl"].split(" | ")[4]  # pwl - relu on seed 0: 1.61 - 1.65
    curve = text_tables.text_curve_table(runs)
    assert "gelu, seeds 0-2" in curve and "| 300 | 1.6500 | 1.7000 |" in curve


def test_text_paired_without_the_reference_is_a_clear_error(tmp_path):
    _text_run(tmp_path, "diagonal", 0, 1.6)
    with pytest.raises(ValueError, match="no finished gelu run"):
        text_tables.text_paired_table(tmp_path)
    with pytest.raises(ValueError, match="no finished text run"):
        text_tables.text_paired_table(tmp_path / "missing")


def _image_run(root: Path, name: str, accs: dict, seconds: float = 100.0, final: bool = True):
    folder = root / name
    folder.mkdir(parents=True)
    levels = {"net": {t: {"loss": 0.5, "acc": accs[f"net-{t}"]} for t in
                      ("off", "flip", "flip-translate")},
              "ema": {t: {"loss": 0.5, "acc": accs[f"ema-{t}"]} for t in
                      ("off", "flip", "flip-translate")}}
    record = {"epochs": 15, "train_seconds": seconds, "test_acc": accs["ema-flip-translate"]}
    (folder / "results.json").write_text(json.dumps({**record, **({"final": levels}
                                                                  if final else {})}))


def test_final_levels_table_reads_every_level_of_each_run(tmp_path):
    accs = {"net-off": 0.9140, "net-flip": 0.9214, "net-flip-translate": 0.9244,
            "ema-off": 0.9164, "ema-flip": 0.9217, "ema-flip-translate": 0.9248}
    _image_run(tmp_path, "relu/seed0", accs, 1880.2)
    _image_run(tmp_path, "gelu/seed0", {k: v - 0.01 for k, v in accs.items()}, 2000.0)
    lines = image_tables.final_level_table([tmp_path], tmp_path).splitlines()
    assert lines[0].startswith("| run | final (average, flips + shifts) | net, no TTA |")
    assert lines[2] == ("| [gelu/seed0](gelu/seed0/results.json) | 91.48 % | 90.40 % | 91.14 % "
                        "| 91.44 % | 90.64 % | 15 | 2000 |")
    assert lines[3].endswith("| 92.48 % | 91.40 % | 92.14 % | 92.44 % | 91.64 % | 15 | 1880 |")
    _image_run(tmp_path, "plain/seed0", accs, final=False)
    with pytest.raises(ValueError, match="plain/seed0/results.json has no final evaluation"):
        image_tables.final_level_table([tmp_path], tmp_path)
    with pytest.raises(ValueError, match="have no finished run"):
        image_tables.final_level_table([(tmp_path / "empty").mkdir() or tmp_path / "empty"], tmp_path)
    with pytest.raises(ValueError, match="missing is not a folder"):
        image_tables.final_level_table([tmp_path / "missing"], tmp_path)


def test_final_levels_table_names_runs_of_several_folders_below_the_root(tmp_path):
    accs = dict.fromkeys(("net-off", "net-flip", "net-flip-translate", "ema-off", "ema-flip",
                          "ema-flip-translate"), 0.9)
    _image_run(tmp_path / "pilot", "no-ema/relu/seed0", accs, 10.0)
    _image_run(tmp_path / "main", "relu/seed0", accs, 20.0)
    _image_run(tmp_path / "main", "gelu/seed0", accs, 30.0)
    text = tables.regenerate("<!-- table:final_levels pilot,main/relu -->\n<!-- /table -->",
                             tmp_path)
    names = [line.split("]")[0][3:] for line in text.splitlines()[3:-1]]
    assert names == ["main/relu/seed0", "pilot/no-ema/relu/seed0"]


def test_image_paired_table_pairs_to_relu_gelu_and_the_continuous_twin(tmp_path):
    accs = {"relu": (0.9240, 0.9250, 0.9230), "gelu": (0.9270, 0.9260, 0.9280),
            "pwl": (0.9260, 0.9255), "diagonal": (0.9265, 0.9262, 0.9250)}
    for arm, values in accs.items():
        for seed, acc in enumerate(values):
            _image_run(tmp_path, f"{arm}/seed{seed}", {"ema-flip-translate": acc} | dict.fromkeys(
                ("net-off", "net-flip", "net-flip-translate", "ema-off", "ema-flip"), acc), 1.0)
    rows = {line.split(" | ")[0][2:]: line.split(" | ")
            for line in image_tables.image_paired_table(tmp_path).splitlines()[2:]}
    assert list(rows) == ["relu", "gelu", "pwl", "diagonal"]
    assert rows["relu"][1:4] == ["0-2", "92.40, 92.50, 92.30", "92.40"]
    assert rows["relu"][4] == "" and rows["gelu"][5] == ""
    # gelu - relu: +0.3, +0.1, +0.5 points: mean +0.3, t(2) = 4.303, sd 0.2 -> +-0.497
    assert rows["gelu"][4] == "+0.300 [−0.197, +0.797]"
    # diagonal - pwl over the common seeds 0, 1: +0.05, +0.07
    assert rows["diagonal"][6].rstrip(" |").startswith("+0.060 [")
    assert rows["diagonal"][5].startswith("**−") or rows["diagonal"][5].startswith("−")
    assert rows["gelu"][6].rstrip(" |") == ""
    with pytest.raises(ValueError, match="no finished relu run"):
        image_tables.image_paired_table(tmp_path / "gelu")


def _kernels_csv(folder: Path, ratios: dict[str, float]) -> None:
    folder.mkdir(parents=True)
    lines = ["shape,phase,candidate,kind,ratio_vs_relu_kernel", "64x64,fwd,relu,relu,1.0"]
    lines += [f"64x64,{key.split('/')[0]},{key.split('/')[1]},diagonal,{r}" for key, r in ratios.items()]
    (folder / "kernels.csv").write_text("\n".join(lines) + "\n")


def test_kernel_rounds_pair_builds_round_by_round(tmp_path):
    """One column per label and round, the last label over the first as the geometric mean of
    the per-round quotients; baselines left out; a round folder without kernels.csv is an error."""
    _kernels_csv(tmp_path / "old-avx512-1", {"fwd/diag": 2.0, "bwd/diag": 1.5})
    _kernels_csv(tmp_path / "new-avx512-1", {"fwd/diag": 1.0, "bwd/diag": 1.5})
    _kernels_csv(tmp_path / "old-avx512-2", {"fwd/diag": 4.0})
    _kernels_csv(tmp_path / "new-avx512-2", {"fwd/diag": 1.0})
    _kernels_csv(tmp_path / "other-avx512-1", {"fwd/diag": 9.0})  # a label not asked for
    lines = speed_tables.kernel_rounds_table(tmp_path, ["old", "new"]).splitlines()
    assert lines[0] == "| isa | shape | phase | kernel | old 1 | new 1 | old 2 | new 2 | new / old |"
    # fwd: quotients 0.5 and 0.25 -> geometric mean 0.354; bwd: one round, 1.00
    assert lines[2] == "| avx512 | 64x64 | fwd | diag | 2.00x | 1.00x | 4.00x | 1.00x | 0.35 |"
    assert lines[3] == "| avx512 | 64x64 | bwd | diag | 1.50x | 1.50x |  |  | 1.00 |"
    assert len(lines) == 4
    (tmp_path / "old-avx2-1").mkdir()
    with pytest.raises(ValueError, match="no kernels.csv"):
        speed_tables.kernel_rounds_table(tmp_path, ["old", "new"])
    with pytest.raises(ValueError, match="no <label>"):
        speed_tables.kernel_rounds_table(tmp_path / "new-avx512-1", ["old", "new"])
    with pytest.raises(ValueError, match="expected FOLDER:BEFORE,AFTER"):
        tables.regenerate("<!-- table:kernel_rounds . -->\n<!-- /table -->", tmp_path)


def test_targets_of_two_runs_side_by_side(tmp_path):
    """A column per (run, threads) named with the run's ISA, a missed limit in bold, limits that
    differ by thread count listed each; a folder without targets.csv is an error."""
    head = "target,where,threads,backend,measured,unit,limit,met,seeds,isa"
    for name, isa, fb in (("a", "avx512", (1.2, 1.3)), ("b", "avx2", (1.6, 1.1))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "targets.csv").write_text("\n".join([
            head,
            f'"diag fwd+bwd",64x64,1,native,{fb[0]},x,1.25,{fb[0] <= 1.25},1,{isa}',
            f'"diag fwd+bwd",64x64,2,native,{fb[1]},x,1.15,{fb[1] <= 1.15},1,{isa}',
            f"first call,8x64,1,native,1.5,ms,10,True,1,{isa}"]) + "\n")
    lines = speed_tables.targets_table([tmp_path / "a", tmp_path / "b"], tmp_path).splitlines()
    assert lines[0] == ("| target | where | a (avx512, 1 t) | a (avx512, 2 t) | b (avx2, 1 t) | "
                        "b (avx2, 2 t) | limit |")
    assert lines[2] == ("| diag fwd+bwd | 64x64 | 1.20x | **1.30x** | **1.60x** | 1.10x | "
                        "<= 1.25x (1 t), <= 1.15x (2 t) |")
    assert lines[3] == "| first call | 8x64 | 1.50 ms |  | 1.50 ms |  | <= 10 ms |"
    with pytest.raises(ValueError, match="has no targets.csv"):
        speed_tables.targets_table([tmp_path / "c"], tmp_path)


def test_lookup_runs_side_by_side(tmp_path):
    """One column per bench run (its folder), banded rows only (ReLU and the diagonal kinds
    left out), the continuous / jump time ratio per shape and phase; a run without
    activations.csv is an error."""
    head = "shape,phase,kind,m,median_ms,ratio_vs_relu_eager"
    for name, (tri, cont) in (("chain", (2.0, 3.0)), ("tile", (1.0, 1.2))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "activations.csv").write_text("\n".join([
            head, "8x16,fwd,relu,0,0.5,1", "8x16,fwd,diagonal,9,0.6,1.2",
            f"8x16,fwd,tridiagonal,9,{tri},{tri / 0.5}", f"8x16,fwd,continuous_tridiagonal,9,{cont},{cont / 0.5}",
        ]) + "\n")
    lines = speed_tables.lookup_runs_table([tmp_path / "chain", tmp_path / "tile"], tmp_path).splitlines()
    assert lines[0] == "| shape | phase | candidate | chain | tile |"
    assert lines[2] == "| 8x16 | fwd | continuous_tridiagonal m = 9 | 6.00x | 2.40x |"
    assert lines[3] == "| 8x16 | fwd | tridiagonal m = 9 | 4.00x | 2.00x |"
    assert lines[4] == "| 8x16 | fwd | continuous / jump tridiagonal (time) | 1.50x | 1.20x |"
    assert len(lines) == 5
    with pytest.raises(ValueError, match="activations.csv is missing"):
        speed_tables.lookup_runs_table([tmp_path / "none"], tmp_path)


def _fit_target(folder: Path, target: str, errors: dict[str, list[float]], steps: int = 1000):
    runs = [{"activation": act, "seed": seed, "width": 8, "params": 100, "rel_l2": e,
             "train_seconds": 2.0, "diverged": False}
            for act, es in errors.items() for seed, e in enumerate(es)]
    (folder / target).mkdir(parents=True)
    (folder / target / "results.json").write_text(json.dumps({"steps": steps, "runs": runs}))


def test_fit_ratios_pair_arms_across_folders_by_seed(tmp_path):
    """Arms in two folders of one protocol pair by seed: geometric-mean ratio exp(mean log r)
    with its 95 % t interval, bold where it excludes 1; an arm in both folders is an error."""
    a, b = tmp_path / "a", tmp_path / "b"
    _fit_target(a, "sin16", {"relu": [1.0, 1.0, 1.0], "pwl": [0.5, 0.5, 0.5]})
    _fit_target(b, "sin16", {"kan": [0.1, 0.2, 0.4], "pwl_knots": [1.0, 1.1, 0.9]})
    table = fit_tables.fit_ratio_table([a, b], ["pwl", "kan", "pwl_knots"])
    row = table.splitlines()[2]
    # kan / relu: logs -2.303, -1.609, -0.916: mean -1.609 (0.20), sd 0.693, half-width
    # 4.303 * 0.693 / sqrt 3 = 1.722 -> [0.036, 1.1], across 1; pwl_knots: 0.997 [0.78, 1.3]
    assert row == ("| sin(16 pi x) | 1 | **0.50 [0.50, 0.50]** | 0.20 [0.036, 1.1] | "
                   "1.0 [0.78, 1.3] |")
    vs_pwl = fit_tables.fit_ratio_table([a, b], ["kan"], "pwl")
    assert "kan / pwl" in vs_pwl and "| 0.5 |" in vs_pwl
    costs = fit_tables.fit_cost_table([a, b])
    assert "| kan | 8 | 100 | 2.00 | 3 |" in costs
    _fit_target(tmp_path / "c", "sin16", {"relu": [1.0]})
    with pytest.raises(ValueError, match="'relu' of sin16 is in"):
        fit_tables.fit_ratio_table([a, tmp_path / "c"])
    with pytest.raises(ValueError, match="no runs of rational"):
        fit_tables.fit_ratio_table([a, b], ["rational"])
    with pytest.raises(ValueError, match="is not a folder"):
        fit_tables.fit_ratio_table([tmp_path / "missing"])


def _with_argv(folder: Path, *options: str) -> None:
    (folder / "config.json").write_text(json.dumps({"argv": [
        "tmaf", "train", "cifar10", "--recipe", "cpu-cifar", *options, "--seeds", "0",
        "--threads", "1", "--device", "cpu", "--out", str(folder), "--resume"]}))


def test_pilot_effects_reads_each_technique_from_the_runs(tmp_path):
    levels = ("net-off", "net-flip", "net-flip-translate", "ema-off", "ema-flip",
              "ema-flip-translate")
    recipe = {"net-off": 0.9140, "net-flip": 0.9214, "net-flip-translate": 0.9244,
              "ema-off": 0.9164, "ema-flip": 0.9217, "ema-flip-translate": 0.9248}
    _image_run(tmp_path, "main/relu/seed0", recipe)
    _with_argv(tmp_path / "main/relu/seed0", "--activation", "relu")
    # a second study run: TTA adds 1.00 point there (recipe run: 0.84)
    _image_run(tmp_path, "main/gelu/seed0", {**dict.fromkeys(levels, 0.9200),
                                             "ema-flip-translate": 0.9300})
    _image_run(tmp_path, "pilot/plain/relu/seed0", dict.fromkeys(levels, 0.9000))
    _with_argv(tmp_path / "pilot/plain/relu/seed0", "--model", "airbench",
               "--whiten-bias-epochs", "0")
    _image_run(tmp_path, "pilot/crop/relu/seed0", dict.fromkeys(levels, 0.9260))
    _with_argv(tmp_path / "pilot/crop/relu/seed0", "--augment", "on", "--activation", "relu")
    text = tables.regenerate("<!-- table:pilot_effects main/relu/seed0:pilot:main -->\n"
                             "<!-- /table -->", tmp_path)
    rows = [line.split(" | ") for line in text.splitlines()[3:-1]]
    assert [r[0][2:] for r in rows] == [
        "none (the recipe)",
        "without test-time augmentation (weight average, no flips or shifts)",
        "without the one-pixel shifts of the TTA (weight average, flips only)",
        "without the weight average (trained net, flips + shifts)",
        "`--augment on`", "`--model airbench --whiten-bias-epochs 0`"]
    assert rows[0][1:4] == ["[main/relu/seed0](main/relu/seed0/results.json)", "92.48", ""]
    assert rows[1][2:4] == ["91.64", "+0.840"]
    # over both study runs: +0.84 and +1.00 points, mean +0.92, t(1) = 12.706, sd 0.1131
    assert rows[1][4].startswith("+0.920 [−0.") and rows[1][4].endswith("(n=2) |")
    assert rows[3][2:4] == ["92.44", "+0.040"]
    assert rows[4][1:4] == ["[pilot/crop/relu/seed0](pilot/crop/relu/seed0/results.json)",
                            "92.60", "−0.120"]
    assert rows[5][2:4] == ["90.00", "+2.480"] and rows[5][4] == " |"
    # bad sources: a clear error naming what was expected
    with pytest.raises(ValueError, match="expected RECIPE_RUN:ABLATIONS"):
        tables.regenerate("<!-- table:pilot_effects main/relu/seed0 -->\n<!-- /table -->",
                          tmp_path)
    with pytest.raises(ValueError, match="not a finished run: no config.json"):
        image_tables.pilot_effects_table(tmp_path / "main/gelu/seed0", tmp_path / "pilot", None,
                                   tmp_path)
    _image_run(tmp_path, "pilot/same/relu/seed0", dict.fromkeys(levels, 0.9))
    _with_argv(tmp_path / "pilot/same/relu/seed0", "--activation", "relu")
    with pytest.raises(ValueError, match="changes nothing in the recipe"):
        image_tables.pilot_effects_table(tmp_path / "main/relu/seed0", tmp_path / "pilot", None,
                                   tmp_path)
