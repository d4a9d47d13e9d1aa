"""``tmaf bench``: speed and memory of TMAF against ReLU / PReLU / GELU.

Presets: full (every backend, m and baseline, torch.compile included), ``--quick`` (the speed
targets of the ``native`` backend at 1 and 2 threads, about 10 min), ``--dry-run``
(tiny shapes, seconds, no torch.compile unless ``--compile``).  Writes to ``--out`` (default
``results/bench/<device>``, ``--quick``: ``results/bench/<device>-quick``; dry runs:
``runs/bench-dry-run``): config.json (provenance: command, commit, versions, CPU model, native
ISA, threads), activations.csv, kernels.csv, first_call.csv, train_step.csv, compile_cost.csv,
targets.csv, summary.md, timing.json.

The tools beside it are sub-commands (:data:`TOOLS`): ``tmaf bench grids``, ``peers``,
``percall``, ``gpt-arms``, ``compile-cost`` (one compile probe) and ``report`` (recompute the
summary of a finished run).
"""

from __future__ import annotations

import dataclasses
import gc
import sys
import time

import torch

from tmaf_lab.cli import (
    OneLineErrorParser,
    UsageError,
    add_seed_options,
    add_subcommands,
    command_main,
    usage_error,
)
from tmaf_lab.lists import parse_list

from . import report, speed_targets
from .candidates import TMAF_BACKENDS, Shape
from .presets import CUDA_QUICK, PRESETS, BenchConfig
from .timing import set_clock
from .train_step import IMAGE_MODELS, MEMORY_FORMATS, MODELS

PARTS = ("act", "kernels", "first", "train", "compile")
#: The benchmark's tools, ``tmaf bench NAME``: name -> (module, help).
TOOLS = {
    "grids": ("tmaf_lab.bench.grids", "per-channel grids against one grid shared by the layer"),
    "peers": ("tmaf_lab.bench.peer_speed", "the learnable-activation libraries against ReLU"),
    "percall": ("tmaf_lab.bench.percall", "per-call cost and kernel-only ratios (native backend)"),
    "gpt-arms": ("tmaf_lab.bench.gpt_arms", "the GPT training step of every gpt-baselines arm"),
    "compile-cost": ("tmaf_lab.bench.compile_cost",
                     "one compile probe: first and second call in this process"),
    "report": ("tmaf_lab.bench.report", "recompute targets.csv and summary.md of a finished run"),
    "compile-lengths": ("tmaf_lab.bench.compile_lengths",
                        "the compiled backend fed one sequence length after another"),
    "module-call": ("tmaf_lab.bench.module_call",
                    "a module change against a git revision, forward+backward per call"),
}


def _int_list(option: str, text: str, low: int) -> tuple[int, ...]:
    try:
        return parse_list(text, int, what="integers", low=low)
    except ValueError as e:
        raise UsageError(f"{option}: {e}") from None


def _names(option: str, text: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    try:
        return parse_list(text, choices=allowed, distinct=False)
    except ValueError as e:
        raise UsageError(f"{option}: {e}") from None


def _parser() -> OneLineErrorParser:
    p = OneLineErrorParser(prog="tmaf bench",
                           description="Speed and memory of TMAF against ReLU, PReLU and GELU; "
                                       "--quick measures the speed targets.",
                           allow_abbrev=False)
    p.add_argument("--quick", action="store_true",
                   help="the speed targets: native backend, the target shapes, m=9 and 17, "
                        "MLP and ResNet-18 steps, at 1 and 2 threads (about 10 min)")
    p.add_argument("--dry-run", action="store_true",
                   help="tiny shapes, seconds (for tests); with --quick: the quick selection "
                        "(native backend, ReLU baseline, m = 9 and 17, 1 and 2 threads) at those sizes")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", default=None,
                   help="output folder (default results/bench/<device>, --quick: "
                        "results/bench/<device>-quick)")
    p.add_argument("--parts", default=None,
                   help=f"comma list of {','.join(PARTS)} (default: all; dry run: all but "
                        "compile, unless --compile)")
    p.add_argument("--backends", default=None,
                   help=f"TMAF backends to time, comma list of {','.join(TMAF_BACKENDS)} "
                        "(default: full: all; --quick: native; dry run: native,eager,reference). "
                        "Where native is not built for the device, auto's choice replaces it")
    p.add_argument("--shapes", default=None, metavar="SHAPE[,SHAPE...]",
                   help="input shapes, channels on dim 1, e.g. 64x64x32x32,4096x1024,"
                        "32x64x56x56-cl (-cl: torch.channels_last) (default: the preset's)")
    p.add_argument("--models", default=None,
                   help="training-step models, comma list of mlp,resnet18,airbench,gpt (default: "
                        "mlp,resnet18; airbench: the cpu-cifar recipe's net, batch 512)")
    p.add_argument("--memory-formats", default=None, metavar="FORMAT[,FORMAT...]",
                   help="memory formats of the image models' training step, comma list of "
                        "contiguous,channels-last, timed side by side (default: contiguous)")
    p.add_argument("--compile", action="store_true",
                   help="with --dry-run: include torch.compile candidates (slow to compile)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed rounds per fast candidate and kernel (default: the preset's)")
    p.add_argument("--threads", default=None, metavar="T[,T...]",
                   help="torch CPU thread counts to time, each in turn, e.g. 1,2 (default "
                        "0 = torch's default; --quick: 1,2, the counts the targets name)")
    p.add_argument("--clock", default="wall", choices=("wall", "thread"),
                   help="what a sample measures: wall time (default), or the timing thread's "
                        "CPU time, which leaves out the time other processes take on a shared "
                        "machine (CPU, --threads 1 only)")
    add_seed_options(p, (0,))
    add_subcommands(p, TOOLS, required=False, title="tools (tmaf bench NAME --help)")
    return p


def parse_args(argv: list[str]) -> BenchConfig:
    """The run's configuration; raises :class:`UsageError` for a bad command line."""
    return config_of(_parser().parse_args(argv))


def config_of(a) -> BenchConfig:
    """The run's configuration from parsed options; raises :class:`UsageError`."""
    preset = "dry-run" if a.dry_run else "quick" if a.quick else "full"
    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but torch.cuda.is_available() is False")
    if a.compile and not a.dry_run:
        raise UsageError("--compile only applies to --dry-run (the other presets set "
                         "torch.compile through --backends and the preset)")
    settings = dict(PRESETS[preset])
    if a.quick and a.dry_run:  # what --quick measures, at the dry run's sizes
        settings.update({k: PRESETS["quick"][k] for k in ("ms", "backends", "baselines", "threads")})
    if preset == "quick" and device == "cuda":  # no native kernels there: compiled, one shape
        settings.update(CUDA_QUICK)
    default_parts = PARTS if not a.dry_run or a.compile else tuple(p for p in PARTS
                                                                   if p != "compile")
    parts = _names("--parts", a.parts, PARTS) if a.parts is not None else default_parts
    backends = settings["backends"] + (("compiled",) if a.compile else ())
    if a.backends is not None:
        backends = _names("--backends", a.backends, TMAF_BACKENDS)
    settings["backends"] = tuple(b for b in TMAF_BACKENDS if b in backends)
    if a.compile:
        settings["compile_baselines"] = True
    if a.shapes is not None:
        try:
            shapes = tuple(Shape.parse(s).name for s in a.shapes.split(",") if s)
        except ValueError as e:
            raise UsageError(f"--shapes: {e}") from None
        if not shapes:
            raise UsageError("--shapes: expected a comma list of shapes such as 64x64x32x32")
        settings["shapes"] = shapes
    if a.models is not None:
        settings["train_models"] = _names("--models", a.models, tuple(MODELS))
    if a.memory_formats is not None:
        formats = _names("--memory-formats", a.memory_formats, tuple(MEMORY_FORMATS))
        flat = [m for m in settings["train_models"] if m not in IMAGE_MODELS]
        if formats != ("contiguous",) and flat:
            raise UsageError(f"--memory-formats {a.memory_formats} needs image models "
                             f"({', '.join(IMAGE_MODELS)}), got --models "
                             f"{','.join(settings['train_models'])}")
        settings["train_memory_formats"] = formats
    if a.repeats is not None:
        if a.repeats < 1:
            raise UsageError(f"--repeats: expected >= 1, got {a.repeats}")
        settings["repeats"] = a.repeats
    if a.threads is not None:
        settings["threads"] = _int_list("--threads", a.threads, 0)
    default = torch.get_num_threads()  # 0: torch's default for this machine
    settings["threads"] = tuple(dict.fromkeys(t or default for t in settings["threads"]))
    if a.clock == "thread" and (device != "cpu" or settings["threads"] != (1,)):
        raise UsageError(f"--clock thread times the calling thread's CPU time: it needs --device "
                         f"cpu and --threads 1, got {device} and threads "
                         f"{','.join(map(str, settings['threads']))}")
    settings["clock"] = a.clock
    suffix = "-quick" if a.quick else ""
    from tmaf_lab.runmeta import output_folder
    out = output_folder("bench", a.out,
                        "runs/bench-dry-run" if a.dry_run else f"results/bench/{device}{suffix}")
    return BenchConfig(preset=preset, device=device, out=out, parts=parts, seeds=a.seeds,
                       **settings)


def _device_backends(cfg: BenchConfig, log) -> tuple[str, ...]:
    """``cfg.backends`` with ``native`` replaced by auto's choice where it is not built."""
    import tmaf

    dev = torch.device(cfg.device)
    if "native" not in cfg.backends or tmaf.native_available(dev):
        return cfg.backends
    auto = tmaf.resolve_backend(torch.empty(0, device=dev), "auto")
    log(f"native backend not available on {dev} ({tmaf.native_status()}): timing {auto!r} "
        "in its place")
    chosen = {b for b in cfg.backends if b != "native"} | {auto}
    return tuple(b for b in TMAF_BACKENDS if b in chosen)


def _save_config(out, cfg: BenchConfig, argv: list[str]) -> dict:
    """config.json: runmeta's record (command, commit, versions, CPU model, torch threads,
    backend) plus the tmaf version, the native kernels' ISA and the thread counts timed."""
    import tmaf
    from tmaf_lab.runmeta import save_config, write_json

    record = save_config(out, cfg, ["tmaf", "bench", *argv], cfg.device)
    env = record["environment"]
    env["tmaf"] = tmaf.__version__
    env["native_status"] = tmaf.native_status()
    env["native_isa"] = torch.ops.tmaf.native_isa() if tmaf.native_available() else None
    env["threads_timed"] = list(cfg.threads)
    write_json(out / "config.json", record)
    return record


def _time_seed(cfg: BenchConfig, seed: int, backends: tuple[str, ...], device: torch.device,
               out, results: dict[str, list[dict]], log) -> None:
    """Time the parts of ``cfg`` that repeat per seed (activations, kernels, first call, training
    step) with this ``seed``, appending to ``results`` and rewriting each part's CSV in ``out``."""
    from . import activations, compile_cost, kernels, train_step
    from .candidates import Spec

    groups = activations.group_specs(cfg.ms, cfg.reference_ms, cfg.compile_baselines, backends,
                                     cfg.baselines)
    fast = (cfg.repeats, cfg.warmup, cfg.min_sample_s)
    reps = {"native": fast, "fast": fast, "eager": (cfg.slow_repeats, 0, 0.0),
            "reference": (1, 0, 0.0)}
    shapes = [Shape.parse(s) for s in cfg.shapes]
    if "act" in cfg.parts:
        for shape in shapes:
            results["activations"] += activations.run_shape(
                shape, groups, device=device, threads=cfg.threads, reps=reps, seed=seed,
                log=log)
            report.write_csv(out / "activations.csv", results["activations"])
    if "kernels" in cfg.parts:
        for shape in shapes:
            results["kernels"] += kernels.run_shape(
                shape, cfg.ms, device=device, threads=cfg.threads, repeats=cfg.repeats,
                warmup=cfg.warmup, min_sample_s=cfg.min_sample_s, seed=seed, log=log)
            report.write_csv(out / "kernels.csv", results["kernels"])
    if "first" in cfg.parts:
        specs = [Spec("relu", "eager")] + [
            Spec(k, b, speed_targets.TARGET_M) for b in backends if b != "reference"
            for k in ("diagonal", "tridiagonal")]
        results["first_call"] += compile_cost.run_new_shapes(
            [Shape.parse(s) for s in cfg.first_call_shapes], specs, device=device,
            threads=cfg.threads, seed=seed, log=log)
        report.write_csv(out / "first_call.csv", results["first_call"])
    if "train" in cfg.parts:
        step_backends = [b for b in backends if b != "reference"]
        for model in cfg.train_models:
            results["train_step"] += train_step.run_model(
                model, train_step.step_specs(step_backends, cfg.baselines, model),
                batch=cfg.train_batch[model], device=device, repeats=cfg.train_repeats,
                warmup=1, seed=seed, log=log, threads=cfg.threads,
                min_sample_s=cfg.min_sample_s, width=cfg.train_width.get(model),
                image_size=cfg.train_image.get(model),
                memory_formats=cfg.train_memory_formats)
            report.write_csv(out / "train_step.csv", results["train_step"])


def run(cfg: BenchConfig, argv: list[str]) -> dict[str, list[dict]]:
    from tmaf_lab.runmeta import atomic_write_text, check_writable, write_json

    from . import activations, compile_cost, kernels, train_step  # noqa: F401  (before the freeze)
    from .candidates import Spec  # noqa: F401

    out = check_writable(cfg.out)
    record = _save_config(out, cfg, argv)
    device = torch.device(cfg.device)
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f} s] {msg}", flush=True)

    backends = _device_backends(cfg, log)
    import tmaf_lab.models  # noqa: F401  (imported before the freeze below)

    set_clock(cfg.clock)

    # time_interleaved collects garbage before it times; with torch loaded a full collection
    # walks ~10^6 objects (0.25 s): move everything alive now out of the collector's sight.
    gc.collect()
    gc.freeze()
    # Many compiled variants (shapes x m x kinds) exceed dynamo's default recompile limit (8),
    # after which it would silently run the uncompiled function: raise it for the benchmark.
    torch._dynamo.config.cache_size_limit = 256
    results: dict[str, list[dict]] = {k: [] for k in ("activations", "kernels", "first_call",
                                                      "train_step", "compile_cost")}
    for seed in cfg.seeds:
        _time_seed(cfg, seed, backends, device, out, results, log)
    if "compile" in cfg.parts:
        specs = [spec for spec in map(compile_cost.parse_spec, cfg.compile_probe_specs)
                 if not spec.uses_tmaf or spec.mode in backends]
        results["compile_cost"] = compile_cost.run_probes(specs, cfg.compile_probe_shape,
                                                          device, cfg.threads[0], log)
        report.write_csv(out / "compile_cost.csv", results["compile_cost"])
    target_rows = speed_targets.targets(results["activations"], results["train_step"],
                                        results["first_call"], results["kernels"],
                                        record["environment"].get("native_isa") or "")
    report.write_csv(out / "targets.csv", target_rows)
    atomic_write_text(out / "summary.md", report.markdown(
        results["activations"], results["train_step"], target_rows, results["compile_cost"],
        results["kernels"], results["first_call"], report.conditions(record)))
    wall = time.perf_counter() - t_start
    write_json(out / "timing.json", {"wall_s": wall})
    if target_rows:
        main = [t for t in target_rows if t["backend"] == target_rows[0]["backend"]]
        print(f"\nSpeed targets, {main[0]['backend']} backend:\n\n"
              + report.targets_table(main), flush=True)
    log(f"wrote {out}/ (summary.md, targets.csv, *.csv) in {wall / 60:.1f} min")
    return results


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return command_main(_parser, lambda a: _bench(config_of(a), argv), argv)


def _bench(cfg: BenchConfig, argv: list[str]) -> int:
    print(f"benchmark config: {dataclasses.asdict(cfg)}", flush=True)
    try:
        import tmaf  # noqa: F401
    except ImportError as e:
        return usage_error(f"cannot import tmaf ({e}); install the package: "
                           "pip install --no-build-isolation -e .")
    old_threads = torch.get_num_threads()
    try:
        run(cfg, argv)
    except AssertionError as e:  # a fast path disagreed with its reference
        print(f"error: correctness check failed: {e}", file=sys.stderr)
        return 1
    finally:
        torch.set_num_threads(old_threads)
        set_clock("wall")
        gc.unfreeze()
    return 0
