"""Training a character-level GPT on Shakespeare: a step budget, a fixed validation curve.

Step s trains on ``batch_size`` windows of ``context + 1`` tokens of the training split whose
start offsets are drawn from a generator seeded by (seed, s) alone; under DDP rank r takes
windows r, r + R, ... of that same draw, so R processes see the one-process batch and a resumed
run sees what the uninterrupted one saw. The loss is the mean next-token cross-entropy (nats/char).

Every ``eval_every`` steps (and at the end) the curve gets a point: the mean training loss
since the last point and the loss on ``eval_windows`` fixed validation windows (evenly spaced
start offsets), then a checkpoint is written. At the end ``val_loss`` / ``test_loss`` are the
losses on every non-overlapping window of the validation / test split, in nats/char, and
``*_bpc`` the same in bits/char. Files as for image runs (config.json, checkpoint.pt,
metrics.jsonl, results.json), plus samples.txt: :data:`SAMPLES` continuations of
:data:`PROMPT`, :data:`SAMPLE_CHARS` characters each at temperature :data:`TEMPERATURE`,
drawn from a generator seeded by the run's seed. ``mlp_scale`` in results.json: the scale of
every block's MLP pre-activations (and, for TMAF, the grid's occupancy) at steps 0, 300 and the
end, on the first 16 fixed validation windows (:mod:`tmaf_lab.train.mlp_scale`). With
``start_from`` the model starts from a finished run's final weights, and results.json ``start``
holds the losses just before and after that start (:mod:`tmaf_lab.train.start_from`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.text import TextData, bits
from ..files import atomic_write_text, write_json
from ..runmeta import save_config
from ..runs import read_results
from . import checkpoint as ckpt
from .batches import step_generator
from .config import TrainConfig
from .distributed import Dist, all_sum, barrier
from .mlp_scale import STEPS as SCALE_STEPS
from .mlp_scale import WINDOWS as SCALE_WINDOWS
from .mlp_scale import mlp_scale
from .optim import lr_factor, make_optimizer
from .start_from import load_start
from .trainer import RunError, StopFlag, prepare_out, resume_state

PROMPT, SAMPLES, SAMPLE_CHARS, TEMPERATURE = "To be, or not to be", 3, 300, 0.8
DRY_RUN_STEPS = 2


def windows(tokens: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    """(len(starts), length) slices tokens[s : s + length]."""
    return tokens[starts[:, None] + torch.arange(length, device=tokens.device)]


def train_starts(cfg: TrainConfig, n: int, step: int) -> torch.Tensor:
    """The ``batch_size`` window offsets of global step ``step`` (depends on seed and step only)."""
    g = step_generator(cfg.seed, 0, step, 0)
    return torch.randint(0, n - cfg.context - 1, (cfg.batch_size,), generator=g)


def eval_starts(n: int, length: int, count: int | None = None) -> torch.Tensor:
    """``count`` evenly spaced offsets, or (None) every non-overlapping window."""
    last = n - length
    if last < 0:
        raise RunError(f"a split of {n} tokens is shorter than one window of {length}")
    full = torch.arange(0, last + 1, length)
    if count is None or count >= len(full):
        return full
    return torch.linspace(0, last, count).round().long()


class TextTrainer:
    def __init__(self, cfg: TrainConfig, data: TextData, out: Path, dist: Dist,
                 device: torch.device, stop: StopFlag, log=print):
        from ..models import create_model

        self.cfg, self.data, self.out, self.dist, self.device = cfg, data, out, dist, device
        self.stop, self.log = stop, log if dist.main else (lambda *a, **k: None)
        if cfg.batch_size % dist.world:
            raise RunError(f"--batch-size {cfg.batch_size} is not divisible by the "
                           f"{dist.world} processes")
        torch.manual_seed(cfg.seed)
        kwargs = {k: getattr(cfg, k) for k in ("width", "depth", "heads")
                  if getattr(cfg, k) is not None}
        if cfg.gpt_init != "gpt2":
            kwargs["init"] = cfg.gpt_init
        self.net = create_model(cfg.model, (cfg.context,), data.vocab_size, cfg.activation,
                                **kwargs).to(device)
        self.params = sum(p.numel() for p in self.net.parameters())
        self.start = load_start(self.net, cfg, Path(cfg.start_from)) if cfg.start_from else None
        self.model = self.net
        if dist.active:
            ids = [device.index] if device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        self.optimizer = make_optimizer(self.net, cfg)
        self.steps = DRY_RUN_STEPS if cfg.dry_run else cfg.steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           lr_factor(cfg, self.steps))
        self.train, self.val, self.test = (t.to(device) for t in (data.train, data.val, data.test))
        self.curve_starts = eval_starts(len(data.val), cfg.context + 1, cfg.eval_windows)
        self.step, self.partial, self.metrics, self.train_seconds = 0, [0.0, 0.0], [], 0.0
        self.scale: list[dict] = []

    def state(self) -> dict:
        return {"config": dataclasses.asdict(self.cfg), "model": self.net.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "step": self.step,
                "partial": self.partial, "metrics": self.metrics,
                "train_seconds": self.train_seconds, "world": self.dist.world,
                "scale": self.scale, "start": self.start}

    def restore(self, state: dict) -> None:
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.partial = state["step"], list(state["partial"])
        self.metrics, self.train_seconds = list(state["metrics"]), state["train_seconds"]
        self.scale = list(state.get("scale", []))
        self.start = state.get("start")
        ckpt.set_rng_state(state["rng"])

    def log_scale(self) -> None:
        """Append the MLP scale record of this step (once per step; no RNG is drawn)."""
        if self.step in {r["step"] for r in self.scale}:
            return
        starts = self.curve_starts[:SCALE_WINDOWS].to(self.device)
        tokens = windows(self.val, starts, self.cfg.context + 1)[:, :-1]
        self.scale.append({"step": self.step, "blocks": mlp_scale(self.net, tokens)})

    def save(self) -> None:
        if self.dist.main:
            ckpt.save(self.out, self.state())
            atomic_write_text(self.out / "metrics.jsonl",
                              "".join(json.dumps(m) + "\n" for m in self.metrics))
        barrier(self.dist)

    def train_step(self) -> float:
        """One optimiser step on this rank's share of the global batch; the global mean loss."""
        d, cfg = self.dist, self.cfg
        starts = train_starts(cfg, len(self.train), self.step)[d.rank::d.world].to(self.device)
        xy = windows(self.train, starts, cfg.context + 1)
        logits = self.model(xy[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), xy[:, 1:].flatten())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return all_sum(d, [float(loss.detach())], self.device)[0] / d.world

    @torch.no_grad()
    def loss_on(self, tokens: torch.Tensor, starts: torch.Tensor) -> float:
        """Mean next-token cross-entropy (nats/char) over the windows at ``starts``."""
        self.net.eval()
        d, length = self.dist, self.cfg.context + 1
        mine = starts[d.rank::d.world].to(self.device)
        total = 0.0
        for lo in range(0, len(mine), self.cfg.eval_batch_size):
            xy = windows(tokens, mine[lo:lo + self.cfg.eval_batch_size], length)
            logits = self.net(xy[:, :-1]).float()
            total += float(F.cross_entropy(logits.flatten(0, 1), xy[:, 1:].flatten(),
                                           reduction="sum"))
        self.net.train()
        return all_sum(d, [total], self.device)[0] / (len(starts) * self.cfg.context)

    def point(self, seconds: float) -> None:
        """Append a curve point (train loss since the last point, fixed-window val loss)."""
        val = self.loss_on(self.val, self.curve_starts)
        row = {"step": self.step, "train_loss": self.partial[0] / max(self.partial[1], 1),
               "val_loss": val, "val_bpc": bits(val),
               "lr": self.optimizer.param_groups[0]["lr"], "seconds": round(seconds, 3)}
        self.metrics.append(row)
        self.partial = [0.0, 0.0]
        self.log(f"step {row['step']}/{self.steps}  train {row['train_loss']:.4f}  val "
                 f"{val:.4f} nats/char ({row['val_bpc']:.3f} bpc)  lr {row['lr']:.2e}  "
                 f"{self.train_seconds:.0f}s")

    def run(self) -> str:
        """Train the remaining steps; return "done", "interrupted" or "nonfinite"."""
        self.model.train()
        if self.step == 0:
            self.log_scale()
            if self.start is not None and "start_val_loss" not in self.start:
                self.start["start_val_loss"] = self.loss_on(self.val, self.curve_starts)
                self.log(f"started from {self.start['source']}: curve val "
                         f"{self.start['source_val_loss']:.4f} there, "
                         f"{self.start['start_val_loss']:.4f} here")
        t0 = time.perf_counter()
        while self.step < self.steps:
            loss = self.train_step()
            if not math.isfinite(loss):
                return "nonfinite"
            self.step += 1
            self.partial = [self.partial[0] + loss, self.partial[1] + 1]
            if self.step in SCALE_STEPS or self.step == self.steps:
                self.train_seconds += time.perf_counter() - t0
                self.log_scale()
                t0 = time.perf_counter()
            if self.step % self.cfg.eval_every == 0 or self.step == self.steps:
                self.train_seconds += time.perf_counter() - t0
                self.point(time.perf_counter() - t0)
                self.save()
                t0 = time.perf_counter()
            elif all_sum(self.dist, [float(self.stop.requested)], self.device)[0]:
                self.train_seconds += time.perf_counter() - t0
                self.save()
                return "interrupted"
        return "done"

    def samples(self) -> str:
        g = torch.Generator().manual_seed(self.cfg.seed)
        prompt = self.data.encode(PROMPT).to(self.device)
        self.net.eval()
        texts = [self.data.decode(self.net.generate(prompt, SAMPLE_CHARS, g, TEMPERATURE))
                 for _ in range(SAMPLES)]
        return "".join(f"--- sample {i + 1} (temperature {TEMPERATURE}) ---\n{t}\n\n"
                       for i, t in enumerate(texts))

    def results(self) -> dict:
        n = self.cfg.context + 1
        val = self.loss_on(self.val, eval_starts(len(self.val), n))
        test = self.loss_on(self.test, eval_starts(len(self.test), n))
        return {"dataset": self.cfg.dataset, "model": self.cfg.model,
                "activation": self.cfg.activation, "steps": self.steps, "seed": self.cfg.seed,
                "params": self.params, "val_loss": val, "val_bpc": bits(val),
                "test_loss": test, "test_bpc": bits(test),
                "unigram_entropy": self.data.unigram_entropy,
                "train_seconds": round(self.train_seconds, 3), "mlp_scale": self.scale,
                **({"start": self.start} if self.start is not None else {})}


def train_text(cfg: TrainConfig, data: TextData, out: Path, dist: Dist, device: torch.device,
               stop: StopFlag, resume: bool = False, argv: list[str] | None = None,
               log=print) -> tuple[str, dict | None]:
    """Run (or resume) one text run; return (status, results or None)."""
    mode = prepare_out(out, resume)
    if mode == "finished":
        log(f"{out}: already finished; results.json kept")
        return "done", read_results(out)
    trainer = TextTrainer(cfg, data, out, dist, device, stop, log)
    if mode == "resume":
        trainer.restore(resume_state(out, cfg))
        trainer.log(f"resuming {out} at step {trainer.step}")
    elif dist.main:
        save_config(out, cfg, argv, str(device))
    trainer.log(f"{cfg.dataset} {cfg.model} {cfg.activation}: {trainer.params} parameters, "
                f"{len(data.train)} train characters, {trainer.steps} steps of "
                f"{cfg.batch_size} x {cfg.context} on {device} x{dist.world}")
    status = trainer.run()
    if status != "done":
        return status, None
    results = trainer.results()
    if dist.main:
        atomic_write_text(out / "samples.txt", trainer.samples())
        write_json(out / "results.json", results)
        trainer.log(f"val {results['val_loss']:.4f} / test {results['test_loss']:.4f} nats/char "
                    f"({results['val_bpc']:.3f} / {results['test_bpc']:.3f} bpc) -> {out}")
    barrier(dist)
    return status, results
