"""``python -m benchmarks``: speed and memory of TMAF against ReLU / PReLU / GELU.

Presets: full (the issue's grid, ~15 min on 2 CPU cores), ``--quick`` (one conv shape, m = 8,
ResNet-18 step), ``--dry-run`` (tiny shapes, seconds, no torch.compile unless ``--compile``).
Writes to ``--out`` (default ``results/bench/<device>``; dry runs: ``runs/bench-dry-run``):
config.json (provenance), activations.csv, train_step.csv, compile_cost.csv, targets.csv,
summary.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass

import torch

from . import report

PARTS = ("act", "train", "compile")


@dataclass(frozen=True)
class BenchConfig:
    preset: str  # full | quick | dry-run
    device: str
    out: str
    parts: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    ms: tuple[int, ...]
    repeats: int  # rounds for baselines and the TMAF "compiled" backend
    slow_repeats: int  # rounds for the TMAF "eager" backend
    reference_ms: tuple[int, ...]  # m values at which the (seconds-per-call) reference is timed
    warmup: int
    use_compile: bool  # include torch.compile baselines and the TMAF "compiled" backend
    train_models: tuple[str, ...]
    train_batch: dict
    train_width: dict
    train_image: dict  # model -> image side (default: the data set's)
    train_repeats: int
    compile_probe_shape: tuple[int, ...]
    compile_probe_specs: tuple[str, ...]
    threads: int  # torch intra-op threads
    seed: int = 0


PRESETS = {
    "full": dict(shapes=((4096, 1024), (128, 64, 32, 32), (64, 256, 16, 16)), ms=(1, 5, 8, 16),
                 repeats=11, slow_repeats=3, reference_ms=(8,), warmup=2, train_models=("mlp", "resnet18"),
                 train_batch={"mlp": 256, "resnet18": 32}, train_width={}, train_image={},
                 train_repeats=7,
                 compile_probe_shape=(128, 64, 32, 32),
                 compile_probe_specs=("relu/compile", "diagonal-m8/compiled",
                                      "tridiagonal-m8/compiled")),
    "quick": dict(shapes=((128, 64, 32, 32),), ms=(8,), repeats=9, slow_repeats=3,
                  reference_ms=(8,), warmup=2, train_models=("resnet18",),
                  train_batch={"resnet18": 16}, train_width={}, train_image={},
                  train_repeats=5, compile_probe_shape=(128, 64, 32, 32),
                  compile_probe_specs=("diagonal-m8/compiled",)),
    "dry-run": dict(shapes=((8, 16), (2, 4, 5, 5)), ms=(1, 5), repeats=3, slow_repeats=2,
                    reference_ms=(1, 5), warmup=1, train_models=("mlp", "resnet18"),
                    train_batch={"mlp": 4, "resnet18": 2}, train_width={"mlp": 16, "resnet18": 4},
                    train_image={"resnet18": 8},
                    train_repeats=2, compile_probe_shape=(8, 16),
                    compile_probe_specs=("diagonal-m1/compiled",)),
}


def parse_args(argv: list[str]) -> BenchConfig:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0],
                                allow_abbrev=False)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="subset: one conv shape, m=8, ResNet-18")
    g.add_argument("--dry-run", action="store_true", help="tiny shapes, seconds (for tests)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", default=None, help="output folder (default results/bench/<device>)")
    p.add_argument("--parts", default=None,
                   help=f"comma list of {','.join(PARTS)} (default: all; dry run: act,train)")
    p.add_argument("--compile", action="store_true",
                   help="with --dry-run: include torch.compile candidates (slow to compile)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per candidate")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: 1 for --dry-run, else torch's default)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    preset = "dry-run" if a.dry_run else "quick" if a.quick else "full"
    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    if device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda requested but torch.cuda.is_available() is False")
    if a.compile and not a.dry_run:
        p.error("--compile only applies to --dry-run (the other presets always compile)")
    default_parts = "act,train" if a.dry_run and not a.compile else ",".join(PARTS)
    parts = tuple(s for s in (a.parts or default_parts).split(",") if s)
    bad = [s for s in parts if s not in PARTS]
    if bad or not parts:
        p.error(f"--parts: expected a comma list of {', '.join(PARTS)}, got {a.parts!r}")
    if a.repeats is not None and a.repeats < 1:
        p.error(f"--repeats: expected >= 1, got {a.repeats}")
    if a.threads is not None and a.threads < 1:
        p.error(f"--threads: expected >= 1, got {a.threads}")
    threads = a.threads or (1 if a.dry_run else torch.get_num_threads())
    out = a.out or ("runs/bench-dry-run" if a.dry_run else f"results/bench/{device}")
    settings = dict(PRESETS[preset])
    if a.repeats is not None:
        settings["repeats"] = a.repeats
    return BenchConfig(preset=preset, device=device, out=out, parts=parts, seed=a.seed,
                       threads=threads,
                       use_compile=not a.dry_run or a.compile, **settings)


def run(cfg: BenchConfig, argv: list[str]) -> dict[str, list[dict]]:
    from tmaf_lab.runmeta import check_writable, save_config, write_json

    from . import activations, compile_cost, train_step

    out = check_writable(cfg.out)
    save_config(out, cfg, ["python", "-m", "benchmarks", *argv], cfg.device)
    device = torch.device(cfg.device)
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f} s] {msg}", flush=True)

    # Many compiled variants (shapes x m x kinds) exceed dynamo's default recompile limit (8),
    # after which it would silently run the uncompiled function: raise it for the benchmark.
    torch._dynamo.config.cache_size_limit = 256
    results: dict[str, list[dict]] = {"activations": [], "train_step": [], "compile_cost": []}
    if "act" in cfg.parts:
        for shape in cfg.shapes:
            results["activations"] += activations.run_shape(
                shape, cfg.ms, device=device, repeats=cfg.repeats, slow_repeats=cfg.slow_repeats,
                reference_ms=cfg.reference_ms, warmup=cfg.warmup, use_compile=cfg.use_compile,
                seed=cfg.seed, log=log)
            report.write_csv(out / "activations.csv", results["activations"])
    if "train" in cfg.parts:
        backends = ("compiled", "eager") if cfg.use_compile else ("eager",)
        for model in cfg.train_models:
            results["train_step"] += train_step.run_model(
                model, train_step.step_specs(backends),
                batch=cfg.train_batch[model], device=device,
                repeats=cfg.train_repeats if cfg.preset != "dry-run" else 2, warmup=1,
                seed=cfg.seed, log=log, width=cfg.train_width.get(model),
                image_size=cfg.train_image.get(model))
            report.write_csv(out / "train_step.csv", results["train_step"])
    if "compile" in cfg.parts:
        specs = [compile_cost.parse_spec(s) for s in cfg.compile_probe_specs]
        results["compile_cost"] = compile_cost.run_probes(specs, cfg.compile_probe_shape,
                                                          device, cfg.threads, log)
        report.write_csv(out / "compile_cost.csv", results["compile_cost"])
    target_rows = report.targets(results["activations"], results["train_step"])
    report.write_csv(out / "targets.csv", target_rows)
    from tmaf_lab.runmeta import atomic_write_text

    atomic_write_text(out / "summary.md", report.markdown(
        results["activations"], results["train_step"], target_rows, results["compile_cost"]))
    write_json(out / "timing.json", {"wall_s": time.perf_counter() - t_start})
    log(f"wrote {out}/ (summary.md, *.csv)")
    return results


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = parse_args(argv)
    print(f"benchmark config: {dataclasses.asdict(cfg)}", flush=True)
    try:
        import tmaf  # noqa: F401
    except ImportError as e:
        print(f"error: cannot import tmaf ({e}); install the package: pip install -e .",
              file=sys.stderr)
        return 2
    old_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        run(cfg, argv)
    except AssertionError as e:  # a fast path disagreed with its reference
        print(f"error: correctness check failed: {e}", file=sys.stderr)
        return 1
    finally:
        torch.set_num_threads(old_threads)
    return 0
