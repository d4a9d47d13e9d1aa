"""Whole training-step time (forward, cross-entropy, backward, optimizer step) per activation.

Models come from :mod:`tmaf_lab.models` (MNIST MLP 784-512-512-10, CIFAR ResNet-18 and the
``cpu-cifar`` recipe's whitened airbench net at width 32, both with SGD; the character-level
GPT of the ``cpu-gpt`` recipe, 4 x 4 heads x 128 wide, context 64, vocabulary 85, with AdamW),
built with the same seed for every activation, on a fixed synthetic batch (token ids for the
GPT, whose TMAF runs on channels innermost).  Every row carries its ratio to ReLU's step
and, where GELU is timed, to GELU's (the transformer default).  TMAF models use the library
defaults (``tmaf.DEFAULT_BREAKPOINTS``: m = 9, ReLU initialisation) and run once per fast backend
(``native`` first).  Before timing, each TMAF fast backend's loss and every parameter gradient are
compared with the ``reference`` backend on a small batch.  The models are built once; the steps
are then timed, interleaved and paired with the ReLU model's step, at each thread count.
An image model may be timed in both memory formats (``contiguous``, NCHW, and ``channels-last``)
in the same interleaved rounds: each step is then paired with ReLU's in its own format
(``ratio_vs_relu``) and with its own activation's contiguous step (``ratio_vs_contiguous``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .candidates import tmaf_backend
from .timing import paired_ratio, synchronizer, time_interleaved

#: model -> (input shape, classes); the GPT's input is ``context`` token ids over ``classes``
MODELS = {"mlp": ((1, 28, 28), 10), "resnet18": ((3, 32, 32), 10),
          "airbench": ((3, 32, 32), 10), "gpt": ((64,), 85)}
TOKEN_MODELS = ("gpt",)
#: the model of :mod:`tmaf_lab.models` each name builds (default: the name itself)
BUILDS = {"airbench": "airbench-white"}
#: models whose inputs are images (the ones a channels-last layout applies to)
IMAGE_MODELS = ("resnet18", "airbench")
MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels-last": torch.channels_last}


@dataclass(frozen=True)
class StepSpec:
    act: str  # relu | prelu | gelu | diagonal | tridiagonal
    backend: str | None = None  # TMAF backend, None for baselines

    @property
    def name(self) -> str:
        return self.act if self.backend is None else f"{self.act}/{self.backend}"


TMAF_STEP_KINDS = ("diagonal", "tridiagonal")
#: the GPT is also timed with GELU (its default) and the continuous forms
TOKEN_BASELINES = ("gelu",)
TOKEN_KINDS = ("continuous_diagonal", "continuous_tridiagonal")


def step_specs(backends: Sequence[str] = ("native", "compiled", "eager"),
               baselines: Sequence[str] = ("relu", "prelu", "gelu"),
               model: str | None = None) -> list[StepSpec]:
    """ReLU first (the pairing baseline), the other baselines, then TMAF per backend (for a
    token model, GELU among the baselines and the continuous forms among the kinds)."""
    token = model in TOKEN_MODELS
    bases = tuple(dict.fromkeys((*baselines, *(TOKEN_BASELINES if token else ()))))
    kinds = TMAF_STEP_KINDS + (TOKEN_KINDS if token else ())
    return ([StepSpec("relu")] + [StepSpec(a) for a in bases if a != "relu"]
            + [StepSpec(a, b) for b in backends for a in kinds])


class TrainStepTimer:
    """One model + SGD optimizer + fixed batch; ``step()`` is one timed training step."""

    def __init__(self, model_name: str, spec: StepSpec, batch: int, device: torch.device,
                 seed: int = 0, width: int | None = None, image_size: int | None = None,
                 memory_format: str = "contiguous"):
        import tmaf
        from tmaf_lab.models import create_model

        in_shape, classes = MODELS[model_name]
        if image_size is not None:
            in_shape = (in_shape[0], image_size, image_size)
        torch.manual_seed(seed)
        kwargs = {} if width is None else {"width": width}
        gen = torch.Generator().manual_seed(seed + 1)
        if model_name in TOKEN_MODELS:
            self.model = create_model(model_name, in_shape, classes, spec.act,
                                      **kwargs).to(device)
            self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=0.1)
            self.x = torch.randint(0, classes, (batch, *in_shape), generator=gen).to(device)
            self.y = torch.randint(0, classes, (batch, *in_shape), generator=gen).to(device)
        else:
            layout = MEMORY_FORMATS[memory_format]
            self.model = create_model(BUILDS.get(model_name, model_name), in_shape, classes,
                                      tmaf.get_act_layer(spec.act), **kwargs
                                      ).to(device, memory_format=layout)
            self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)
            self.x = torch.randn((batch, *in_shape), generator=gen).to(
                device, memory_format=layout)
            self.y = torch.randint(0, classes, (batch,), generator=gen).to(device)
        self.backend = spec.backend

    def loss(self, x: torch.Tensor, y: torch.Tensor, backend: str | None) -> torch.Tensor:
        with tmaf_backend(backend):
            logits = self.model(x)
            return nn.functional.cross_entropy(logits.flatten(0, -2), y.flatten())

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        with tmaf_backend(self.backend):
            self.loss(self.x, self.y, None).backward()
        self.opt.step()

    def check(self, n: int = 4, rtol: float = 1e-4) -> float:
        """Loss and every parameter gradient of the fast backend vs the reference backend."""
        if self.backend is None:
            return 0.0
        x, y = self.x[:n], self.y[:n]
        results = []
        for backend in (self.backend, "reference"):
            self.model.zero_grad(set_to_none=True)
            loss = self.loss(x, y, backend)
            loss.backward()
            results.append([loss.detach()] + [p.grad.clone() for p in self.model.parameters()
                                              if p.requires_grad])  # the frozen stem has none
        self.model.zero_grad(set_to_none=True)
        worst = 0.0
        for i, (a, b) in enumerate(zip(*results, strict=True)):
            err = (a - b).abs().max().item() / (b.abs().max().item() or 1.0)
            if not err <= rtol:
                what = "loss" if i == 0 else f"gradient of parameter {i - 1}"
                raise AssertionError(f"{self.backend} backend: {what} differs from the reference "
                                     f"by {err:.3g} (relative to its largest entry) > {rtol:g}")
            worst = max(worst, err)
        return worst


def run_model(model_name: str, specs: list[StepSpec], *, batch: int, device: torch.device,
              repeats: int, warmup: int, seed: int, log: Callable[[str], None],
              threads: Sequence[int] = (1,), min_sample_s: float = 0.0,
              width: int | None = None, image_size: int | None = None,
              memory_formats: Sequence[str] = ("contiguous",)) -> list[dict]:
    """Interleaved step times of one model across activations (and memory formats); one row
    per (activation, memory format, threads).

    The first step and the reference check run at ``threads[0]``.  ``min_sample_s``: each sample
    runs enough steps to last that long (for millisecond steps such as the MLP's).
    """
    formats = tuple(dict.fromkeys(memory_formats))
    unknown = [f for f in formats if f not in MEMORY_FORMATS]
    if unknown or not formats:
        raise ValueError(f"memory formats: expected some of {', '.join(MEMORY_FORMATS)}, "
                         f"got {', '.join(formats) or 'none'}")
    if formats != ("contiguous",) and model_name not in IMAGE_MODELS:
        raise ValueError(f"memory format channels-last needs an image model "
                         f"({', '.join(IMAGE_MODELS)}), got {model_name!r}")
    sync = synchronizer(device)
    timers, info = {}, {}
    torch.set_num_threads(threads[0])
    for fmt in formats:
        for spec in specs:
            key = _key(spec.name, fmt)
            tr = TrainStepTimer(model_name, spec, batch, device, seed, width, image_size, fmt)
            t0 = time.perf_counter()
            tr.step()
            sync()
            first = time.perf_counter() - t0
            err = tr.check()
            timers[key] = tr
            info[key] = {"first_step_s": first, "check_max_rel_err": err}
            log(f"  ready {model_name} {key:<36} first step {first:6.2f} s  check err {err:.1e}")
    rows = []
    for t in threads:
        torch.set_num_threads(t)
        t0 = time.perf_counter()
        timings = time_interleaved({n: tr.step for n, tr in timers.items()}, repeats=repeats,
                                   warmup=warmup, sync=sync, min_sample_s=min_sample_s)
        new = []
        for fmt in formats:
            base, gelu = timings[_key("relu", fmt)], timings.get(_key("gelu", fmt))
            for spec in specs:
                tm = timings[_key(spec.name, fmt)]
                contiguous = timings.get(_key(spec.name, "contiguous"))
                new.append({
                    "model": model_name, "batch": batch, "threads": t, "seed": seed,
                    "activation": spec.name, "memory_format": fmt,
                    "median_ms": 1e3 * tm.median, "q25_ms": 1e3 * tm.quantile(0.25),
                    "q75_ms": 1e3 * tm.quantile(0.75), "repeats": len(tm.samples),
                    "steps_per_sample": tm.number, "ratio_vs_relu": paired_ratio(tm, base),
                    "ratio_vs_gelu": paired_ratio(tm, gelu) if gelu is not None else float("nan"),
                    "ratio_vs_contiguous": (paired_ratio(tm, contiguous)
                                            if contiguous is not None else float("nan")),
                    **info[_key(spec.name, fmt)]})
        rows += new
        key = "ratio_vs_gelu" if model_name in TOKEN_MODELS and gelu is not None else "ratio_vs_relu"
        log(f"  {model_name} {t} thread(s) steps in {time.perf_counter() - t0:.1f} s: relu "
            f"{new[0]['median_ms']:.1f} ms; {key}: "
            + ", ".join(f"{_key(r['activation'], r['memory_format'])} {r[key]:.2f}x"
                        for r in new[1:]))
    return rows


def _key(activation: str, memory_format: str) -> str:
    """The timer's name: the activation, and its memory format where it is not contiguous."""
    return activation if memory_format == "contiguous" else f"{activation} {memory_format}"
