"""Report statistics: hand-computed paired t intervals, t quantiles, verdict rules."""

from __future__ import annotations

import math

import pytest

from tmaf_lab.report.stats import (
    fmt_interval,
    fmt_signed,
    paired,
    stat,
    t975,
    verdict,
)
from tmaf_lab.report.vs_relu import compare


def test_hand_computed_t_interval_over_five_seeds():
    x = {0: 10.2, 1: 9.8, 2: 10.5, 3: 10.1, 4: 9.9}
    ref = {0: 10.0, 1: 9.9, 2: 10.0, 3: 9.8, 4: 9.9}
    # d = 0.2, -0.1, 0.5, 0.3, 0.0: mean 0.18, sum of squared deviations 0.228,
    # sd = sqrt(0.228 / 4) = 0.238747, half width = 2.7764 * sd / sqrt(5) = 0.296440
    p = paired(x, ref)
    assert p.n == 5 and p.seeds == (0, 1, 2, 3, 4)
    assert p.mean == pytest.approx(0.18)
    assert p.std == pytest.approx(0.238747, abs=1e-6)
    assert (p.low, p.high) == (pytest.approx(0.18 - 0.296440, abs=1e-5),
                               pytest.approx(0.18 + 0.296440, abs=1e-5))
    assert verdict(p, lower_is_better=False) == "no difference detected at n = 5"
    assert fmt_interval(p) == "[−0.116, +0.476]"


def test_only_common_seeds_are_paired():
    p = paired({0: 1.0, 1: 2.0, 2: 3.5, 7: 100.0}, {0: 0.5, 1: 1.0, 2: 2.0, 9: -100.0})
    assert p.seeds == (0, 1, 2) and p.mean == pytest.approx(1.0)
    # d = 0.5, 1.0, 1.5: sd 0.5, half width 4.3027 * 0.5 / sqrt(3)
    assert p.high - p.mean == pytest.approx(4.3027 * 0.5 / math.sqrt(3), rel=1e-4)


def test_pairing_removes_the_shared_seed_effect():
    # seed effects of +-1 dwarf the +0.1 gain: unpaired the spread hides it, paired it shows
    ref = {s: float(s % 3) for s in range(5)}
    x = {s: v + 0.1 + 0.01 * (s % 2) for s, v in ref.items()}
    p = paired(x, ref)
    assert p.low > 0 and verdict(p, lower_is_better=False) == "better"
    assert verdict(p, lower_is_better=True) == "worse"
    assert stat(x.values()).std > 0.5  # the unpaired spread


@pytest.mark.parametrize("d, lower, expected", [
    ([0.1, 0.2, 0.15], False, "better"),
    ([0.1, 0.2, 0.15], True, "worse"),
    ([-0.1, -0.2, -0.15], True, "better"),
    ([-0.1, -0.2, -0.15], False, "worse"),
    ([0.3, -0.2, 0.1], False, "no difference detected at n = 3"),
    ([0.0, 0.0, 0.0, 0.0, 0.0], False, "no difference detected at n = 5"),
    ([0.2, 0.2], False, "better"),  # no spread at all: the interval is the point +0.2
    ([0.2], False, "n/a (< 2 paired seeds)"),
    ([], False, "n/a (< 2 paired seeds)"),
])
def test_verdict_follows_the_interval(d, lower, expected):
    p = paired({s: v for s, v in enumerate(d)}, {s: 0.0 for s in range(len(d))})
    assert verdict(p, lower) == expected


@pytest.mark.parametrize("df, quantile", [  # standard tables (NIST/SEMATECH 1.3.6.7.2)
    (1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423), (31, 2.0395),
    (60, 2.0003), (120, 1.9799), (10**6, 1.95996)])
def test_t_quantiles(df, quantile):
    assert t975(df) == pytest.approx(quantile, abs=1e-4)


def test_t_quantile_needs_a_degree_of_freedom():
    with pytest.raises(ValueError):
        t975(0)


def test_compare_records_and_formatting():
    recs = compare({"relu": {0: 0.9, 1: 0.91, 2: 0.92}, "pwl": {0: 0.95, 1: 0.96, 2: 0.97},
                    "gelu": {0: 0.9}}, lower_is_better=False)
    assert [r["activation"] for r in recs] == ["relu", "gelu", "pwl"]
    assert "vs_relu" not in recs[0]
    assert recs[1]["vs_relu"]["verdict"] == "n/a (< 2 paired seeds)"
    assert recs[2]["vs_relu"]["verdict"] == "better"
    assert recs[2]["vs_relu"]["mean"] == pytest.approx(0.05)
    assert fmt_signed(-0.5) == "−0.5" and fmt_signed(0.25, 100) == "+25"


def test_tmaf_rows_are_also_paired_with_pwl():
    recs = compare({"relu": {0: 0.90, 1: 0.91, 2: 0.92}, "pwl": {0: 0.95, 1: 0.96, 2: 0.97},
                    "diagonal": {0: 0.93, 1: 0.94, 2: 0.951}, "gelu": {0: 0.9, 1: 0.9}},
                   lower_is_better=False)
    by = {r["activation"]: r for r in recs}
    assert "vs_pwl" not in by["gelu"] and "vs_pwl" not in by["pwl"]
    assert by["diagonal"]["vs_pwl"]["mean"] == pytest.approx(-0.0197, abs=1e-4)
    assert by["diagonal"]["vs_pwl"]["verdict"] == "worse"  # d = -0.02, -0.02, -0.019
    assert by["diagonal"]["vs_relu"]["verdict"] == "better"


def history_run(act, seed, early, final):
    """An approx run of 10000 steps, history every 200: `early` at step 1000, `final` at the
    end, 1.0 elsewhere."""
    hist = [{"step": s, "rel_l2": early if s == 1000 else 1.0} for s in range(200, 10001, 200)]
    hist[-1]["rel_l2"] = final
    return {"activation": act, "seed": seed, "rel_l2": final, "history": hist}


def test_approx_records_compare_again_at_ten_percent_of_the_run():
    from pathlib import Path

    from tmaf_lab.report.collect import ApproxFits
    from tmaf_lab.report.vs_relu import approx_records, early_step

    runs = [history_run("relu", s, 0.9, 0.5) for s in range(3)]
    runs += [history_run("diagonal", s, 0.5 + 0.01 * s, 0.5 + 0.001 * s) for s in range(3)]
    study = ApproxFits(Path("x"), "sin16", tuple(runs))
    assert early_step(study) == 1000
    rec = next(r for r in approx_records([study], ["sin16"]) if r["activation"] == "diagonal")
    assert rec["early"]["step"] == 1000 and rec["early"]["vs_relu"]["verdict"] == "better"
    assert rec["early"]["vs_relu"]["mean"] == pytest.approx(-0.39)
    # at the end d = 0, +0.001, +0.002: the interval holds 0, the early gap vanished
    assert rec["vs_relu"]["verdict"] == "no difference detected at n = 3"
    short = ApproxFits(Path("y"), "t", tuple({**r, "history": r["history"][:3]} for r in runs))
    assert early_step(short) is None


def test_ratio_record_is_the_geometric_mean_with_a_log_interval():
    from tmaf_lab.report.stats import fmt_ratio, ratio_record

    ref = {0: 0.1, 1: 0.2, 2: 0.4}
    half = ratio_record({s: v / 2 for s, v in ref.items()}, ref, lower_is_better=True)
    assert half["ratio"] == pytest.approx(0.5) and half["verdict"] == "better"
    assert half["low"] == pytest.approx(0.5) and half["high"] == pytest.approx(0.5)
    # ratios 0.5 and 2: geometric mean 1, the interval holds 1
    mixed = ratio_record({0: 0.05, 1: 0.4}, {0: 0.1, 1: 0.2}, lower_is_better=True)
    assert mixed["ratio"] == pytest.approx(1.0) and mixed["low"] < 1 < mixed["high"]
    assert mixed["verdict"] == "no difference detected at n = 2"
    lo, hi = math.log(0.5), math.log(2.0)  # log ratios -0.693, +0.693: t(1) * sd / sqrt 2
    half_width = 12.7062 * (hi - lo) / math.sqrt(2) / math.sqrt(2)
    assert mixed["high"] == pytest.approx(math.exp(half_width), rel=1e-4)
    assert ratio_record({0: 0.0, 1: 0.1}, {0: 0.1, 1: 0.1}, True)["verdict"].startswith("n/a")
    assert ratio_record({0: math.inf}, {0: 0.1}, True)["verdict"].startswith("n/a")
    one = ratio_record({0: 0.2}, {0: 0.1}, True)
    assert one["ratio"] == pytest.approx(2.0) and fmt_ratio(one) == "2"
    assert fmt_ratio(half) == "0.5 [0.5, 0.5]"
    wide = ratio_record({0: 1e-300, 1: 1.0}, {0: 1e300, 1: 1.0}, True)  # exp would overflow
    assert wide["high"] == math.inf and wide["low"] == 0.0
    assert wide["verdict"] == "no difference detected at n = 2"


def test_error_records_carry_ratios_to_relu_and_pwl_and_the_table_shows_them():
    from tmaf_lab.report.vs_relu import paired_table

    recs = compare({"relu": {0: 0.4, 1: 0.2, 2: 0.1}, "pwl": {0: 0.2, 1: 0.1, 2: 0.05},
                    "diagonal": {0: 0.1, 1: 0.05, 2: 0.025}}, True, ratios=True)
    by = {r["activation"]: r for r in recs}
    assert by["diagonal"]["ratio_vs_relu"]["ratio"] == pytest.approx(0.25)
    assert by["diagonal"]["ratio_vs_pwl"]["ratio"] == pytest.approx(0.5)
    assert "ratio_vs_pwl" not in by["pwl"] and "ratio_vs_relu" not in by["relu"]
    rows = [{"group": "g", **r} for r in recs]
    table = paired_table(rows, 1.0, "(rel L2)", "(rel L2)", "c.")
    assert table.headers[-2:] == ("X / ReLU, geometric mean [95 % CI]", "vs ReLU (ratio)")
    assert [r[-2] for r in table.rows] == ["0.5 [0.5, 0.5]", "0.25 [0.25, 0.25]"]
    plain = compare({"relu": {0: 0.9, 1: 0.91}, "pwl": {0: 0.95, 1: 0.9}}, False)
    assert "ratio_vs_relu" not in plain[1]
    assert len(paired_table([{"group": "g", **r} for r in plain], 1, "", "", "c.").headers) == 7


def test_gap_table_shows_the_ratio_early_and_at_the_end():
    from pathlib import Path

    from tmaf_lab.report.collect import ApproxFits
    from tmaf_lab.report.vs_relu import approx_records, gap_table

    runs = [history_run("relu", s, 0.8, 0.1) for s in range(3)]
    runs += [history_run("pwl", s, 0.8, 0.1) for s in range(3)]
    runs += [history_run("diagonal", s, 0.4, 0.01) for s in range(3)]  # 2x better early, 10x at the end
    short = [{**r, "history": [{**h, "step": h["step"] // 10} for h in r["history"]]}
             for r in runs]  # a study 10x shorter: its early step is 100, not 1000
    recs = approx_records([ApproxFits(Path("x"), "sin16", tuple(runs)),
                           ApproxFits(Path("y"), "sin4", tuple(short))], ["sin16", "sin4"])
    table = gap_table(recs)
    assert table.headers[4:6] == ("X / ReLU early", "X / ReLU at the end")
    diag = [r for r in table.rows if r[1] == "diagonal"]
    assert [r[2:4] for r in diag] == [("1000", "3 / 3"), ("100", "3 / 3")]
    # the error at step 9000 (90 %) is 1.0 and the end 0.01: still improving 100-fold
    assert diag[0][4:] == ("0.5 [0.5, 0.5]", "0.1 [0.1, 0.1]", "better", "0.5 [0.5, 0.5]",
                           "0.1 [0.1, 0.1]", "0.01")
    pwl = next(r for r in table.rows if r[1] == "pwl")
    assert pwl[7:] == ("", "", "0.1")
    by = {(r["group"], r["activation"]): r for r in recs}
    assert by["sin16", "relu"]["last_tenth"] == {"from_step": 9000, "n": 3,
                                                 "ratio": pytest.approx(0.1)}
    assert by["sin4", "relu"]["last_tenth"]["from_step"] == 900
    assert gap_table([{**r, "early": None} for r in recs]) is None


def test_approx_overview_draws_one_panel_per_study_with_a_history(tmp_path):
    from PIL import Image

    from tmaf_lab.report.figures import approx_overview

    def runs(scale):
        return [{"activation": a, "seed": s, "history": [
            {"step": k * 100, "rel_l2": scale * f / k} for k in range(1, 6)]}
            for a, f in (("relu", 1.0), ("diagonal", 0.5)) for s in range(3)]

    studies = [("w32/sin16", runs(1.0)), ("w32/sin4", runs(0.1)), ("w64/sin16", runs(0.5)),
               ("w64/sin4", runs(0.05))]
    path = approx_overview(studies, tmp_path / "overview.png")
    assert path == tmp_path / "overview.png"
    with Image.open(path) as img:  # 3 columns, 2 rows of panels
        assert img.size[0] > img.size[1] > 400
    assert approx_overview(studies[:1], tmp_path / "one.png") is None
    no_history = [("a", [{"activation": "relu", "seed": 0}]), ("b", [])]
    assert approx_overview(no_history, tmp_path / "none.png") is None
    assert not (tmp_path / "one.png").exists() and not (tmp_path / "none.png").exists()
