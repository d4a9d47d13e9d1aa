"""The one frozen config of a training run (saved as config.json at the start)."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = "mnist"            # mnist | fashion-mnist | cifar10 | shakespeare | synthetic
    model: str = "mlp"                # mlp | cnn | fastnet | resnet18 | gpt (shakespeare)
    activation: str = "relu"          # any tmaf.get_act_layer name
    epochs: int = 1
    batch_size: int = 128             # global batch (split over DDP ranks)
    lr: float = 2e-3
    optimizer: str = "adamw"          # adamw (decoupled weight decay) | sgd (Nesterov momentum)
    momentum: float = 0.9
    weight_decay: float = 0.0
    weight_decay_on: str = "all"      # all (every non-activation weight) | matrices (>= 2-D only)
    act_lr: float | None = None       # learning rate of the learned-activation parameters
    #                                   (None: same as --lr); recorded as tmaf_lr before
    tmaf_weight_decay: float = 0.0
    schedule: str = "onecycle"        # onecycle (warm-up + cosine) | cosine | constant, per step
    warmup: float = 0.1               # fraction of all steps spent warming up (onecycle)
    label_smoothing: float = 0.0
    augment: str = "auto"             # auto (on for cifar10) | on: pad-4 crop + flip | off
                                      # | shift: pad-2 crop, no flip (digits)
                                      # | flip-shift: pad-2 crop + flip
    width: int | None = None          # model width (None: the model's default)
    seed: int = 0
    subset: int | None = None         # first N training images (None: all)
    test_subset: int | None = None    # first N test images (None: all)
    eval_batch_size: int = 1000
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    threads: int = 0                  # torch CPU threads (0: torch's default)
    amp: str = "auto"                 # auto (bf16/fp16 on GPU, off on CPU) | off | bf16 | fp16
    backend: str | None = None        # TMAF backend (tmaf.set_backend); None: TMAF_BACKEND/auto
    deterministic: bool = True        # torch.use_deterministic_algorithms (exact CPU resume)
    dry_run: bool = False             # 2 batches, tiny data: a seconds-long smoke test
    calibrate: int = 0                # tmaf.calibrate on N training batches before step 1 (0: off)
    val_split: int = 0                # evaluate on N held-out training images, not the test set
    # CIFAR speed techniques (the cpu-cifar recipe; airbench-white model)
    whiten_bias_epochs: int = 0       # epochs in which the whitening stem's bias trains
    tta: str = "off"                  # test-time augmentation: off | flip | flip-translate
    ema: float = 0.0                  # per-step decay of a weight average used to evaluate (0: off)
    bn_bias_lr_scale: float = 1.0     # BatchNorm shifts: lr times this, weight decay divided by it
    memory_format: str = "contiguous"  # contiguous | channels-last (images and conv weights)
    # Text (shakespeare + gpt): the budget is optimiser steps of batch_size windows.
    steps: int | None = None          # training steps (text runs; epochs are not used)
    context: int = 64                 # tokens per window (the GPT's context)
    depth: int | None = None          # transformer blocks (None: the model's default, 4)
    heads: int | None = None          # attention heads (None: the model's default, 4)
    eval_every: int = 250             # steps between validation points of the curve
    eval_windows: int = 128           # fixed validation windows evaluated at each point
    gpt_init: str = "gpt2"            # gpt2 (N(0, 0.02)) | unit (MLP input matrix N(0, 1/d))
    start_from: str | None = None     # a finished text run whose final weights start this one

    recipe: str | None = None         # the named recipe whose values filled the defaults

    def augment_on(self) -> bool:
        return self.augment_mode() is not None

    def augment_mode(self) -> tuple[int, bool] | None:
        """(pad, flip) of the random crop, or None for no augmentation."""
        if self.augment in ("shift", "flip-shift"):
            return 2, self.augment == "flip-shift"
        on = self.augment == "on" or (self.augment == "auto" and self.dataset == "cifar10")
        return (4, True) if on else None


CHOICES = {"optimizer": ("adamw", "sgd", "adam"), "schedule": ("onecycle", "cosine", "constant"),
           "augment": ("auto", "on", "off", "shift", "flip-shift"), "amp": ("auto", "off", "bf16", "fp16"),
           "tta": ("off", "flip", "flip-translate"),
           "memory_format": ("contiguous", "channels-last"),
           "weight_decay_on": ("all", "matrices"), "gpt_init": ("gpt2", "unit")}

# Fields that may differ between a checkpoint and the command that resumes it.
RESUME_FREE = ("device", "threads", "backend", "eval_batch_size")


# Fields added after runs were checkpointed, with the value those runs implicitly had.
ADDED_LATER = {"recipe": None, "calibrate": 0, "val_split": 0, "steps": None, "context": 64,
               "depth": None, "heads": None, "eval_every": 250, "eval_windows": 128,
               "whiten_bias_epochs": 0, "tta": "off", "ema": 0.0,
               "bn_bias_lr_scale": 1.0, "memory_format": "contiguous",
               "weight_decay_on": "all", "gpt_init": "gpt2", "start_from": None}


# Fields renamed since runs were recorded: the recorded name -> today's.
RENAMED = {"tmaf_lr": "act_lr"}


def upgraded(saved: dict) -> dict:
    """A recorded config under today's field names, with the fields added since it was written."""
    return {**ADDED_LATER, **{RENAMED.get(k, k): v for k, v in saved.items()}}


def config_diff(saved: dict, current: TrainConfig) -> list[str]:
    """The fields (other than RESUME_FREE) where a saved config differs from ``current``."""
    out = []
    saved = upgraded(saved)
    for f in fields(current):
        if f.name in RESUME_FREE or f.name not in saved:
            continue
        if saved[f.name] != getattr(current, f.name):
            out.append(f"{f.name}: checkpoint {saved[f.name]!r}, now {getattr(current, f.name)!r}")
    return out


# Values written by older versions, and what they mean now ("adam" always built AdamW).
OLD_VALUES = {"optimizer": {"adam": "adamw"}}


def current_values(config: dict) -> dict:
    """A config dict with the older spellings of :data:`OLD_VALUES` replaced by today's."""
    return {k: OLD_VALUES.get(k, {}).get(v, v) if isinstance(v, str) else v
            for k, v in config.items()}
