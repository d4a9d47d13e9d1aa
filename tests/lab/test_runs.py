"""tmaf_lab.runs: the one reader of run folders (results.json, config.json, metrics.jsonl)."""

from __future__ import annotations

import json

import pytest

from tmaf_lab import runs
from tmaf_lab.runs import RunFileError


def _run(folder, results=None, config=None, metrics=None):
    folder.mkdir(parents=True, exist_ok=True)
    if results is not None:
        (folder / "results.json").write_text(json.dumps(results))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    if metrics is not None:
        (folder / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    return folder


def test_reads_the_three_files(tmp_path):
    run = _run(tmp_path / "r", {"test_acc": 0.9}, {"config": {"lr": 0.1}, "argv": ["tmaf"]},
               [{"epoch": 1}, {"epoch": 2}])
    assert runs.read_results(run) == {"test_acc": 0.9}
    assert runs.read_config(run)["config"] == {"lr": 0.1}
    assert runs.read_metrics(run) == [{"epoch": 1}, {"epoch": 2}]
    assert runs.is_finished(run) and not runs.is_finished(tmp_path)


@pytest.mark.parametrize("read, name", [(runs.read_results, "results.json"),
                                        (runs.read_config, "config.json"),
                                        (runs.read_metrics, "metrics.jsonl")])
def test_missing_file_names_it(tmp_path, read, name):
    with pytest.raises(RunFileError, match=rf"{name}: no such file") as e:
        read(tmp_path)
    assert e.value.path == tmp_path / name


def test_corrupt_json_names_the_file(tmp_path):
    (tmp_path / "results.json").write_text('{"test_acc": 0.9')
    with pytest.raises(RunFileError, match=r"results.json: malformed JSON") as e:
        runs.read_results(tmp_path)
    assert str(tmp_path / "results.json") in str(e.value)
    assert isinstance(e.value, ValueError)  # callers that catch ValueError still do


def test_results_must_be_an_object(tmp_path):
    (tmp_path / "results.json").write_text("[1, 2]")
    with pytest.raises(RunFileError, match="expected a JSON object, got list"):
        runs.read_results(tmp_path)


def test_bad_metrics_line_raises_or_is_reported(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n\nnot json\n[3]\n{"epoch": 4}\n{"x": 5}\n')
    with pytest.raises(RunFileError, match=r"metrics.jsonl: line 3 is not a valid metrics row"):
        runs.read_metrics(tmp_path)
    bad = []
    rows = runs.read_metrics(tmp_path, bad.append, valid=lambda r: "epoch" in r)
    assert rows == [{"epoch": 1}, {"epoch": 4}] and bad == [3, 4, 6]


def test_find_runs_in_a_tree_with_nested_runs(tmp_path):
    _run(tmp_path, {"top": 1})  # the root itself is a run
    _run(tmp_path / "relu" / "seed0", {"s": 0})
    _run(tmp_path / "relu" / "seed1", {"s": 1})
    _run(tmp_path / "relu" / "seed1" / "rerun", {"s": 1})  # a run nested in a run
    _run(tmp_path / "gelu" / "seed0", config={"config": {}})  # unfinished: no results.json
    _run(tmp_path / ".tmp" / "seed0", {"s": 9})
    found = runs.find_runs(tmp_path)
    rel = [p.relative_to(tmp_path).as_posix() for p in found]
    assert rel == [".tmp/seed0", "relu/seed0", "relu/seed1/rerun", "relu/seed1", "."]
    assert ".tmp/seed0" not in [p.relative_to(tmp_path).as_posix()
                                for p in runs.find_runs(tmp_path, hidden=False)]
    by_layout = runs.find_runs(tmp_path, "*/seed*")
    assert [p.relative_to(tmp_path).as_posix() for p in by_layout] == [
        ".tmp/seed0", "relu/seed0", "relu/seed1"]
    assert runs.find_runs(tmp_path / "missing") == []
