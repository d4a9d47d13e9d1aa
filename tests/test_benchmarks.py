"""The benchmark harness: timing, saved-bytes accounting, reference checks, and a dry run."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tmaf_lab.bench import cli, report, speed_targets, timing
from tmaf_lab.bench.candidates import Candidate, Shape, Spec, check_against_reference
from tmaf_lab.bench.oracle import oracle_outputs_and_grads
from tmaf_lab.cli import DEFAULT_THREADS, UsageError


def test_thread_clock_leaves_out_time_the_thread_does_not_run():
    """A sample that sleeps 20 ms: 20 ms of wall time, almost no CPU time of the thread."""
    import time

    fns = {"sleep": lambda: time.sleep(0.02)}
    try:
        timing.set_clock("thread")
        thread = timing.time_interleaved(fns, repeats=3, warmup=0, sync=lambda: None, min_sample_s=0.0)
    finally:
        timing.set_clock("wall")
    wall = timing.time_interleaved(fns, repeats=3, warmup=0, sync=lambda: None, min_sample_s=0.0)
    assert wall["sleep"].median >= 0.02 and thread["sleep"].median < 0.005
    assert cli.parse_args(["--quick", "--threads", "1", "--clock", "thread"]).clock == "thread"
    assert cli.parse_args(["--quick"]).clock == "wall"
    with pytest.raises(ValueError, match="unknown clock"):
        timing.set_clock("cycles")


def test_time_interleaved_rotates_order_and_counts_samples():
    calls: list[str] = []
    fns = {n: (lambda n=n: calls.append(n)) for n in "abc"}
    out = timing.time_interleaved(fns, repeats=4, warmup=1, sync=lambda: None, min_sample_s=0.0)
    assert {n: len(t.samples) for n, t in out.items()} == {"a": 4, "b": 4, "c": 4}
    timed = calls[3:]  # after one warm-up call of each (no calibration call: min_sample_s=0)
    assert timed == list("abc" "bca" "cab" "abc")


def test_paired_ratio_cancels_common_drift():
    a = timing.Timing((1.0, 2.0, 4.0), 1)
    b = timing.Timing((2.0, 4.0, 8.0), 1)
    assert timing.paired_ratio(a, b) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="equal repeats"):
        timing.paired_ratio(a, timing.Timing((1.0,), 1))


def test_saved_bytes_counts_each_storage_once_and_separates_parameters():
    x = torch.randn(10, 6, requires_grad=True)
    w = torch.randn(6, requires_grad=True)
    relu = timing.saved_bytes(lambda: torch.relu(x))
    assert relu.total == 10 * 6 * 4 and relu.parameters == 0
    twice = timing.saved_bytes(lambda: x * x)  # saves x twice: one storage
    assert twice.total == 10 * 6 * 4
    scaled = timing.saved_bytes(lambda: x * w, params=[w])  # saves x and w
    assert scaled.total == (60 + 6) * 4 and scaled.parameters == 6 * 4 and scaled.activations == 240


@pytest.mark.parametrize("bandwidth", [0, 1, 2])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("shape, channel_dim", [((6, 5), 1), ((2, 5, 3, 3), 1), ((3, 4, 5), -1)])
def test_oracle_matches_the_tmaf_reference(bandwidth, per_channel, shape, channel_dim):
    import tmaf.functional as F

    gen = torch.Generator().manual_seed(bandwidth + 10 * per_channel)
    C = shape[channel_dim]
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * 2
    x.view(-1)[:3] = torch.tensor([-1.0, 0.0, 0.5], dtype=torch.float64)  # values on breakpoints
    g = torch.randn(shape, generator=gen, dtype=torch.float64)
    bp = torch.tensor([-1.0, 0.0, 0.5, 1.5], dtype=torch.float64)
    if per_channel:
        bp = bp + 0.1 * torch.arange(C, dtype=torch.float64)[:, None]
    levels = torch.randn(C, 2 * bandwidth + 1, 5, generator=gen, dtype=torch.float64)
    xr, lr = x.clone().requires_grad_(True), levels.clone().requires_grad_(True)
    out = F.banded_tmaf(xr, bp, lr, channel_dim, backend="reference")
    out.backward(g)
    got = oracle_outputs_and_grads(x, g, bp, levels, channel_dim)
    for a, b in zip(got, [out.detach(), xr.grad, lr.grad], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


NATIVE = pytest.mark.skipif("not __import__('tmaf').native_available()",
                            reason="the native operators are not built")
FAST_BACKENDS = [pytest.param("native", marks=NATIVE), "eager"]


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("kind", ["diagonal", "tridiagonal"])
@pytest.mark.parametrize("shape", ["6x5", "2x4x3x3", "2x4x3x3-cl"])
def test_fast_paths_pass_the_reference_check(backend, kind, shape):
    s = Shape.parse(shape)
    x = s.randn(torch.device("cpu"), requires_grad=True)
    cand = Candidate(Spec(kind, backend, 5), x, s.randn(torch.device("cpu")))
    assert cand.spec.uses_tmaf
    assert check_against_reference(cand) < 1e-5


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_a_wrong_fast_kernel_fails_the_check(backend, monkeypatch):
    import tmaf._eager as eager
    import tmaf._native as native

    if backend == "native":
        right = native.banded_tmaf_native
        monkeypatch.setattr(native, "banded_tmaf_native", lambda *a: right(*a) * 1.001)
    else:
        right = eager.banded_fwd
        monkeypatch.setattr(eager, "banded_fwd", lambda *a: right(*a) * 1.001)
    x = torch.randn(4, 6, requires_grad=True)
    with pytest.raises(AssertionError, match="output differs from the reference"):
        check_against_reference(Candidate(Spec("diagonal", backend, 5), x, torch.randn(4, 6)))


def test_shapes_parse_with_their_layout():
    assert Shape.parse("64x64x32x32").layout == "outer"
    assert Shape.parse("4096x1024").layout == "inner"
    cl = Shape.parse("2x4x5x5-cl")
    assert cl.layout == "inner" and cl.name == "2x4x5x5-cl"
    assert cl.randn(torch.device("cpu")).is_contiguous(memory_format=torch.channels_last)
    for bad in ("64", "4x0", "axb", "4x5-cl", "2x4x5x5-xx"):
        with pytest.raises(ValueError):
            Shape.parse(bad)


def _act_row(shape, layout, threads, phase, kind, m, ratio, mode="native"):
    return {"shape": shape, "layout": layout, "threads": threads, "seed": 0, "phase": phase,
            "group": mode, "candidate": f"{kind}-m{m}/{mode}", "kind": kind, "mode": mode, "m": m,
            "median_ms": 1.0, "ratio_vs_relu_eager": ratio, "saved_act_bytes_vs_relu_eager": 1.0}


def test_targets_use_their_limits_per_thread_count():
    act = [_act_row("64x64x32x32", "outer", 1, "fwd_bwd", "diagonal", 9, 1.2),
           _act_row("64x64x32x32", "outer", 2, "fwd_bwd", "diagonal", 9, 1.2),
           _act_row("64x64x32x32", "outer", 2, "fwd", "diagonal", 9, 1.04),
           _act_row("64x64x32x32", "outer", 1, "fwd_bwd", "diagonal", 17, 1.51),
           _act_row("4096x1024", "inner", 1, "fwd_bwd", "tridiagonal", 9, 1.9),
           _act_row("256x512", "inner", 1, "fwd_bwd", "diagonal", 9, 2.1),
           {**_act_row("256x512", "inner", 1, "fwd_bwd", "relu", 0, 1.0, mode="eager"),
            "median_ms": 0.25},
           _act_row("4096x1024", "inner", 1, "fwd_bwd", "diagonal", 9, 1.6, mode="eager")]
    train = [{"model": "resnet18", "batch": 32, "threads": 1, "activation": a, "ratio_vs_relu": r}
             for a, r in (("relu", 1.0), ("diagonal/native", 1.04), ("tridiagonal/native", 1.2))]
    train += [{"model": "gpt", "batch": 32, "threads": 1, "activation": a, "ratio_vs_relu": r}
              for a, r in (("relu", 1.0), ("tridiagonal/native", 1.2))]
    first = [{"shape": f"{n}x64x16x16", "base_shape": "8x64x16x16", "threads": 1,
              "kind": "diagonal", "mode": "native", "m": 9, "first_call_ms": ms}
             for n, ms in ((9, 3.0), (10, 30.0), (11, 2.0))]
    kern = [{"shape": "64x64x32x32", "layout": "outer", "threads": 1, "phase": phase,
             "kind": "diagonal", "m": 9, "ratio_vs_relu_kernel": r}
            for phase, r in (("fwd", 1.04), ("bwd", 1.4))]
    got = {(t["target"], t["where"], t["threads"], t["backend"]): (round(t["measured"], 3),
                                                                   t["limit"], t["met"])
           for t in speed_targets.targets(act, train, first, kern, "avx512")}
    outer, inner = "diagonal fwd+bwd, channels outer", "diagonal fwd+bwd, channels innermost"
    assert got[(outer, "64x64x32x32", 1, "native")] == (1.2, 1.25, True)
    assert got[(outer, "64x64x32x32", 2, "native")] == (1.2, 1.15, False)
    assert got[("diagonal forward, channels outer", "64x64x32x32", 2, "native")][2]
    assert got[("diagonal fwd+bwd m=17, channels outer", "64x64x32x32", 1, "native")][2] is False
    assert got[("tridiagonal fwd+bwd, channels innermost", "4096x1024", 1, "native")][2]
    assert got[(inner, "4096x1024", 1, "eager")] == (1.6, 1.5, False)
    assert got[("small (N, C) layer fwd+bwd", "256x512", 1, "native")] == (2.1, 1.5, False)
    assert ("small (N, C) layer fwd+bwd", "4096x1024", 1, "native") not in got
    assert got[(speed_targets.OVERHEAD_TARGET, "256x512", 1, "native")] == (750.0, None, None)
    fwd_k, bwd_k = speed_targets.KERNEL_TARGET_NAMES
    assert got[(fwd_k, "64x64x32x32", 1, "native")] == (1.04, 1.05, True)
    assert got[(bwd_k, "64x64x32x32", 1, "native")] == (1.4, 1.35, False)
    assert got[("saved bytes for backward = ReLU's", "64x64x32x32, diagonal", "any",
                "native")][2]
    assert got[("first call of a new shape", "8x64x16x16-like, diagonal", 1, "native")] == (
        3.0, 10.0, True)  # the median over the fresh shapes
    assert got[("training step, diagonal", "CIFAR ResNet-18, batch 32", 1, "native")][2]
    assert not got[("training step, tridiagonal", "CIFAR ResNet-18, batch 32", 1, "native")][2]
    assert got[("training step, tridiagonal", "GPT (cpu-gpt), batch 32", 1,
                "native")] == (1.2, 1.05, False)
    rows = [t for t in speed_targets.targets(act, train, first, kern, "avx512")
            if t["backend"] == "native"]
    table = report.targets_table(rows)
    assert "| diagonal fwd+bwd, channels outer | 64x64x32x32 | 2 | native | avx512 | 1.20x |" \
        " <= 1.15x | **no** |" in table
    overhead = speed_targets.OVERHEAD_TARGET
    assert f"| {overhead} | 256x512 | 1 | native | avx512 | +750 us | - | - |" in table
    assert f"of {sum(t['limit'] is not None for t in rows)} met." in table


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_dry_run_writes_checked_results(tmp_path, capsys):
    import tmaf

    assert cli.main(["--dry-run", "--out", str(tmp_path)]) == 0
    rows = _read(tmp_path / "activations.csv")
    names = {r["candidate"] for r in rows}
    main = "native" if tmaf.native_available() else "eager"
    assert {"relu/eager", "prelu/eager", "gelu/eager", f"diagonal-m9/{main}",
            f"diagonal-m17/{main}", "tridiagonal-m1/eager", "diagonal-m1/reference"} <= names
    assert {r["shape"] for r in rows} == {"8x16", "2x4x5x5", "2x4x5x5-cl"}
    for r in rows:
        assert float(r["check_max_rel_err"]) < 1e-4
        assert float(r["median_ms"]) > 0
        if r["kind"] in ("relu", "diagonal", "tridiagonal") and r["mode"] in ("eager", "native"):
            # ReLU and the TMAF fast paths save one input-sized tensor (autograd references more)
            assert float(r["saved_act_bytes_vs_relu_eager"]) == 1.0, r["candidate"]
    steps = _read(tmp_path / "train_step.csv")
    assert {(r["model"], r["activation"]) for r in steps} >= {
        ("mlp", "relu"), ("mlp", f"diagonal/{main}"), ("resnet18", "diagonal/eager"),
        ("resnet18", "tridiagonal/eager")}
    first = _read(tmp_path / "first_call.csv")
    assert {r["candidate"] for r in first} >= {"relu/eager", f"diagonal-m9/{main}"}
    targets = _read(tmp_path / "targets.csv")
    assert targets[0]["backend"] == main
    kernel_free = set(speed_targets.TARGET_NAMES) - set(speed_targets.KERNEL_TARGET_NAMES)
    assert {t["target"] for t in targets} == (
        set(speed_targets.TARGET_NAMES) if tmaf.native_available() else kernel_free)
    assert {t["isa"] for t in targets} == {torch.ops.tmaf.native_isa()
                                           if tmaf.native_available() else ""}
    summary = (tmp_path / "summary.md").read_text()
    assert f"## Speed targets, {main} backend" in summary
    assert "diagonal fwd+bwd, channels outer" in summary
    config = json.loads((tmp_path / "config.json").read_text())
    env = config["environment"]
    assert env["cpu_model"] and env["torch"]
    assert env["threads_timed"] == [torch.get_num_threads()]  # the default: torch's
    assert env["native_status"] == tmaf.native_status()
    out = capsys.readouterr().out
    assert f"Speed targets, {main} backend" in out
    if tmaf.native_available():
        kernels = _read(tmp_path / "kernels.csv")
        assert {r["candidate"] for r in kernels} >= {"relu", "threshold_backward",
                                                     "diagonal-m9/native"}
        assert {r["phase"] for r in kernels} == {"fwd", "bwd"}
        assert all(float(r["ratio_vs_relu_kernel"]) > 0 for r in kernels)
        assert f"## Kernels only, forward, {torch.get_num_threads()} thread(s)" in summary
    # tmaf bench report rebuilds targets.csv and summary.md from the CSVs alone
    (tmp_path / "summary.md").unlink()
    assert cli.main(["report", str(tmp_path)]) == 0
    rebuilt = (tmp_path / "summary.md").read_text()  # from the CSVs' rounded values
    assert [x for x in rebuilt.splitlines() if x.startswith("#")] == \
        [x for x in summary.splitlines() if x.startswith("#")]
    assert cli.main(["report", str(tmp_path / "nothing")]) == 2


def test_compile_cost_probe_is_a_bench_subcommand(capsys):
    assert cli.main(["compile-cost", "diagonal-m1/eager", "4x8", "cpu", "1"]) == 0
    probe = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert probe["first_call_s"] > 0 and probe["second_call_s"] > 0
    assert cli.main(["compile-cost", "diagonal-m1/eager", "4x8", "cpu"]) == 2


def test_gpt_training_step_is_timed_against_gelu_and_checked(tmp_path):
    """The GPT's TMAF sees (B, T, C) with channels innermost; its rows carry the ratio to GELU,
    pass the reference check on the loss and every gradient, and feed the training-step
    targets against ReLU's step (<= 1.05x)."""
    assert cli.main(["--dry-run", "--parts", "train", "--models", "gpt", "--out",
                     str(tmp_path)]) == 0
    steps = {r["activation"]: r for r in _read(tmp_path / "train_step.csv")}
    assert {"relu", "gelu", "diagonal/eager", "tridiagonal/eager", "continuous_diagonal/eager",
            "continuous_tridiagonal/eager"} <= set(steps)
    assert {r["model"] for r in steps.values()} == {"gpt"}
    assert float(steps["gelu"]["ratio_vs_gelu"]) == 1.0
    for r in steps.values():
        assert float(r["ratio_vs_gelu"]) > 0 and float(r["check_max_rel_err"]) < 1e-4
    gpt = [t for t in _read(tmp_path / "targets.csv") if "GPT" in t["where"]]
    assert {t["target"] for t in gpt} == {"training step, diagonal", "training step, tridiagonal"}
    assert {float(t["limit"]) for t in gpt} == {1.05}
    assert "| vs GELU |" in (tmp_path / "summary.md").read_text()


def test_memory_formats_time_the_cifar_net_side_by_side_and_checked(tmp_path):
    """The cpu-cifar net (frozen whitening stem) in NCHW and channels-last in one run: each row
    paired with ReLU in its own format and with its own NCHW step, every trainable gradient
    checked against the reference; only the NCHW rows feed the targets."""
    assert cli.main(["--dry-run", "--parts", "train", "--models", "airbench", "--backends",
                     "native", "--memory-formats", "contiguous,channels-last", "--out",
                     str(tmp_path)]) == 0
    rows = _read(tmp_path / "train_step.csv")
    steps = {(r["activation"], r["memory_format"]): r for r in rows}
    assert {(a, f) for a in ("relu", "diagonal/native", "tridiagonal/native")
            for f in ("contiguous", "channels-last")} <= set(steps)
    assert float(steps["relu", "channels-last"]["ratio_vs_relu"]) == 1.0
    assert float(steps["diagonal/native", "contiguous"]["ratio_vs_contiguous"]) == 1.0
    for r in rows:
        assert float(r["ratio_vs_contiguous"]) > 0 and float(r["check_max_rel_err"]) < 1e-4
    targets = _read(tmp_path / "targets.csv")
    assert len([t for t in targets if "training step" in t["target"]]) == 2  # diagonal, tri
    assert "| memory format |" in (tmp_path / "summary.md").read_text()


def test_presets_and_cli_conventions():
    assert DEFAULT_THREADS == 0  # torch's default for the machine, resolved here
    assert cli.parse_args(["--dry-run"]).threads == (torch.get_num_threads(),)
    assert cli.parse_args([]).threads == (torch.get_num_threads(),)
    quick = cli.parse_args(["--quick"])
    assert quick.threads == (1, 2) and quick.backends == ("native",)
    assert quick.out.endswith("-quick")
    assert {"64x64x32x32", "128x64x32x32", "64x256x16x16", "4096x1024", "256x512"} \
        <= set(quick.shapes) and any(s.endswith("-cl") for s in quick.shapes)
    assert {9, 17} <= set(quick.ms)
    assert cli.parse_args(["--quick", "--threads", "2"]).threads == (2,)
    assert cli.parse_args(["--dry-run", "--seed", "3"]).seeds == (3,)
    assert cli.parse_args(["--dry-run", "--seeds", "0,1"]).seeds == (0, 1)
    cfg = cli.parse_args(["--dry-run", "--backends", "eager,native", "--shapes", "4x8",
                          "--models", "mlp"])
    assert cfg.backends == ("native", "eager") and cfg.shapes == ("4x8",)
    assert cfg.train_models == ("mlp",)
    assert "compiled" in cli.parse_args(["--dry-run", "--compile"]).backends
    quick_dry = cli.parse_args(["--quick", "--dry-run"])  # the quick selection at dry-run sizes
    assert quick_dry.preset == "dry-run" and quick_dry.backends == ("native",)
    assert quick_dry.ms == (9, 17) and quick_dry.threads == (1, 2) and quick_dry.baselines == ("relu",)


@pytest.mark.parametrize("argv, message", [
    (["--dry-run", "--parts", "act,nope"], "--parts"),
    (["--quick", "--compile"], "--compile only applies"),
    (["--dry-run", "--repeats", "0"], "--repeats"),
    (["--dry-run", "--threads", "1,1"], "--threads"),
    (["--dry-run", "--threads", "two"], "--threads"),
    (["--dry-run", "--backends", "fast"], "--backends"),
    (["--dry-run", "--shapes", "4x"], "--shapes"),
    (["--dry-run", "--seed", "1", "--seeds", "2"], "give the seeds once"),
    (["--dry-run", "--no-such-option"], "unrecognized arguments"),
    (["--dry-run", "--memory-formats", "nhwc"], "--memory-formats"),
    (["--dry-run", "--models", "mlp,resnet18", "--memory-formats", "channels-last"],
     "needs image models"),
    (["--quick", "--clock", "thread"], "needs --device cpu and --threads 1"),
    (["--dry-run", "--clock", "cpu"], "--clock"),
])
def test_bad_options_are_one_line_errors(argv, message, capsys):
    with pytest.raises(UsageError, match=message.replace(".", r"\.")):
        cli.parse_args(argv)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_unwritable_output_folder_is_one_line_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["--dry-run", "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: output folder")


def test_package_entry_point_runs_outside_the_repository(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tmaf_lab", "bench", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--dry-run" in proc.stdout and "--threads" in proc.stdout
    assert all(tool in proc.stdout for tool in cli.TOOLS)


def test_tmaf_bench_quick_dry_run_runs_outside_the_repository(tmp_path):
    """The installed command, from a folder that is not the checkout: the benchmarks are part
    of the installed lab, not a folder found relative to the repository."""
    proc = subprocess.run([sys.executable, "-m", "tmaf_lab", "bench", "--quick", "--dry-run",
                           "--out", str(tmp_path / "b")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "b" / "targets.csv").exists()
    proc = subprocess.run([sys.executable, "-m", "tmaf_lab", "bench", "grids", "--help"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--backends" in proc.stdout


def test_grids_dry_run_compares_per_channel_with_shared(tmp_path, capsys):
    import tmaf
    from tmaf_lab.bench import grids

    if not tmaf.native_available():
        pytest.skip("native operators not built")
    assert grids.main(["--dry-run", "--out", str(tmp_path / "g")]) == 0
    rows = list(csv.DictReader((tmp_path / "g" / "grids.csv").open()))
    assert {(r["kind"], r["phase"]) for r in rows} == {
        (k, p) for k in grids.KINDS for p in ("fwd", "bwd", "module", "module-eager")}
    assert len(rows) == len(grids.DRY_SHAPES) * 8 and all(float(r["per_channel_vs_shared"]) > 0
                                                          for r in rows)
    assert "per-channel / shared" in (tmp_path / "g" / "summary.md").read_text()
    assert grids.main(["--m", "0", "--out", str(tmp_path / "h")]) == 2
    assert "--m must be >= 1" in capsys.readouterr().err
    for bad, why in (("native", "native not among them"), ("eager,eager", "eager repeated"),
                     ("eager,fast", "fast not among them")):
        assert grids.main(["--dry-run", "--backends", bad, "--out", str(tmp_path / "h")]) == 2
        err = capsys.readouterr().err
        assert "--backends: expected" in err and why in err
    assert grids.parse_args([]).backends == ("eager", "compiled")
    assert grids.parse_args(["--dry-run", "--backends", ""]).backends == ()


def test_grids_per_channel_grid_keeps_zero_and_order():
    import tmaf
    from tmaf_lab.bench.grids import per_channel_grid

    shared = tmaf.uniform_breakpoints(9, -2.0, 2.0)
    g = per_channel_grid(shared, 7, torch.Generator().manual_seed(0))
    assert g.shape == (7, 9) and bool((g[:, 4] == 0).all()) and bool((g.diff(1) > 0).all())


def test_percall_table_puts_each_build_and_isa_side_by_side():
    from tmaf_lab.bench import percall

    def row(label, isa, what, ratio, extra):
        return {"label": label, "isa": isa, "threads": "1", "what": what, "shape": "256x32",
                "phase": "fwd_bwd" if what == "overhead" else "bwd", "kind": "diagonal", "m": "9",
                "extra_us": extra, "ratio": ratio}

    table = percall.before_after_table([row("before", "avx2", "overhead", "4.3", "176.2"),
                                        row("after", "avx2", "overhead", "2.1", "60.4"),
                                        row("before", "avx2", "kernel", "2.8", "nan")])
    lines = table.splitlines()
    assert lines[0] == "| measurement | shape | phase | kind | m | avx2 before 1t | avx2 after 1t |"
    assert lines[2] == "| overhead | 256x32 | fwd_bwd | diagonal | 9 | +176 us (4.30x) | +60 us (2.10x) |"
    assert lines[3] == "| kernel | 256x32 | bwd | diagonal | 9 | 2.80x |  |"


def test_peers_table_times_what_is_installed_and_names_what_is_not(tmp_path, capsys,
                                                                  monkeypatch):
    """tmaf bench peers: ReLU, GELU, PReLU and tmaf's four kinds always; each peer when its
    package imports, otherwise listed as left out with the reason (never an error)."""
    from tmaf_lab import peer_activations as peers

    real = peers._quiet_import

    def no_deepsplines(name):
        if name.startswith("deepsplines"):
            raise peers.PeerMissing(f"{name}: ModuleNotFoundError: not here")
        return real(name)

    monkeypatch.setattr(peers, "_quiet_import", no_deepsplines)
    out = tmp_path / "peers"
    assert cli.main(["peers", "--shapes", "4x8x4x4", "--peers", "deepbspline,aplu",
                     "--repeats", "2", "--out", str(out)]) == 0
    data = json.loads((out / "peers.json").read_text())
    names = {r["candidate"] for r in data["rows"]}
    assert {"relu", "gelu", "prelu", "tmaf diagonal", "tmaf continuous_tridiagonal"} <= names
    assert "deepbspline" not in names and "not here" in data["missing"]["4x8x4x4"]["deepbspline"]
    assert all(r["ratio_vs_relu"] > 0 for r in data["rows"])
    md = (out / "peers.md").read_text()
    assert "| tmaf diagonal |" in md and "deepbspline left out" in md
    assert data["env"]["versions"]["deepsplines"]
    assert cli.main(["peers", "--peers", "swish"]) == 2
    assert "unknown ['swish']" in capsys.readouterr().err
