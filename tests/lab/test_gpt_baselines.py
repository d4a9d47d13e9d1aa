"""The transformer baselines (ReLU², LeakyReLU(0.5)², xIELU, SwiGLU), the unit-scale recipe
cpu-gpt-unit, the MLP scale log and the gpt-baselines study's plan."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import tmaf
from tests.lab.test_gpt_train import TINY, data_root  # noqa: F401 - the fixture
from tmaf_lab.baselines import XIELU, LeakyReLUSquared, ReLUSquared, SwiGLU, xielu
from tmaf_lab.gpt import GPT, gated_hidden
from tmaf_lab.models import act_factory, create_model, optimizer_groups, token_act_factory
from tmaf_lab.studies import STUDIES, gpt_baselines
from tmaf_lab.train import cli as train_cli
from tmaf_lab.train.mlp_scale import grid_occupancy, mlp_scale
from tmaf_lab.train.recipes import RECIPES

ARMS = gpt_baselines.ARMS


def test_squared_activations_values():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0])
    assert torch.equal(ReLUSquared()(x), torch.tensor([0.0, 0.0, 0.0, 0.25, 9.0]))
    assert torch.allclose(LeakyReLUSquared()(x), torch.tensor([1.0, 0.0625, 0.0, 0.25, 9.0]))


def test_xielu_matches_the_published_formula_and_its_init():
    act = XIELU(dtype=torch.float64)
    assert math.isclose(float(act.alpha_p), 0.8, rel_tol=1e-12)
    assert math.isclose(float(act.alpha_n), 0.8, rel_tol=1e-12)
    x = torch.tensor([-3.0, -1.0, -1e-7, 0.0, 0.5, 2.0], dtype=torch.float64)
    a_n, beta, eps = 0.8, 0.5, -1e-6
    neg = [a_n * (math.expm1(min(v, eps)) - v) + beta * v for v in x.tolist()]
    want = [0.8 * v * v + beta * v if v > 0 else n for v, n in zip(x.tolist(), neg, strict=True)]
    assert torch.allclose(act(x), torch.tensor(want, dtype=torch.float64), atol=1e-15)


def test_xielu_equals_transformers_and_has_exact_gradients():
    x = torch.randn(64, dtype=torch.float64) * 2
    a_p = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    a_n = torch.tensor([-0.2], dtype=torch.float64, requires_grad=True)
    xg = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x, p, n: xielu(x, p, n), (xg, a_p, a_n))
    acts = pytest.importorskip("transformers.activations")
    theirs = acts.XIELUActivation(dtype=torch.float64)
    ours = XIELU(dtype=torch.float64)
    assert torch.allclose(ours(x), theirs(x), atol=1e-14)


def test_swiglu_gates_the_first_half():
    x = torch.randn(3, 5, 8)
    a, b = x[..., :4], x[..., 4:]
    assert torch.equal(SwiGLU(8)(x), torch.nn.functional.silu(a) * b)
    with pytest.raises(ValueError, match="even"):
        SwiGLU(7)
    with pytest.raises(ValueError, match="only --model gpt"):
        act_factory("swiglu")


def _mlp_params(model: GPT) -> int:
    return sum(p.numel() for blk in model.blocks for p in blk.mlp.parameters())


def test_swiglu_matches_the_plain_mlp_parameter_count():
    assert gated_hidden(128) == 341
    gelu = create_model("gpt", (64,), 85, "gelu")
    swiglu = create_model("gpt", (64,), 85, "swiglu")
    assert swiglu.blocks[0].mlp.fc.weight.shape == (2 * 341, 128)
    assert swiglu.blocks[0].mlp.proj.weight.shape == (128, 341)
    assert _mlp_params(gelu) == 4 * 8 * 128 * 128 == 524288
    assert _mlp_params(swiglu) == 4 * 3 * 128 * 341 == 523776  # -512 (-0.1 %)


@pytest.mark.parametrize("arm", ARMS)
def test_every_arm_builds_and_takes_a_training_step(arm):
    torch.manual_seed(0)
    model = create_model("gpt", (8,), 11, arm, width=16, depth=2, heads=2, init="unit")
    tokens = torch.randint(0, 11, (4, 9))
    loss = torch.nn.functional.cross_entropy(model(tokens[:, :-1]).flatten(0, 1),
                                             tokens[:, 1:].flatten())
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    groups = optimizer_groups(model, 0.1, decay_on="matrices")
    opt = torch.optim.AdamW(groups, lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


def test_unit_init_puts_mlp_preactivations_at_unit_scale():
    torch.manual_seed(0)
    tokens = torch.randint(0, 85, (16, 64))
    for arm in ("gelu", "swiglu", "diagonal"):
        unit = mlp_scale(create_model("gpt", (64,), 85, arm, init="unit"), tokens)
        gpt2 = mlp_scale(create_model("gpt", (64,), 85, arm), tokens)
        assert all(0.9 < b["pre_std"] < 1.1 for b in unit), (arm, unit)
        assert all(0.18 < b["pre_std"] < 0.28 for b in gpt2), (arm, gpt2)
    with pytest.raises(ValueError, match="init"):
        create_model("gpt", (64,), 85, "gelu", init="he")


def test_decay_on_matrices_spares_norm_gains_and_activation_scalars():
    model = create_model("gpt", (8,), 11, "xielu", width=16, depth=1, heads=2)
    groups = {g["name"]: g for g in optimizer_groups(model, 0.1, decay_on="matrices")}
    ids = {name: {id(p) for p in g["params"]} for name, g in groups.items()}
    assert id(model.tok.weight) in ids["weights"] and id(model.pos.weight) in ids["weights"]
    assert id(model.blocks[0].mlp.fc.weight) in ids["weights"]
    assert {id(model.ln.weight), id(model.blocks[0].ln1.weight)} <= ids["no decay"]
    assert ids["activation"] == {id(model.blocks[0].mlp.act.a_p), id(model.blocks[0].mlp.act.a_n)}
    assert groups["no decay"]["weight_decay"] == 0.0 and groups["weights"]["weight_decay"] == 0.1
    every = {id(p) for p in model.parameters()}
    assert set().union(*ids.values()) == every and sum(map(len, ids.values())) == len(every)
    whole = optimizer_groups(model, 0.1)
    assert id(model.ln.weight) in {id(p) for p in whole[0]["params"]}  # "all": the old rule


def test_grid_occupancy_counts_like_a_loop_and_outside_agrees_with_tmaf():
    torch.manual_seed(0)
    x = torch.randn(50, 6) * 1.5
    bp = tmaf.DEFAULT_BREAKPOINTS
    occ = grid_occupancy(x, bp)
    want = [0] * (len(bp) + 1)
    for v in x.flatten().tolist():
        want[sum(v >= b for b in bp.tolist())] += 1
    assert occ == pytest.approx([w / x.numel() for w in want])
    layer = tmaf.DiagonalTMAF(6, channel_dim=-1)
    assert occ[0] + occ[-1] == pytest.approx(tmaf.outside_fraction(layer, x)[""])
    per_channel = bp.expand(6, -1) * torch.linspace(0.5, 2, 6)[:, None]
    occ2 = grid_occupancy(x, per_channel)
    for c in range(6):  # channel c against its own grid
        lo, hi = per_channel[c, 0], per_channel[c, -1]
        assert ((x[:, c] < lo).sum() / 300).item() <= occ2[0] + 1e-12
        assert ((x[:, c] >= hi).sum() / 300).item() <= occ2[-1] + 1e-12
    assert sum(occ2) == pytest.approx(1.0)


def test_cpu_gpt_unit_recipe_is_pinned_and_cpu_gpt_unchanged():
    assert RECIPES["cpu-gpt"] == {
        "model": "gpt", "steps": 3000, "batch_size": 32, "context": 64, "width": 128,
        "depth": 4, "heads": 4, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.1,
        "schedule": "onecycle", "warmup": 0.02, "eval_every": 100, "eval_windows": 256,
        "eval_batch_size": 256}
    assert RECIPES["cpu-gpt-unit"] == {**RECIPES["cpu-gpt"], "gpt_init": "unit",
                                       "weight_decay_on": "matrices"}


def test_a_dry_run_logs_the_mlp_scale(data_root, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    assert train_cli.main(["shakespeare", "--recipe", "cpu-gpt-unit", *TINY, "--activation",
                           "pwl_knots", "--dry-run", "--seeds", "0", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["gpt_init"] == "unit" and cfg["weight_decay_on"] == "matrices"
    assert [r["step"] for r in res["mlp_scale"]] == [0, 2]
    block = res["mlp_scale"][0]["blocks"][0]
    assert 0.7 < block["pre_std"] < 1.3  # width 16: a noisier estimate of 1
    assert len(block["occupancy"]) == 10 and sum(block["occupancy"]) == pytest.approx(1, abs=1e-4)
    assert block["outside"] == pytest.approx(block["occupancy"][0] + block["occupancy"][-1],
                                             abs=1e-4)


def test_gpt_init_is_refused_for_image_models(tmp_path):
    assert train_cli.main(["synthetic", "--gpt-init", "unit", "--dry-run",
                           "--out", str(tmp_path / "x")]) == 2


def test_study_plan_is_seed_by_seed_with_the_reference_first(tmp_path):
    runs = STUDIES["gpt-baselines"].runs("main", tmp_path)
    assert len(runs) == 5 * len(ARMS) and ARMS[0] == "relu2"
    assert [(r.seed, r.arm) for r in runs] == [(s, a) for s in range(5) for a in ARMS]
    assert runs[0].folder == "shakespeare-gpt-unit/relu2/seed0"
    cfgs = [train_cli.resolved_config([*r.options, "--out", str(tmp_path)], r.seed)
            for r in runs[:len(ARMS)]]
    assert all(c.recipe == "cpu-gpt-unit" and c.steps == 3000 and c.threads == 1
               and c.gpt_init == "unit" for c in cfgs)
    assert [c.activation for c in cfgs] == list(ARMS)


def test_long_part_waits_for_the_main_part_then_takes_the_three_best(tmp_path, monkeypatch):
    study = STUDIES["gpt-baselines"]
    with pytest.raises(ValueError, match="45 main runs are unfinished"):
        study.runs("long", tmp_path)
    for r in study.runs("main", tmp_path):
        (tmp_path / r.folder).mkdir(parents=True)
        loss = 1.5 + 0.01 * ARMS.index(r.arm) - (0.1 if r.arm == "xielu" else 0)
        (tmp_path / r.folder / "results.json").write_text(json.dumps({"test_loss": loss}))
    long = study.runs("long", tmp_path)
    assert [r.arm for r in long[:4]] == ["relu2", "xielu", "gelu", "relu"]
    assert len(long) == 12 and {r.seed for r in long} == {0, 1, 2}
    assert all("--steps" in r.options and "6000" in r.options for r in long)
    monkeypatch.setattr(gpt_baselines, "LONG_ARMS", ("swiglu", "diagonal", "pwl_knots"))
    assert [r.arm for r in study.runs("long", tmp_path)[:4]] == [
        "relu2", "swiglu", "diagonal", "pwl_knots"]


def test_step_cost_bench_dry_run_times_every_arm_against_relu2(tmp_path):
    from tmaf_lab.bench import gpt_arms

    assert gpt_arms.main(["--out", str(tmp_path), "--dry-run", "--clock", "thread"]) == 0
    rows = json.loads((tmp_path / "timing.json").read_text())
    assert [r["activation"] for r in rows] == list(ARMS)
    assert rows[0]["ratio_vs_relu2"] == 1.0 and rows[1]["ratio_vs_gelu"] == 1.0
    assert all(r["repeats"] == 2 and r["check_max_rel_err"] < 1e-4 for r in rows)
    assert "| continuous_tridiagonal_knots |" in (tmp_path / "summary.md").read_text()
    assert gpt_arms.main(["--out", str(tmp_path / "x"), "--repeats", "0"]) == 2


def _fake_text_run(folder, arm, seed, loss, tmaf_arm=False):
    block = {"pre_std": 1.0 + seed / 10}
    if tmaf_arm:
        block.update(outside=0.05, used=8, occupancy=[0.025] + [0.95 / 8] * 8 + [0.025])
    scale = [{"step": s, "blocks": [block, block]} for s in (0, 300, 3000)]
    path = folder / arm / f"seed{seed}"
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps(
        {"activation": arm, "seed": seed, "steps": 3000, "params": 1, "val_loss": loss,
         "test_loss": loss, "test_bpc": loss / math.log(2), "train_seconds": 1.0,
         "mlp_scale": scale}))


def test_tables_pair_with_relu2_and_gelu_and_show_the_scales(tmp_path):
    from tmaf_lab.report.tables import regenerate

    for seed in range(3):
        _fake_text_run(tmp_path / "runs", "relu2", seed, 1.50 + seed / 100)
        _fake_text_run(tmp_path / "runs", "gelu", seed, 1.52 + seed / 100)
        _fake_text_run(tmp_path / "runs", "diagonal", seed, 1.51 + seed / 100, tmaf_arm=True)
    text = regenerate("<!-- table:text_paired_refs runs:relu2,gelu -->\n<!-- /table -->\n"
                      "<!-- table:text_scale runs -->\n<!-- /table -->\n", tmp_path)
    paired = text.split("<!-- table:text_scale")[0]
    rows = {line.split(" | ")[0].strip("| "): line for line in paired.splitlines()}
    assert rows["relu2"].startswith("| relu2 | 0-2 | 1.5000, 1.5100, 1.5200 | 1.5100 |  | ")
    assert "**+0.0200 [+0.0200, +0.0200]** |  |" in rows["gelu"]
    assert "| **+0.0100 [+0.0100, +0.0100]** | **−0.0100 [−0.0100, −0.0100]** |" in \
        rows["diagonal"]
    scale = [line for line in text.splitlines() if line.startswith("| diagonal | 0-2 | 1.100")]
    assert scale == ["| diagonal | 0-2 | 1.100 / 1.100 / 1.100 | 0.0500 / 0.0500 / 0.0500 "
                     "| 8.0 / 8.0 / 8.0 |"]
    with pytest.raises(ValueError, match="reference"):
        regenerate("<!-- table:text_paired_refs runs:swiglu -->\n<!-- /table -->\n", tmp_path)
    pending = regenerate("<!-- table:text_paired_refs runs:relu2,swiglu -->\n<!-- /table -->\n",
                         tmp_path)  # a reference not run yet: its column stays empty
    assert "| gelu | 0-2 | 1.5200, 1.5300, 1.5400 | 1.5300 | **+0.0200 [+0.0200, +0.0200]** |  |" \
        in pending


def test_the_gpt2_start_is_the_one_committed_runs_were_made_with():
    """The sums of the seed-0 weights under init="gpt2", computed with the code before the
    unit start existed: cpu-gpt runs rerun from their config.json start where they started."""
    torch.manual_seed(0)
    m = create_model("gpt", (16,), 11, "gelu", width=16, depth=2, heads=2)
    with torch.no_grad():
        assert sum(float(p.double().sum()) for p in m.parameters()) == pytest.approx(
            79.75085728199383, rel=1e-12)
        assert float(m.blocks[1].mlp.fc.weight.double().square().sum()) == pytest.approx(
            0.439755403569726, rel=1e-12)


def test_match_arm_names_need_a_tmaf_form_and_the_matching_start():
    with pytest.raises(ValueError, match="needs a TMAF form"):
        act_factory("gelu@relu2")
    if "match" not in tmaf.INITS:
        with pytest.raises(ValueError, match="init='match'"):
            act_factory("continuous_tridiagonal_knots@relu2")
        with pytest.raises(ValueError, match="init='match'"):
            STUDIES["gpt-baselines"].runs("match", Path("."))
        return
    torch.manual_seed(0)
    act, flatten = token_act_factory("continuous_tridiagonal_knots@relu2")(6)
    assert isinstance(act, tmaf.BandedTMAF) and not flatten
    assert act.init == "match" and act.parameterization == "knot_values"
    x = tmaf.DEFAULT_BREAKPOINTS[:, None].expand(-1, 6)  # the interpolant meets f at the knots
    assert torch.allclose(act(x), torch.relu(x).square(), atol=1e-5)
    assert act.match_error == pytest.approx(0.5 ** 2 / 4, rel=1e-3)  # h²/4 between knots
    with pytest.raises(ValueError, match="init='match'"):
        act_factory("diagonal@relu2", init="relu")
    jump = act_factory("diagonal@relu2", channel_dim=-1)(6)  # a core name, not a lab alias
    assert isinstance(jump, tmaf.DiagonalTMAF) and jump.init == "match" and jump.form == "jump"


def test_match_part_starts_the_best_tmaf_form_from_relu2(tmp_path, monkeypatch):
    study = STUDIES["gpt-baselines"]
    assert [r.arm for r in study.runs("match", tmp_path)] == (
        ["continuous_tridiagonal_knots@relu2"] * 5)  # pinned: planned before main finished
    monkeypatch.setattr(gpt_baselines, "MATCH_FORM", None)
    for r in study.runs("main", tmp_path):
        (tmp_path / r.folder).mkdir(parents=True)
        loss = 1.5 - (0.1 if r.arm == "pwl_knots" else 0) - (0.2 if r.arm == "xielu" else 0)
        (tmp_path / r.folder / "results.json").write_text(json.dumps({"test_loss": loss}))
    runs = study.runs("match", tmp_path)
    assert [r.arm for r in runs] == ["pwl_knots@relu2"] * 5
    assert runs[0].folder == "shakespeare-gpt-unit/pwl_knots@relu2/seed0"
    monkeypatch.setattr(gpt_baselines, "MATCH_FORM", "diagonal")
    assert study.runs("match", tmp_path)[0].arm == "diagonal@relu2"


def _tiny(out, *more):
    return train_cli.main(["shakespeare", *TINY, "--seeds", "0", "--out", str(out), *more])


def test_start_from_continues_a_finished_run_and_records_the_start(data_root, tmp_path):  # noqa: F811
    src = tmp_path / "src"
    assert _tiny(src, "--activation", "relu", "--steps", "8") == 0
    before = json.loads((src / "metrics.jsonl").read_text().splitlines()[-1])["val_loss"]
    for act, exact in (("relu", True), ("pwl", True), ("gelu", False)):
        out = tmp_path / act
        assert _tiny(out, "--activation", act, "--steps", "4", "--start-from", str(src)) == 0
        start = json.loads((out / "results.json").read_text())["start"]
        assert start["source_val_loss"] == before and start["source_activation"] == "relu"
        if exact:  # ReLU kept, or pwl's ReLU start: the function is unchanged
            assert start["start_val_loss"] == pytest.approx(before, abs=1e-5)
        else:
            assert abs(start["start_val_loss"] - before) > 1e-4
    cfg = json.loads((tmp_path / "pwl" / "config.json").read_text())["config"]
    assert cfg["start_from"] == str(src)


def test_start_from_refuses_an_unfinished_or_other_model(data_root, tmp_path, capsys):  # noqa: F811
    src = tmp_path / "src"
    assert _tiny(src, "--activation", "relu", "--steps", "4") == 0
    assert _tiny(tmp_path / "a", "--activation", "relu", "--steps", "4", "--width", "32",
                 "--start-from", str(src)) == 2
    assert "another model: width: 16 there, 32 here" in capsys.readouterr().err
    assert _tiny(tmp_path / "b", "--activation", "relu", "--steps", "4",
                 "--start-from", str(tmp_path / "none")) == 2
    assert "expected a finished run" in capsys.readouterr().err


def test_finetune_part_pairs_relu2_with_its_matched_conversion(tmp_path, monkeypatch):
    monkeypatch.setattr(gpt_baselines, "MATCH_FORM", None)
    study = STUDIES["gpt-baselines"]
    for r in study.runs("main", tmp_path):
        (tmp_path / r.folder).mkdir(parents=True)
        loss = 1.5 - (0.1 if r.arm == "diagonal" else 0)
        (tmp_path / r.folder / "results.json").write_text(json.dumps({"test_loss": loss}))
    runs = study.runs("finetune", tmp_path)
    assert [(r.seed, r.arm) for r in runs] == [(s, a) for s in range(3)
                                                for a in ("relu2", "diagonal@relu2")]
    src = [r.options[r.options.index("--start-from") + 1] for r in runs]
    assert src[2] == src[3] == str(tmp_path / "shakespeare-gpt-unit/relu2/seed1")
    cfg = train_cli.resolved_config([*runs[1].options, "--out", str(tmp_path)], 0)
    assert cfg.steps == 1000 and cfg.lr == 3e-4 and cfg.recipe == "cpu-gpt-unit"


def _finetune_run(root, arm, seed, source, start, test):
    folder = root / arm / f"seed{seed}"
    folder.mkdir(parents=True)
    res = {"seed": seed, "test_loss": test, "activation": arm}
    if start is not None:
        res["start"] = {"source_val_loss": source, "start_val_loss": start}
    (folder / "results.json").write_text(json.dumps(res))


def test_finetune_table_pairs_each_conversion_with_the_continued_reference(tmp_path):
    from tmaf_lab.report.gpt_tables import text_finetune_table

    for seed, (src, test_ref, test_conv) in enumerate([(1.53, 1.586, 1.580), (1.54, 1.590, 1.583),
                                                       (1.55, 1.600, 1.595)]):
        _finetune_run(tmp_path, "relu2", seed, src, src, test_ref)
        _finetune_run(tmp_path, "form@relu2", seed, src, src + 2e-6 * (seed + 1), test_conv)
    table = text_finetune_table(tmp_path, "relu2")
    conv = next(line for line in table.splitlines() if line.startswith("| form@relu2"))
    assert "1.5300, 1.5400, 1.5500" in conv and "+6.00e-06" in conv
    ref = next(line for line in table.splitlines() if line.startswith("| relu2"))
    assert "1.5860, 1.5900, 1.6000" in ref and ref.rstrip().endswith("|  |")  # not paired with itself
    assert "**−0.0060 [" in conv  # -0.006, -0.007, -0.005: the interval excludes 0
    with pytest.raises(ValueError, match="no finished run of the reference 'gelu'"):
        text_finetune_table(tmp_path, "gelu")
    _finetune_run(tmp_path, "relu", 0, 1.5, None, 1.6)
    with pytest.raises(ValueError, match="relu: a run has no start"):
        text_finetune_table(tmp_path, "relu2")
