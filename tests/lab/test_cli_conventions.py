"""One convention for every command: --seeds is a list of seed values and --seed N == --seeds N,
one --threads default (torch's), `tmaf --version`, one-line errors with one prefix, no empty
output folder after a failure, provenance (CPU model, threads, versions, TMAF backend) in
config.json, one command tree (every sub-command documented, no other `python -m` door), and
no remarks on one machine or on how the work was organised in the sources and docs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tmaf_lab.approx.fit import ApproxConfig
from tmaf_lab.cli import DEFAULT_THREADS, version
from tmaf_lab.cli import main as tmaf_main
from tmaf_lab.train.config import TrainConfig

APPROX_TINY = ["approx", "--target", "smooth", "--activations", "relu", "--steps", "2",
               "--n-train", "64", "--width", "4", "--depth", "1", "--no-plots"]
TRAIN_TINY = ["train", "synthetic", "--model", "mlp", "--width", "16", "--subset", "128",
              "--test-subset", "64", "--batch-size", "64", "--device", "cpu"]


def test_version(capsys):
    assert tmaf_main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"tmaf {version()}"


def test_one_threads_default_everywhere():
    assert TrainConfig().threads == ApproxConfig().threads == DEFAULT_THREADS == 0  # torch's


def _seeds_run(folder: Path) -> list[int]:
    return sorted({r["seed"] for r in json.loads((folder / "results.json").read_text())["runs"]})


def test_approx_seeds_are_values_not_a_count(tmp_path, capsys):
    assert tmaf_main([*APPROX_TINY, "--seeds", "0,1", "--out", str(tmp_path / "a")]) == 0
    assert _seeds_run(tmp_path / "a") == [0, 1]
    assert tmaf_main([*APPROX_TINY, "--seeds", "4", "--out", str(tmp_path / "b")]) == 0
    assert _seeds_run(tmp_path / "b") == [4]
    assert tmaf_main([*APPROX_TINY, "--seed", "4", "--out", str(tmp_path / "c")]) == 0
    b, c = (json.loads((tmp_path / x / "results.json").read_text())["runs"] for x in "bc")
    assert [r["rel_l2"] for r in b] == [r["rel_l2"] for r in c]  # --seed 4 is --seeds 4


def test_train_single_seed_goes_into_the_folder(tmp_path, capsys):
    assert tmaf_main([*TRAIN_TINY, "--seeds", "2", "--out", str(tmp_path / "a")]) == 0
    assert tmaf_main([*TRAIN_TINY, "--seed", "2", "--out", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / x / "results.json").read_text()) for x in "ab")
    assert a["seed"] == b["seed"] == 2 and a["test_acc"] == b["test_acc"]
    assert not (tmp_path / "a" / "seed2").exists()


def test_config_json_records_cpu_threads_versions_and_backend(tmp_path, capsys):
    assert tmaf_main([*TRAIN_TINY, "--dry-run", "--out", str(tmp_path / "t")]) == 0
    assert tmaf_main([*APPROX_TINY, "--dry-run", "--out", str(tmp_path / "a")]) == 0
    for folder in ("t", "a"):
        env = json.loads((tmp_path / folder / "config.json").read_text())["environment"]
        assert env["cpu_model"] and env["torch"] and env["numpy"]
        assert env["torch_threads"] == torch.get_num_threads()
        assert set(env["tmaf_backend"]) == {"setting", "resolved"}
        assert env["tmaf_backend"]["resolved"] in ("eager", "compiled", "reference", "native")


def test_missing_data_names_both_fixes_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TMAF_DATA", str(tmp_path / "empty-cache"))
    out = tmp_path / "runs" / "mnist"
    assert tmaf_main(["train", "mnist", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "tmaf data install mnist" in err and "--source FILE" in err
    assert not out.exists() and not out.parent.exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "synthetic", "--activation", "nonsense"], "--activation 'nonsense': unknown"),
    (["approx", "--activations", "relu,nonsense"], "--activations: unknown activation"),
    (["approx", "--seeds", "3,3"], "distinct seed values"),
    (["train", "synthetic", "--seeds", "a"], "comma-separated seed values"),
    (["train", "synthetic", "--no-such-option"], "unrecognized arguments"),
    (["data", "install", "imagenet"], "invalid choice"),
    (["data", "frobnicate"], "invalid choice"),
    (["report", "--out", "x"], "RUN_DIR"),
    (["study", "gpu", "--minutes", "0"], "--minutes"),
    (["bench", "grids", "--m", "0"], "--m must be >= 1"),
    (["recipes", "check"], "DIR"),
    (["nonsense"], "invalid choice: 'nonsense'"),
])
def test_errors_are_one_line_with_one_prefix(argv, message, tmp_path, capsys):
    assert tmaf_main([*argv, *(["--out", str(tmp_path / "o")] if argv[0] == "train" else [])]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err, err
    assert "tmaf:" not in err and err.count("error:") == 1 and "Traceback" not in err
    assert "usage:" not in err
    assert not (tmp_path / "o").exists()


def test_singular_target_is_refused_with_the_reason(tmp_path, capsys):
    out = tmp_path / "inv"
    assert tmaf_main(["approx", "--target", "1/x", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "singular in practice" in err and "--domain" in err
    assert not out.exists()
    # away from the pole the same expression is an ordinary target
    assert tmaf_main([*APPROX_TINY[:1], "--target", "1/x", "--domain", "0.1,1",
                      *APPROX_TINY[3:], "--dry-run", "--out", str(out)]) == 0


def test_missing_extra_names_the_extra_to_install(monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "tqdm", None)  # as without the lab extra
    monkeypatch.setattr("tmaf_lab.cli.COMMANDS", {"x": ("tqdm", "a command that needs tqdm")})
    assert tmaf_main(["x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: tmaf x needs the 'lab' extra (missing module 'tqdm'): pip install "
                   "'tmaf[lab]', or from the tmaf source: pip install --no-build-isolation -e '.[lab]'")


def test_default_output_folder_is_announced_as_an_absolute_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert tmaf_main([*APPROX_TINY]) == 0
    err = capsys.readouterr().err
    assert (f"tmaf approx: writing to {tmp_path / 'runs' / 'approx'} (the default, under the current "
            "folder; --out DIR writes elsewhere)") in err
    assert (tmp_path / "runs" / "approx").is_dir()
    assert tmaf_main([*APPROX_TINY, "--out", "elsewhere"]) == 0
    assert f"tmaf approx: writing to {tmp_path / 'elsewhere'}\n" in capsys.readouterr().err


ROOT = Path(__file__).resolve().parents[2]


def _subcommands() -> list[str]:
    """Every ``tmaf`` command and sub-command, as typed (``bench grids``)."""
    from tmaf_lab.approx.cli import TOOLS as APPROX_TOOLS
    from tmaf_lab.bench.cli import TOOLS as BENCH_TOOLS
    from tmaf_lab.cli import COMMANDS

    return [*COMMANDS, *(f"bench {t}" for t in BENCH_TOOLS),
            *(f"approx {t}" for t in APPROX_TOOLS), "recipes list", "recipes check",
            "data install", "data check"]


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_has_help_and_is_documented(command, capsys):
    assert tmaf_main([*command.split(), "--help"]) == 0
    assert "usage: tmaf " + command in capsys.readouterr().out
    assert f"tmaf {command}" in (ROOT / "docs" / "cli.md").read_text(), \
        f"docs/cli.md does not mention `tmaf {command}`"


def test_tmaf_help_lists_every_command(capsys):
    from tmaf_lab.cli import COMMANDS

    assert tmaf_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"    {name} " in out for name in COMMANDS)


def test_no_module_runs_as_a_script_but_the_package():
    """Every task is a ``tmaf`` sub-command: no ``__main__`` guard or module but the package's."""
    found = [str(p.relative_to(ROOT)) for p in (ROOT / "src" / "tmaf_lab").rglob("*.py")
             if "__main__" in p.read_text()]
    assert set(found) <= {"src/tmaf_lab/__main__.py"}, found


def test_no_process_or_machine_remarks_in_sources_and_docs():
    import re

    pattern = re.compile(r"issues? ?[0-9]|2-core|two-core", re.IGNORECASE)
    files = [ROOT / "README.md", *(ROOT / "src").rglob("*.py"), *(ROOT / "src").rglob("*.cpp"),
             *(ROOT / "src").rglob("*.h"), *(ROOT / "docs").rglob("*.md")]
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in files if p.is_file()
            for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
            if pattern.search(line)]
    assert not hits, "\n".join(hits)
