"""`tmaf match`: the fits table's numbers are the modules' own, and the GPT-2 measurement runs
end to end (--dry-run) with the match starts closer to the trained model than the ReLU start."""

from __future__ import annotations

import json

import pytest
import torch

import tmaf
from tmaf_lab import match
from tmaf_lab.cli import main


def test_fits_records_each_function_and_form(tmp_path):
    assert main(["match", "fits", "--out", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "fits.json").read_text())
    assert set(r["functions"]) == set(tmaf.matching.FUNCTIONS)
    gelu = r["functions"]["gelu"]
    for form in ("jump", "continuous"):
        m = tmaf.DiagonalTMAF(1, init="match", match="gelu", form=form, dtype=torch.float64)
        assert gelu[form]["match_error"] == m.match_error
        assert gelu[form]["levels"] == m.levels[0].tolist()
        assert gelu[form]["normal_mean_abs_error"] < gelu[form]["match_error"]
    assert gelu["asymptotic_slopes"] == [0.0, 1.0]
    assert r["functions"]["relu2"]["asymptotic_slopes"] == [0.0, None]
    assert r["functions"]["relu"]["continuous"]["max_error_wide"] == 0.0
    assert r["provenance"]["commit"] and r["provenance"]["environment"]["cpu_model"]
    table = match.fits_table(tmp_path / "fits.json")
    assert table.count("\n") == len(tmaf.matching.FUNCTIONS) + 2
    assert "| gelu | 0 | 0 / 1 | 0.057 |" in table


def test_gpt2_dry_run(tmp_path):
    pytest.importorskip("transformers")
    assert main(["match", "gpt2", "--dry-run", "--seeds", "4", "--out", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "gpt2.json").read_text())
    assert [run["seed"] for run in r["runs"]] == [4]
    starts = r["runs"][0]["starts"]
    relu = starts["diagonal, relu start"]
    for label in ("continuous_diagonal, match", "diagonal (jump), match"):
        s = starts[label]
        assert len(s["match_error"]) == 2 and s["options"]["match"] == "gelu_tanh"
        assert s["max_abs_logit_change"] < relu["max_abs_logit_change"]
    assert r["config"]["dry_run"] and r["provenance"]["transformers"]
    assert "max abs logit change" in match.gpt2_table(tmp_path / "gpt2.json")


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    assert main(["match", "gpt3", "--out", str(tmp_path)]) == 2
    assert main(["match", "gpt2", "--steps", "-1", "--out", str(tmp_path)]) == 2
    assert "--steps must be >= 0" in capsys.readouterr().err


def test_missing_text_names_the_fix_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    pytest.importorskip("transformers")
    monkeypatch.setenv("TMAF_DATA", str(tmp_path / "empty-cache"))
    out = tmp_path / "out"
    assert main(["match", "gpt2", "--steps", "1", "--out", str(out)]) == 2
    assert "tmaf data install shakespeare" in capsys.readouterr().err
    assert not out.exists()
