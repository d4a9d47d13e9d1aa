"""The training loop: config -> data -> model (via the activation factory) -> epochs -> results.

Writes to the run folder (rank 0 only): ``config.json`` at the start, ``checkpoint.pt``
after every epoch (atomic), ``metrics.jsonl`` (one line per epoch: epoch, train_loss,
train_acc, test_loss, test_acc, lr, seconds) and ``results.json`` at the end (dataset,
model, activation, epochs, seed, params, test_acc, test_loss, train_seconds; plus calibrate
when set). With ``val_split`` > 0 the evaluation set is held-out training images and the
``test_`` keys are named ``val_`` instead. With ``calibrate`` = N > 0, ``calibration.json``
holds what ``tmaf.calibrate`` returned for the N training batches it saw before the first step.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import ImageData
from ..files import atomic_write_text, write_json
from ..models import WhiteningStem, init_whitening
from ..runmeta import save_config
from ..runs import is_finished, read_results
from . import checkpoint as ckpt
from .batches import augment, batch_slices, epoch_indices, normalise, step_generator
from .config import TrainConfig
from .distributed import Dist, all_sum, barrier
from .optim import amp_dtype, lr_factor, make_optimizer
from .tta import TTA_VIEWS, tta_views

DRY_RUN_STEPS = 2


class RunError(RuntimeError):
    """A run cannot start or continue; the message says why and what to do."""


@dataclass
class StopFlag:
    """Set by the SIGINT/SIGTERM handler; checked after every optimiser step."""

    requested: bool = False


WHITEN_IMAGES = 5000  # training images whose 2x2 patches set a whitening stem


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * net for every floating parameter and buffer (BatchNorm
    running statistics included); integer buffers (BatchNorm's step count) are copied."""
    for e, p in zip(ema.state_dict().values(), net.state_dict().values(), strict=True):
        if e.is_floating_point():
            e.lerp_(p, 1.0 - decay)
        else:
            e.copy_(p)


class Trainer:
    def __init__(self, cfg: TrainConfig, data: ImageData, out: Path, dist: Dist,
                 device: torch.device, stop: StopFlag, log=print,
                 resume_model: dict | None = None):
        from ..models import create_model

        self.cfg, self.data, self.out, self.dist, self.device = cfg, data, out, dist, device
        self.stop, self.log = stop, log if dist.main else (lambda *a, **k: None)
        torch.manual_seed(cfg.seed)
        kwargs = {"width": cfg.width} if cfg.width is not None else {}
        self.net = create_model(cfg.model, data.image_shape, data.num_classes,
                                cfg.activation, **kwargs).to(device)
        self.params = sum(p.numel() for p in self.net.parameters())
        self.layout = (torch.channels_last if cfg.memory_format == "channels-last"
                       else torch.contiguous_format)
        self.net = self.net.to(memory_format=self.layout)
        self.mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)
        self.stems = [m for m in self.net.modules() if isinstance(m, WhiteningStem)]
        if self.stems:  # from the first WHITEN_IMAGES training images (a checkpoint overrides)
            init_whitening(self.net, normalise(data.train_x[:WHITEN_IMAGES].to(device),
                                               self.mean, self.std))
        if cfg.batch_size % dist.world:
            raise RunError(f"--batch-size {cfg.batch_size} is not divisible by the "
                           f"{dist.world} processes")
        self.batch = cfg.batch_size // dist.world
        self.train_x, self.train_y = data.train_x.to(device), data.train_y.to(device)
        self.test_x, self.test_y = data.test_x.to(device), data.test_y.to(device)
        self.calibration = None
        if cfg.calibrate and resume_model is not None:
            self.shape_grids_like(resume_model)  # the checkpoint holds the calibrated grids
        elif cfg.calibrate:
            self.calibration = self.calibrate_grids()
        self.model = self.net
        if dist.active:
            ids = [device.index] if device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        self.optimizer = make_optimizer(self.net, cfg)
        self.ema = None
        if cfg.ema:  # a frozen copy, averaged after every step and evaluated instead of net
            import copy

            self.ema = copy.deepcopy(self.net).requires_grad_(False)
        n_rank = math.ceil(len(data.train_y) / dist.world)
        self.steps = math.ceil(n_rank / self.batch)
        if cfg.dry_run:
            self.steps = min(self.steps, DRY_RUN_STEPS)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_factor(cfg, cfg.epochs * self.steps))
        self.amp = amp_dtype(cfg, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp == torch.float16)
        self.epoch, self.step, self.partial = 0, 0, [0.0, 0.0, 0.0, 0.0]
        self.metrics: list[dict] = []
        self.eval_name = "val" if cfg.val_split else "test"
        self.train_seconds = 0.0

    def _tmaf_layers(self) -> list:
        import tmaf

        layers = list(tmaf.tmaf_modules(self.net))
        if not layers:
            raise RunError(f"--calibrate needs a TMAF activation; {self.cfg.activation!r} has no "
                           "TMAF layer")
        return layers

    @torch.no_grad()
    def calibrate_grids(self) -> dict:
        """``tmaf.calibrate`` on the first ``cfg.calibrate`` global training batches of epoch 0
        (the single-process order and batch size, un-augmented; never test data), before DDP
        wraps the model and before the optimiser exists.

        Every rank calibrates on the same images, so the grids do not depend on the number of
        processes (and ``tmaf.calibrate`` hands rank 0's result to all ranks anyway). The model
        runs in training mode, as it will train (BatchNorm normalises with batch statistics);
        the BatchNorm running statistics and the RNG state are restored afterwards, so the run
        differs from an uncalibrated one only in its grids and levels' placement on them."""
        import tmaf

        cfg = self.cfg
        layers = self._tmaf_layers()
        idx = epoch_indices(len(self.train_y), 0, cfg.seed, 0, 1)
        idx = idx[: cfg.calibrate * cfg.batch_size].to(self.device)
        batches = (normalise(self.train_x[idx[sl]], self.mean, self.std)
                   for _, sl in batch_slices(len(idx), cfg.batch_size))
        tmaf_buffers = {id(b) for _, m in layers for b in m.buffers()}
        saved = [(b, b.clone()) for b in self.net.buffers() if id(b) not in tmaf_buffers]
        self.net.train()
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            stats = tmaf.calibrate(self.net, batches, seed=cfg.seed)
        for b, copy in saved:
            b.copy_(copy)
        return stats

    def shape_grids_like(self, state: dict) -> None:
        """Resume: give every TMAF layer the grid shape its checkpoint holds (the values come
        with ``load_state_dict``), instead of calibrating again."""
        self._tmaf_layers()
        try:
            ckpt.match_grids(self.net, state)
        except ValueError as e:
            raise RunError(str(e)) from e

    # -- checkpoints ---------------------------------------------------------------------
    def state(self) -> dict:
        return {"config": dataclasses.asdict(self.cfg), "model": self.net.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "epoch": self.epoch, "sampler_epoch": self.epoch, "step": self.step,
                "partial": self.partial, "metrics": self.metrics,
                "train_seconds": self.train_seconds, "world": self.dist.world,
                **({"ema": self.ema.state_dict()} if self.ema is not None else {})}

    def restore(self, state: dict) -> None:
        self.net.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = state["epoch"], state["step"]
        if self.step and state["world"] != self.dist.world:
            raise RunError(f"the checkpoint stopped mid-epoch with {state['world']} processes; "
                           f"resume it with the same number (now {self.dist.world})")
        # Partial sums of an interrupted epoch are global: rank 0 carries them.
        self.partial = list(state["partial"]) if self.dist.main else [0.0] * 4
        self.metrics, self.train_seconds = list(state["metrics"]), state["train_seconds"]
        ckpt.set_rng_state(state["rng"])

    def save(self) -> None:
        if self.dist.main:
            ckpt.save(self.out, self.state())
        barrier(self.dist)

    # -- one epoch -----------------------------------------------------------------------
    def train_epoch(self) -> tuple[str, float]:
        cfg, d = self.cfg, self.dist
        self.model.train()
        for stem in self.stems:  # the whitening bias trains in the first epochs only
            stem.bias.requires_grad_(self.epoch < cfg.whiten_bias_epochs)
        idx = epoch_indices(len(self.train_y), self.epoch, cfg.seed, d.rank, d.world)
        idx = idx.to(self.device)[: self.steps * self.batch]
        bar = self._bar(len(idx), self.step * self.batch)
        t0 = time.perf_counter()
        for step, sl in batch_slices(len(idx), self.batch, start=self.step):
            x = normalise(self.train_x[idx[sl]], self.mean, self.std)
            y = self.train_y[idx[sl]]
            if cfg.augment_on():
                pad, flip = cfg.augment_mode()
                x = augment(x, step_generator(cfg.seed, self.epoch, step, d.rank), pad, flip)
            x = x.contiguous(memory_format=self.layout)
            with torch.autocast(self.device.type, dtype=self.amp or torch.float32,
                                enabled=self.amp is not None):
                logits = self.model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.ema is not None:
                ema_update(self.ema, self.net, cfg.ema)
            lr = self.optimizer.param_groups[0]["lr"]
            self.scheduler.step()
            loss_v = float(loss.detach())
            correct = float((logits.detach().argmax(1) == y).sum())
            flags = all_sum(d, [float(self.stop.requested), float(not math.isfinite(loss_v))],
                            self.device)
            if flags[1]:
                return "nonfinite", lr
            self.partial = [self.partial[0] + loss_v * len(y), self.partial[1] + correct,
                            self.partial[2] + len(y), self.partial[3]]
            self.step = step + 1
            if bar is not None:
                bar.update(len(y) * d.world)
                bar.set_postfix(loss=f"{loss_v:.4f}", lr=f"{lr:.2e}", refresh=False)
            if flags[0] and self.step < self.steps:
                self.partial[3] += time.perf_counter() - t0
                self.partial[:3] = all_sum(d, self.partial[:3], self.device)
                return "interrupted", lr
        if bar is not None:
            bar.close()
        self.partial[3] += time.perf_counter() - t0
        return "done", lr

    def _bar(self, total: int, initial: int):
        if not self.dist.main:
            return None
        from tqdm import tqdm

        return tqdm(total=total * self.dist.world, initial=initial * self.dist.world,
                    unit="img", unit_scale=True, leave=False, disable=None, mininterval=0.5,
                    desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}")

    @torch.no_grad()
    def evaluate(self, net: nn.Module | None = None,
                 levels: tuple[str, ...] = ("off",)) -> dict[str, tuple[float, float]]:
        """(loss, accuracy) on the evaluation set for each test-time augmentation level in
        ``levels`` (the views are computed once, shared by the levels); ``net`` defaults to
        the evaluated model (the weight average with ``ema``)."""
        net = net or (self.net if self.ema is None else self.ema)
        net.eval()
        d, n = self.dist, len(self.test_y)
        idx = torch.arange(d.rank, n, d.world, device=self.device)
        sums = {t: [0.0, 0.0] for t in levels}
        top = max(levels, key=TTA_VIEWS.get)
        for _, sl in batch_slices(len(idx), self.cfg.eval_batch_size):
            x = normalise(self.test_x[idx[sl]], self.mean, self.std)
            y = self.test_y[idx[sl]]
            with torch.autocast(self.device.type, dtype=self.amp or torch.float32,
                                enabled=self.amp is not None):
                outs = [net(v.contiguous(memory_format=self.layout)).float()
                        for v in tta_views(x, top)]
            for t in levels:
                logits = torch.stack(outs[:TTA_VIEWS[t]]).mean(0)
                sums[t][0] += float(F.cross_entropy(logits, y, reduction="sum"))
                sums[t][1] += float((logits.argmax(1) == y).sum())
        flat = all_sum(d, [v for t in levels for v in sums[t]], self.device)
        return {t: (flat[2 * i] / n, flat[2 * i + 1] / n) for i, t in enumerate(levels)}

    def final_evaluation(self) -> dict[str, dict[str, dict[str, float]]]:
        """The trained model (and its weight average, with ``ema``) at every test-time
        augmentation level up to the configured one: {"net"|"ema": {level: {loss, acc}}}."""
        levels = tuple(t for t in TTA_VIEWS if TTA_VIEWS[t] <= TTA_VIEWS[self.cfg.tta])
        nets = {"net": self.net, **({"ema": self.ema} if self.ema is not None else {})}
        return {name: {t: {"loss": loss, "acc": acc}
                       for t, (loss, acc) in self.evaluate(net, levels).items()}
                for name, net in nets.items()}

    # -- the run -------------------------------------------------------------------------
    def run(self) -> str:
        """Train the remaining epochs; return "done", "interrupted" or "nonfinite"."""
        cfg = self.cfg
        while self.epoch < cfg.epochs:
            status, lr = self.train_epoch()
            if status == "nonfinite":
                return status
            if status == "interrupted":
                self.save()
                return status
            p = all_sum(self.dist, self.partial[:3], self.device)
            t_train = self.partial[3]
            test_loss, test_acc = self.evaluate()["off"]
            ev = self.eval_name
            row = {"epoch": self.epoch + 1, "train_loss": p[0] / p[2], "train_acc": p[1] / p[2],
                   f"{ev}_loss": test_loss, f"{ev}_acc": test_acc, "lr": lr,
                   "seconds": round(t_train, 3)}
            self.metrics.append(row)
            self.train_seconds += t_train
            self.epoch, self.step, self.partial = self.epoch + 1, 0, [0.0] * 4
            self.save()
            if self.dist.main:
                atomic_write_text(self.out / "metrics.jsonl",
                                  "".join(json.dumps(m) + "\n" for m in self.metrics))
            self.log(f"epoch {row['epoch']}/{cfg.epochs}  train loss {row['train_loss']:.4f} "
                     f"acc {row['train_acc']:.4f}  {ev} loss {test_loss:.4f} acc {test_acc:.4f}  "
                     f"lr {lr:.2e}  {t_train:.1f}s ({p[2] / max(t_train, 1e-9):.0f} img/s)")
        return "done"

    def results(self) -> dict:
        """The run's results.json. Its accuracy and loss are the last epoch's evaluation; with
        test-time augmentation or a weight average they come from :meth:`final_evaluation`
        (the average's, at the configured level), which is stored whole under ``final``."""
        cfg, ev = self.cfg, self.eval_name
        last = self.metrics[-1]
        acc, loss, extra = last[f"{ev}_acc"], last[f"{ev}_loss"], {}
        if cfg.tta != "off" or self.ema is not None:
            final = self.final_evaluation()
            chosen = final["ema" if self.ema is not None else "net"][cfg.tta]
            acc, loss, extra = chosen["acc"], chosen["loss"], {"final": final}
        return {"dataset": cfg.dataset, "model": cfg.model, "activation": cfg.activation,
                "epochs": cfg.epochs, "seed": cfg.seed, "params": self.params,
                f"{ev}_acc": acc, f"{ev}_loss": loss,
                "train_seconds": round(self.train_seconds, 3),
                **({"calibrate": cfg.calibrate} if cfg.calibrate else {}), **extra}


def prepare_out(out: Path, resume: bool) -> str:
    """Decide what an existing run folder means: "new", "resume" or "finished"."""
    if is_finished(out):
        if resume:
            return "finished"
        raise RunError(f"{out} already holds a finished run (results.json); choose another "
                       "--out (or add --resume to just report it)")
    if (out / ckpt.NAME).is_file():
        if not resume:
            raise RunError(f"{out} holds the checkpoint of an unfinished run; add --resume to "
                           "continue it, or choose another --out")
        return "resume"
    return "new"


def resume_state(out: Path, cfg: TrainConfig) -> dict:
    """The checkpoint of the unfinished run in ``out``, checked to have been made with ``cfg``
    (up to the options that may change on resume); RunError otherwise."""
    from .config import config_diff

    try:
        state = ckpt.load(out)
    except ValueError as e:
        raise RunError(f"{e}; the run cannot be resumed from it") from e
    diff = config_diff(state["config"], cfg)
    if diff:
        raise RunError("--resume with a different config: " + "; ".join(diff))
    return state


def train(cfg: TrainConfig, data: ImageData, out: Path, dist: Dist, device: torch.device,
          stop: StopFlag, resume: bool = False, argv: list[str] | None = None,
          log=print) -> tuple[str, dict | None]:
    """Run (or resume) one training run; return (status, results or None)."""
    mode = prepare_out(out, resume)
    if mode == "finished":
        log(f"{out}: already finished; results.json kept")
        return "done", read_results(out)
    state = resume_state(out, cfg) if mode == "resume" else None
    trainer = Trainer(cfg, data, out, dist, device, stop, log,
                      resume_model=state["model"] if state is not None else None)
    if state is not None:
        trainer.restore(state)
        trainer.log(f"resuming {out} at epoch {trainer.epoch + 1}, step {trainer.step}")
    elif dist.main:
        save_config(out, cfg, argv, str(device))
        if trainer.calibration is not None:
            write_json(out / "calibration.json", trainer.calibration)
    trainer.log(f"{cfg.dataset} {cfg.model} {cfg.activation}: {trainer.params} parameters, "
                f"{len(data.train_y)} train / {len(data.test_y)} test images, "
                f"{trainer.steps} steps/epoch on {device} x{dist.world}")
    status = trainer.run()
    if status != "done":
        return status, None
    results = trainer.results()
    if dist.main:
        write_json(out / "results.json", results)
    barrier(dist)
    return status, results
