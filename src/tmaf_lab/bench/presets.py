"""The ``tmaf bench`` run's configuration: :class:`BenchConfig` and its presets (full,
``--quick``, ``--dry-run``, and ``--quick`` on a GPU).
"""

from __future__ import annotations

from dataclasses import dataclass

from tmaf_lab.cli import DEFAULT_THREADS

from .candidates import TMAF_BACKENDS

BASELINES = ("relu", "prelu", "gelu")
# The speed-target shapes: channels outer (NCHW), channels innermost (N, C), channels-last conv.
TARGET_SHAPES = ("64x64x32x32", "128x64x32x32", "64x256x16x16", "4096x1024", "256x512",
                 "32x64x56x56-cl")


@dataclass(frozen=True)
class BenchConfig:
    preset: str  # full | quick | dry-run
    device: str
    out: str
    parts: tuple[str, ...]
    shapes: tuple[str, ...]  # Shape names: 64x64x32x32, 4096x1024, 32x64x56x56-cl
    ms: tuple[int, ...]
    backends: tuple[str, ...]  # TMAF backends, in TMAF_BACKENDS order ("native" first)
    baselines: tuple[str, ...]  # ReLU (always) and the other baseline activations
    compile_baselines: bool  # time the baselines under torch.compile as well
    repeats: int  # rounds for ReLU, the other baselines, native and compiled TMAF; kernels
    slow_repeats: int  # rounds for the TMAF "eager" backend
    reference_ms: tuple[int, ...]  # m values at which the (seconds-per-call) reference is timed
    warmup: int
    min_sample_s: float  # each timed sample of a fast candidate lasts at least this long
    train_models: tuple[str, ...]
    train_batch: dict
    train_width: dict
    train_image: dict  # model -> image side (default: the data set's)
    train_repeats: int
    first_call_shapes: tuple[str, ...]  # bases of the new shapes of part "first"
    compile_probe_shape: tuple[int, ...]
    compile_probe_specs: tuple[str, ...]
    threads: tuple[int, ...]  # torch intra-op thread counts, each timed in turn
    seeds: tuple[int, ...] = (0,)
    train_memory_formats: tuple[str, ...] = ("contiguous",)  # image models: NCHW, channels-last
    clock: str = "wall"  # timing.CLOCKS: wall time, or the timing thread's CPU time (1 thread)


PRESETS = {
    "full": dict(shapes=TARGET_SHAPES, ms=(1, 5, 9, 17), backends=TMAF_BACKENDS,
                 baselines=BASELINES, compile_baselines=True, repeats=15, slow_repeats=3,
                 reference_ms=(9,), warmup=2, min_sample_s=0.02,
                 train_models=("mlp", "resnet18"),
                 train_batch={"mlp": 256, "resnet18": 32, "airbench": 512, "gpt": 32},
                 train_width={"airbench": 32}, train_image={}, train_repeats=11,
                 first_call_shapes=("8x64x16x16", "200x512"),
                 compile_probe_shape=(128, 64, 32, 32),
                 compile_probe_specs=("relu/compile", "diagonal-m9/native",
                                      "diagonal-m9/compiled", "tridiagonal-m9/compiled"),
                 threads=(DEFAULT_THREADS,)),
    "quick": dict(shapes=TARGET_SHAPES, ms=(9, 17), backends=("native",), baselines=("relu",),
                  compile_baselines=False, repeats=21, slow_repeats=3, reference_ms=(),
                  warmup=2, min_sample_s=0.02, train_models=("mlp", "resnet18"),
                  train_batch={"mlp": 256, "resnet18": 32, "airbench": 512, "gpt": 32},
                  train_width={"airbench": 32}, train_image={},
                  train_repeats=11, first_call_shapes=("8x64x16x16", "200x512"),
                  compile_probe_shape=(64, 64, 32, 32),
                  compile_probe_specs=("diagonal-m9/native",), threads=(1, 2)),
    "dry-run": dict(shapes=("8x16", "2x4x5x5", "2x4x5x5-cl"), ms=(1, 9, 17),
                    backends=("native", "eager", "reference"), baselines=BASELINES,
                    compile_baselines=False, repeats=3, slow_repeats=2, reference_ms=(1, 9),
                    warmup=1, min_sample_s=0.0, train_models=("mlp", "resnet18"),
                    train_batch={"mlp": 4, "resnet18": 2, "airbench": 2, "gpt": 2},
                    # ResNet-18 at width 4 in channels-last aborts inside torch 2.13.0+cpu at one
                    # thread (heap corruption with the ReLU, PReLU and GELU models alike)
                    train_width={"mlp": 16, "resnet18": 8, "airbench": 4, "gpt": 16},
                    train_image={"resnet18": 8}, train_repeats=2,
                    first_call_shapes=("2x4x5x5", "3x16"), compile_probe_shape=(8, 16),
                    compile_probe_specs=("diagonal-m1/compiled",), threads=(DEFAULT_THREADS,)),
}


# --quick on a GPU, where "native" has no kernels and auto's choice, "compiled", compiles for every
# (shape, m, kind): the one shape and m of the earlier quick preset, one thread (the GPU study
# runs this with a 120 s limit).
CUDA_QUICK = dict(shapes=("128x64x32x32",), ms=(9,), threads=(DEFAULT_THREADS,),
                  train_models=("resnet18",),
                  train_batch={"mlp": 256, "resnet18": 16, "airbench": 512, "gpt": 32})
