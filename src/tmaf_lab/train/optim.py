"""The optimiser, learning-rate schedule and autocast dtype of a training run (from its
:class:`~tmaf_lab.train.config.TrainConfig`)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .config import TrainConfig


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD; learned-activation parameters (TMAF, PReLU, pwl) in their own group
    with ``act_lr`` / ``tmaf_weight_decay`` (models.optimizer_groups); with
    ``bn_bias_lr_scale`` s != 1 the BatchNorm shifts in a group of their own at s times the
    learning rate and 1/s times the weight decay (the same decay per step)."""
    from ..models import optimizer_groups

    groups = optimizer_groups(model, weight_decay=cfg.weight_decay,
                          act_weight_decay=cfg.tmaf_weight_decay, act_lr=cfg.act_lr,
                          decay_on=cfg.weight_decay_on)
    scale = cfg.bn_bias_lr_scale
    if scale != 1.0 and groups[0]["name"] == "weights":  # BatchNorm shifts: lr x s, decay / s
        shifts = {id(m.bias) for m in model.modules()
                  if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None}
        weights = groups[0]["params"]
        groups[0] = {**groups[0], "params": [p for p in weights if id(p) not in shifts]}
        groups.insert(1, {"params": [p for p in weights if id(p) in shifts],
                          "lr": cfg.lr * scale, "weight_decay": cfg.weight_decay / scale,
                          "name": "norm shifts"})
        groups = [g for g in groups if g["params"]]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(cfg: TrainConfig, total_steps: int):
    """Per-step LR multiplier: onecycle = linear warm-up then cosine to 0; cosine; constant."""
    warm = max(1, round(cfg.warmup * total_steps)) if cfg.schedule == "onecycle" else 0

    def factor(step: int) -> float:
        if cfg.schedule == "constant":
            return 1.0
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if cfg.amp == "off" or (cfg.amp == "auto" and device.type != "cuda"):
        return None
    if cfg.amp == "fp16" or (cfg.amp == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16
