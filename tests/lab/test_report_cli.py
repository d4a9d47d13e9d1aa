"""`tmaf report` on fixture run folders: tables, self-contained HTML, skipped bad runs."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import pytest

from tmaf_lab.report import cli
from tmaf_lab.report.collect import collect

PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def write_approx(folder: Path, target: str, errors: dict[str, list[float]]) -> None:
    folder.mkdir(parents=True)
    runs = [{"activation": act, "seed": s, "params": 1000 + 10 * i, "rel_l2": e, "rmse": e / 2,
             "max_err": 3 * e, "train_seconds": 1.5,
             "history": [{"step": 10, "rel_l2": 2 * e}, {"step": 20, "rel_l2": e}]}
            for i, (act, errs) in enumerate(errors.items()) for s, e in enumerate(errs)]
    (folder / "results.json").write_text(json.dumps({"target": target, "runs": runs,
                                                     "summary": {}}))
    (folder / "config.json").write_text(json.dumps({"config": {"width": 8}, "argv": ["approx"],
                                                    "commit": "abc123"}))
    (folder / "fits.png").write_bytes(PNG_1PX)


def write_train(folder: Path, activation: str, seed: int, acc: float, *,
                checkpoint: bool = False, config: dict | None = None) -> None:
    folder.mkdir(parents=True)
    res = {"dataset": "mnist", "model": "mlp", "activation": activation, "epochs": 2,
           "seed": seed, "params": 5000, "test_acc": acc, "test_loss": 1 - acc,
           "train_seconds": 12.0}
    (folder / "results.json").write_text(json.dumps(res))
    (folder / "config.json").write_text(json.dumps({"config": config or {}, "argv": ["train"]}))
    lines = [json.dumps({"epoch": e, "train_loss": 1.0 / e, "train_acc": acc - 0.1 / e,
                         "test_loss": 1 - acc, "test_acc": acc - 0.05 / e, "lr": 0.1,
                         "seconds": 6.0}) for e in (1, 2)]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if checkpoint:
        import torch

        bps = torch.linspace(-2, 2, 5)
        levels = torch.zeros(3, 6)
        levels[:, 3:] = 1.0  # ReLU
        levels[1] = 0.0  # dead channel
        levels[2] = 0.5  # linear channel
        state = {"0.weight": torch.randn(3, 3), "1.levels": levels, "1.breakpoints": bps}
        torch.save({"model": state, "epoch": 2}, folder / "checkpoint.pt")


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    write_approx(root / "approx" / "smooth", "smooth",
                 {"relu": [0.10, 0.12, 0.14], "diagonal": [0.05, 0.06, 0.07]})
    write_approx(root / "approx" / "highfreq", "highfreq",
                 {"relu": [0.5, 0.5], "tridiagonal": [0.7, 0.8]})
    for seed, (r, d) in enumerate([(0.97, 0.975), (0.96, 0.972)]):
        write_train(root / "train" / f"relu-s{seed}", "relu", seed, r)
        write_train(root / "train" / f"diagonal-s{seed}", "diagonal", seed, d,
                    checkpoint=seed == 0)
    return root


def corrupt(root: Path) -> dict[str, str]:
    """Add one bad run of each kind; returns folder name -> expected reason fragment."""
    bad = root / "bad"
    (bad / "badjson").mkdir(parents=True)
    (bad / "badjson" / "results.json").write_text("{not json")
    write_train(bad / "missing", "relu", 9, 0.9)
    data = json.loads((bad / "missing" / "results.json").read_text())
    del data["test_acc"], data["params"]
    data["test_acc_x"] = 1
    (bad / "missing" / "results.json").write_text(json.dumps({**data, "test_acc": "high"}))
    (bad / "unfinished").mkdir()
    (bad / "unfinished" / "config.json").write_text("{}")
    (bad / "other").mkdir()
    (bad / "other" / "results.json").write_text(json.dumps([1, 2, 3]))
    write_approx(bad / "nanrun", "nan", {"relu": [0.1], "diagonal": [0.2]})
    data = json.loads((bad / "nanrun" / "results.json").read_text())
    data["runs"][1]["rel_l2"] = None
    (bad / "nanrun" / "results.json").write_text(json.dumps(data))
    with open(root / "train" / "relu-s0" / "metrics.jsonl", "a") as f:
        f.write("{truncated\n")
    return {"badjson": "malformed JSON", "missing": "missing ['params']",
            "unfinished": "without results.json", "other": "unrecognised",
            "nanrun": "runs[1]", "metrics.jsonl": "malformed metrics"}


def run_report(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_collect_reads_both_schemas(runs: Path):
    col = collect([runs])
    assert sorted(s.target for s in col.approx) == ["highfreq", "smooth"]
    assert len(col.train) == 4 and not col.skipped
    run = next(r for r in col.train if r.activation == "diagonal" and r.seed == 0)
    assert [m["epoch"] for m in run.metrics] == [1, 2]
    assert run.checkpoints and run.checkpoints[0].name == "checkpoint.pt"
    smooth = next(s for s in col.approx if s.target == "smooth")
    assert [p.name for p in smooth.images] == ["fits.png"]


@pytest.mark.parametrize("copy", [False, True])
def test_report_tables_and_self_contained_html(copy: bool, runs: Path, tmp_path: Path, capsys):
    (runs / "approx" / "highfreq" / "fits.png").unlink()  # no PNG: report draws the history
    (runs / "approx" / "sweep.png").write_bytes(PNG_1PX)  # a plot outside any run folder
    out = tmp_path / "report"
    args = [str(runs), "--out", str(out)] + (["--copy-images"] if copy else [])
    code, stdout, _ = run_report(args, capsys)
    assert code == 0, stdout
    md = (out / "report.md").read_text()
    assert "](figures/approx00-highfreq-history.png)" in md
    fits, sweep = (("figures/approx01-smooth-fits.png", "figures/other00-sweep.png") if copy
                   else ("../runs/approx/smooth/fits.png", "../runs/approx/sweep.png"))
    assert f"]({fits})" in md
    assert "approx01-smooth-history" not in md
    other = md.split("## Other figures")[1].split("## ")[0]
    assert f"]({sweep})" in other and "fits" not in other
    # smooth: relu 0.12 +- 0.02, diagonal 0.06 +- 0.01; paired d = -0.05, -0.06, -0.07:
    # mean -0.06, sd 0.01, 95 % t interval -0.06 +- 4.3027 * 0.01 / sqrt(3) = [-0.0848, -0.0352]
    assert "| approx/smooth | 0.12 ± 0.02 | 0.06 ± 0.01 |" in md
    half = 4.3027 * 0.01 / math.sqrt(3)
    assert "| diagonal | 3 | 1010 | 0.06 ± 0.01 |" in md
    assert f"| −0.06 | [−{0.06 + half:.3g}, −{0.06 - half:.3g}] | better |" in md
    # highfreq: tridiagonal - relu = +0.2, +0.3 over 2 seeds: the interval (t = 12.7) holds 0
    assert "| +0.25 | [−0.385, +0.885] | no difference detected at n = 2 |" in md
    # train: accuracies in %, relu 96.5 +- 0.707, diagonal 97.35 +- 0.212 -> +0.85 pp, paired
    # d = +0.5, +1.2 pp: [-3.6, +5.3]
    assert "| mnist | mlp | 2 | defaults | 96.5 ± 0.707 | 97.4 ± 0.212 |" in md
    assert "| +0.85 | [−3.6, +5.3] | no difference detected at n = 2 |" in md
    stats = json.loads((out / "stats.json").read_text())["records"]
    diag = next(r for r in stats if r["kind"] == "train" and r["activation"] == "diagonal")
    assert diag["vs_relu"]["n"] == 2 and diag["vs_relu"]["low"] < 0 < diag["vs_relu"]["high"]
    assert list((out / "figures").glob("train-*.png"))
    html = (out / "report.html").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in html and "https://" not in html and "<link" not in html
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert hrefs and all(h.startswith("#") for h in hrefs)  # only the table of contents
    assert "<script" not in html
    for img in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (out / img).is_file(), img
    assert "Nothing was skipped." in md


def test_report_lists_and_skips_bad_runs(runs: Path, tmp_path: Path, capsys):
    expected = corrupt(runs)
    out = tmp_path / "report"
    code, stdout, _ = run_report([str(runs), "--out", str(out)], capsys)
    assert code == 0
    md = (out / "report.md").read_text()
    skipped = md.split("## Skipped")[1]
    for name, reason in expected.items():
        line = next((ln for ln in skipped.splitlines() if name in ln), None)
        assert line is not None and reason in line, (name, skipped)
    assert "| approx/smooth |" in md  # good runs are still reported
    assert "nan [" not in md or "| relu |" in md


def test_diverged_runs_are_counted_not_averaged(tmp_path: Path, capsys):
    folder = tmp_path / "runs" / "chirp"
    write_approx(folder, "chirp", {"relu": [0.2, 0.4], "diagonal": [0.1, 0.3, 0.5]})
    data = json.loads((folder / "results.json").read_text())
    data["runs"][-1].update(rel_l2=float("nan"), rmse=float("nan"), diverged=True)
    data["runs"][-2].update(rel_l2=float("nan"))  # NaN without the flag: malformed
    (folder / "results.json").write_text(json.dumps(data))
    out = tmp_path / "report"
    assert run_report([str(tmp_path / "runs"), "--out", str(out)], capsys)[0] == 0
    md = (out / "report.md").read_text()
    assert "| chirp | 0.3 ± 0.141 | 0.1 (n=1) (1 diverged) | diagonal |" in md
    assert "| diagonal | 2 (1 diverged) |" in md
    assert "runs[3]: non-finite/non-numeric ['rel_l2']" in md.split("## Skipped")[1]


def test_learned_activation_figures_from_checkpoint(runs: Path, tmp_path: Path, capsys):
    pytest.importorskip("tmaf_lab.report.layer_figures")
    out = tmp_path / "report"
    assert run_report([str(runs / "train"), "--out", str(out)], capsys)[0] == 0
    md = (out / "report.md").read_text()
    section = md.split("## Learned activations")[1]
    assert "mnist / mlp / defaults / diagonal / seed 0" in section
    # the fixture checkpoint has 3 channels: one dead (all 0) and one linear (all 0.5)
    assert "| 1 | 3 | 0 | 1 | 1 |" in section
    assert len(list((out / "figures").glob("act00-*.png"))) >= 2


def test_checkpoints_from_reruns_feed_figures_not_tables(runs: Path, tmp_path: Path, capsys):
    pytest.importorskip("tmaf_lab.report.layer_figures")
    (runs / "train" / "diagonal-s0" / "checkpoint.pt").rename(tmp_path / "ckpt.pt")
    rerun = tmp_path / "reruns" / "diagonal-s0"
    write_train(rerun, "diagonal", 0, 0.975)  # same config, seed and result as the original
    (tmp_path / "ckpt.pt").rename(rerun / "checkpoint.pt")
    out = tmp_path / "report"
    args = [str(runs / "train"), "--out", str(out), "--checkpoints", str(tmp_path / "reruns")]
    assert run_report(args, capsys)[0] == 0
    md = (out / "report.md").read_text()
    assert "| diagonal | 0,1 |" in md  # the rerun is not counted as another seed
    section = md.split("## Learned activations")[1]
    assert "a rerun of" in section and "identical" in section
    assert "--checkpoints" in md.split("\n")[2]  # the header records the full command
    # a rerun whose result differs is flagged
    data = json.loads((rerun / "results.json").read_text())
    (rerun / "results.json").write_text(json.dumps({**data, "test_acc": 0.5}))
    assert run_report(args, capsys)[0] == 0
    assert "DIFFERENT" in (out / "report.md").read_text()


def test_plan_writes_nothing(runs: Path, tmp_path: Path, capsys):
    out = tmp_path / "report"
    code, stdout, _ = run_report([str(runs), "--out", str(out), "--plan"], capsys)
    assert code == 0 and "2 approx" in stdout and "4 train" in stdout
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--out", "x"], "RUN_DIR"),
    (["nowhere-xyz", "--out", "x"], "not found"),
    (["{runs}", "--out", "x", "--colour"], "unrecognized arguments"),
    (["{runs}", "--out", "x", "--max-images-per-run", "-1"], "must be >= 0"),
    (["{runs}", "--out", "{runs}/approx/smooth/results.json/report"], "not writable"),
])
def test_cli_errors(args, message, runs: Path, capsys):
    args = [a.replace("{runs}", str(runs)) for a in args]
    assert cli.main(args) == 2
    assert not (runs / "approx" / "smooth" / "results.json").is_dir()
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err


SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "screenshot_report.sh"


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium")
def test_report_renders_in_headless_chromium(runs: Path, tmp_path: Path, capsys):
    import subprocess

    out = tmp_path / "report"
    assert run_report([str(runs / "approx"), "--out", str(out)], capsys)[0] == 0
    shot = tmp_path / "shot.png"
    proc = subprocess.run(["bash", str(SCRIPT), str(out / "report.html"), str(shot), "800,600"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    n_img = (out / "report.html").read_text().count("<img ")
    assert f"IMGCHECK total={n_img} loaded={n_img} " in proc.stdout and n_img >= 2
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a broken image must be caught
    (out / "broken.html").write_text('<html><body><img src="data:image/png;base64,AAAA">'
                                     "</body></html>")
    proc = subprocess.run(["bash", str(SCRIPT), str(out / "broken.html"), str(shot), "800,600"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "0 of 1 images loaded" in proc.stderr


def test_pwl_runs_get_learned_shape_figures(tmp_path: Path, capsys):
    import torch

    from tmaf_lab.models import act_factory
    from tmaf_lab.report.figures import tmaf_layers_from_checkpoint

    root = tmp_path / "runs"
    for seed, (r, p) in enumerate([(0.97, 0.975), (0.96, 0.972)]):
        write_train(root / f"relu-s{seed}", "relu", seed, r)
        write_train(root / f"pwl-s{seed}", "pwl", seed, p)
    layer = act_factory("pwl")(3)
    with torch.no_grad():
        layer.levels[0, 0] = -0.5  # a leaky left half in channel 0
    state = {f"1.{k}": v for k, v in layer.state_dict().items()}
    torch.save({"model": state}, root / "pwl-s0" / "checkpoint.pt")
    out = tmp_path / "report"
    code, _, _ = run_report([str(root), "--out", str(out)], capsys)
    assert code == 0
    md = (out / "report.md").read_text()
    assert "## Learned activations" in md and "pwl / seed 0: F(y)" in md
    assert (out / "figures" / "act00-mnist-mlp-pwl-s0-activations.png").is_file()
    # a checkpoint of the former lab module (slopes, not levels) rebuilds the same layer
    old = {"model": {"1.slopes": layer.levels.detach(), "1.breakpoints": layer.breakpoints}}
    torch.save(old, tmp_path / "old.pt")
    rebuilt = tmaf_layers_from_checkpoint(tmp_path / "old.pt")["1"]
    assert rebuilt.form == "continuous" and torch.equal(rebuilt.levels, layer.levels.detach())
    stats = json.loads((out / "stats.json").read_text())["records"]
    assert {r["activation"] for r in stats} == {"relu", "pwl"}


def test_tuned_learning_rates_are_arms_of_one_study(tmp_path: Path, capsys):
    """--tmaf-lr makes an arm of the study, compared with the same seeds' ReLU; a tuned TMAF
    arm meets the pwl arm of its own learning rate; tmaf_lr equal to lr is the plain arm."""
    root, out = tmp_path / "runs", tmp_path / "out"
    base = {"lr": 0.001, "recipe": "converged-mlp"}
    arms = {("relu", None): (0.970, 0.960, 0.965), ("diagonal", None): (0.971, 0.962, 0.966),
            ("diagonal", 0.003): (0.975, 0.966, 0.969), ("pwl", 0.003): (0.972, 0.963, 0.967),
            ("pwl", 0.001): (0.969, 0.961, 0.964)}
    for (act, lr), accs in arms.items():
        for seed, acc in enumerate(accs):
            write_train(root / f"{act}-{lr}" / f"seed{seed}", act, seed, acc,
                        config={**base, "tmaf_lr": lr})
    code, _, _ = run_report([str(root), "--out", str(out)], capsys)
    assert code == 0
    stats = json.loads((out / "stats.json").read_text())["records"]
    assert len({r["group"] for r in stats}) == 1
    by_arm = {r["activation"]: r for r in stats}
    assert list(by_arm) == ["relu", "pwl", "pwl (tmaf_lr=0.003)", "diagonal",
                            "diagonal (tmaf_lr=0.003)"]
    tuned = by_arm["diagonal (tmaf_lr=0.003)"]
    assert tuned["vs_relu"]["mean"] == pytest.approx(0.005)
    assert tuned["vs_pwl"]["mean"] == pytest.approx(0.008 / 3)  # vs pwl (tmaf_lr=0.003)
    assert by_arm["diagonal"]["vs_pwl"]["mean"] == pytest.approx(0.005 / 3)  # vs plain pwl
    assert by_arm["pwl"]["seeds"] == [0, 1, 2]  # tmaf_lr 0.001 == lr: the plain pwl arm
    assert tuned["vs_pwl"]["rival"] == "pwl (tmaf_lr=0.003)"
    assert "diagonal (tmaf_lr=0.003)" in (out / "report.md").read_text()


def test_a_tuned_tmaf_arm_meets_the_tuned_pwl_arm_at_its_own_rate():
    """Each activation tuned to its own best rate: a TMAF arm with no pwl arm at its rate is
    compared with the one tuned pwl arm; with two tuned pwl arms, or untuned, with none."""
    from tmaf_lab.report.vs_relu import compare, rival_arm

    seeds = {0: 0.9, 1: 0.91, 2: 0.92}
    arms = {"relu": seeds, "pwl (tmaf_lr=0.01)": {s: v + 0.001 for s, v in seeds.items()},
            "tridiagonal (tmaf_lr=0.0003)": {s: v + 0.003 for s, v in seeds.items()},
            "diagonal": seeds}
    recs = {r["activation"]: r for r in compare(arms, lower_is_better=False)}
    tri = recs["tridiagonal (tmaf_lr=0.0003)"]["vs_pwl"]
    assert tri["rival"] == "pwl (tmaf_lr=0.01)" and tri["mean"] == pytest.approx(0.002)
    assert "vs_pwl" not in recs["diagonal"]  # no plain pwl arm: nothing to pair with
    assert rival_arm("tridiagonal (tmaf_lr=0.0003)",
                     [*arms, "pwl (tmaf_lr=0.003)"]) is None  # two tuned pwl arms: ambiguous
    assert rival_arm("gelu (tmaf_lr=0.01)", arms) is None


@pytest.mark.parametrize("config, arm", [
    ({"lr": 0.001, "tmaf_lr": None}, "diagonal"), ({"lr": 0.001, "tmaf_lr": 0.001}, "diagonal"),
    ({"lr": 0.001, "tmaf_lr": "0.001"}, "diagonal"), ({"lr": 1, "tmaf_lr": 1.0}, "diagonal"),
    ({"lr": 0.001, "tmaf_lr": 0.003}, "diagonal (tmaf_lr=0.003)"),
    ({"lr": 0.001, "tmaf_lr": "fast"}, "diagonal (tmaf_lr=fast)"), ({}, "diagonal"),
    (None, "diagonal"), ([1, 2], "diagonal")])
def test_arm_name(config, arm):
    from tmaf_lab.report.stats import arm_name

    assert arm_name("diagonal", config) == arm


def test_pair_keeps_tuned_arms_apart(tmp_path: Path):
    """report.trees: a tuned arm beside the untuned runs of one activation is its own group,
    not a duplicate seed (the converged MLP tree holds both)."""
    from tmaf_lab.report import trees as pair

    for tree in ("base", "variant"):
        for seed in (0, 1):
            write_train(tmp_path / tree / "diagonal" / f"seed{seed}", "diagonal", seed, 0.97,
                        config={"lr": 0.001})
    for seed in (0, 1):
        write_train(tmp_path / "base" / "diagonal-tuned" / f"seed{seed}", "diagonal", seed,
                    0.98, config={"lr": 0.001, "tmaf_lr": 0.003})
    base = pair.train_values(tmp_path / "base", {"diagonal"})
    assert set(base) == {("mnist", "mlp", "diagonal"), ("mnist", "mlp", "diagonal (tmaf_lr=0.003)")}
    recs = pair.compare_groups(base, pair.train_values(tmp_path / "variant", None), "train")
    assert [r["group"] for r in recs] == [["mnist", "mlp", "diagonal"]]  # the tuned arm: no pair
