"""``tmaf train``: train an image classifier or a character-level GPT with checkpoints, exact
resume, seeds and DDP.

    tmaf train DATASET --model M --activation A --epochs E --batch-size B --lr LR
               --seeds 0,1,2 (or --seed S)   --out DIR [--resume] [--dry-run] [...]
    tmaf train shakespeare --model gpt --activation A --steps N [--recipe cpu-gpt] --out DIR

shakespeare runs without a recipe default to batch 32, lr 1e-3, weight decay 0.1, 5 % warm-up
(TEXT_DEFAULTS in tmaf_lab/train/recipes.py).

Single process by default; under ``torchrun --nproc_per_node N`` the same command uses
DistributedDataParallel (gloo on CPU, nccl on GPU). One seed writes its run into DIR;
several seeds run one folder per seed (DIR/seed<S>) and write DIR/summary.json and
DIR/summary.md (mean +- std over seeds). ``--seed N`` is the same as ``--seeds N``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from pathlib import Path

import torch

from ..cli import (
    THREADS_HELP,
    OneLineErrorParser,
    UsageError,
    add_seed_options,
    command_main,
    reason,
)
from ..data import (
    DATASET_NAMES,
    TEXT_NAME,
    DataError,
    DataMissing,
    ImageData,
    TextData,
    load_dataset,
    synthetic,
)
from ..models import MODEL_NAMES
from ..runmeta import OutputFolderError, check_writable, output_folder
from .config import CHOICES, TrainConfig
from .distributed import setup, teardown
from .recipes import RECIPES, TEXT_DEFAULTS
from .summary import write_summary
from .text import train_text
from .trainer import RunError, StopFlag, train

EXIT_INTERRUPTED, EXIT_NONFINITE = 130, 3
DRY_RUN_TEST = 256
DRY_SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


#: The numeric options, ``--NAME``: (name, type, help); their defaults are TrainConfig's.
_NUMERIC_OPTIONS = (
    ("epochs", int, "training epochs"), ("batch-size", int, "global batch size"),
    ("lr", float, "peak learning rate"), ("momentum", float, "SGD momentum"),
    ("weight-decay", float, "weight decay of the non-TMAF parameters"),
    ("act-lr", float, "learning rate of the learned-activation parameters: TMAF "
                      "levels, PReLU and pwl slopes (None: --lr; also --tmaf-lr)"),
    ("tmaf-weight-decay", float, "weight decay of the learned-activation parameters"),
    ("warmup", float, "fraction of steps of linear warm-up (onecycle)"),
    ("label-smoothing", float, "cross-entropy label smoothing"),
    ("width", int, "model width (None: the model's default)"),
    ("subset", int, "train on the first N images (None: all)"),
    ("test-subset", int, "test on the first N images (None: all)"),
    ("eval-batch-size", int, "batch size for evaluation"),
    ("steps", int, "training steps (shakespeare; the budget instead of epochs)"),
    ("context", int, "tokens per training window (shakespeare)"),
    ("depth", int, "transformer blocks (gpt; None: 4)"),
    ("heads", int, "attention heads (gpt; None: 4)"),
    ("eval-every", int, "steps between validation-curve points (shakespeare)"),
    ("eval-windows", int, "fixed validation windows per curve point (shakespeare)"),
    ("whiten-bias-epochs", int, "epochs in which the whitening stem's bias trains "
                                "(airbench-white)"),
    ("ema", float, "decay per step of an exponential moving average of the weights "
                   "(and BatchNorm statistics) that is evaluated instead (0: off)"),
    ("bn-bias-lr-scale", float, "learning rate of the BatchNorm shifts: --lr times this, "
                                "their weight decay divided by it"))


#: Help of the options with a fixed set of values (config.CHOICES), by key.
_CHOICE_HELP = {
    "optimizer": "adamw (decoupled weight decay) or sgd (Nesterov); adam: older name of adamw",
    "schedule": "per-step LR: onecycle (warm-up + cosine), cosine, constant",
    "augment": "on = pad-4 random crop + flip, shift = pad-2 crop without flip, "
               "flip-shift = pad-2 crop + flip; auto = on for cifar10",
    "amp": "mixed precision; auto = bf16 (else fp16) on GPU, off on CPU",
    "tta": "test-time augmentation of the final evaluation: the mean logits over "
           "the image and its mirror (flip), and over both shifted one pixel up-left "
           "and down-right (flip-translate); the per-epoch evaluations use none",
    "memory_format": "layout of images and convolution weights: channels-last is "
                     "1.6-1.7x faster for the CIFAR convnets on the CPU (oneDNN)",
    "weight_decay_on": "which weights --weight-decay applies to: all (every weight "
                       "but the learned activations') or matrices (those of >= 2 "
                       "dimensions: no decay on norm gains and biases)",
    "gpt_init": "gpt initialisation: gpt2 (every weight N(0, 0.02)) or unit (the MLP's "
                "input matrix N(0, 1/width): pre-activations at about unit scale)",
}


def _parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = OneLineErrorParser(prog="tmaf train", description=__doc__.split("\n\n")[0],
                           allow_abbrev=False)
    _add_what_options(p, d)
    _add_numeric_options(p, d)
    _add_run_options(p, d)
    _add_choice_options(p, d)
    add_seed_options(p, (d.seed,))
    _add_process_options(p, d)
    return p


def _add_what_options(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    """What is trained: the data set, a recipe, the model and its activation."""
    p.add_argument("dataset", choices=DATASET_NAMES, metavar="DATASET",
                   help=f"one of {', '.join(DATASET_NAMES)}")
    p.add_argument("--recipe", default=None, choices=tuple(RECIPES),
                   help="named recipe whose values become the defaults (options given here "
                        "still win): " + ", ".join(RECIPES) + " (tmaf_lab/train/recipes.py)")
    p.add_argument("--model", default=d.model, choices=MODEL_NAMES)
    p.add_argument("--activation", default=d.activation,
                   help="relu, prelu, gelu, silu, leaky_relu, tanh, pwl, diagonal, tridiagonal, "
                        "banded<b>, full (default %(default)s)")


def _add_numeric_options(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    """The numeric options of :data:`_NUMERIC_OPTIONS` (``--act-lr`` also as ``--tmaf-lr``)."""
    for name, typ, text in _NUMERIC_OPTIONS:
        key = name.replace("-", "_")
        alias = ["--tmaf-lr"] if name == "act-lr" else []  # the spelling of older configs
        p.add_argument(f"--{name}", *alias, dest=key, type=typ, default=getattr(d, key),
                       help=f"{text} (default %(default)s)")


def _add_run_options(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    """Calibration, validation split, the run to start from and the thread count."""
    p.add_argument("--calibrate", type=int, default=d.calibrate, metavar="N",
                   help="before the first step, move every TMAF grid to per-channel quantiles "
                        "of its inputs on N training batches (tmaf.calibrate; default 0: off)")
    p.add_argument("--val-split", type=int, default=d.val_split, metavar="N",
                   help="hold out N training images (one fixed split for every run) and "
                        "evaluate on them instead of the test set: metrics and results.json "
                        "then hold val_loss / val_acc (for tuning; default 0: off)")
    p.add_argument("--start-from", default=d.start_from, metavar="RUN_DIR",
                   help="shakespeare: start from the final weights of the finished run RUN_DIR "
                        "(its checkpoint.pt); MLP activations other than its own keep their "
                        "start, e.g. FORM@relu2 (tmaf_lab/train/start_from.py)")
    p.add_argument("--threads", type=int, default=d.threads, help=THREADS_HELP)


def _add_choice_options(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    """The options of config.CHOICES, with their help from :data:`_CHOICE_HELP`."""
    for key, choices in CHOICES.items():
        p.add_argument(f"--{key.replace('_', '-')}", dest=key, choices=choices,
                       default=getattr(d, key),
                       help=f"{_CHOICE_HELP[key]} (default %(default)s)")


def _add_process_options(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    """Device, backend, determinism, the run folder, resume and the dry run."""
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--backend", default=None,
                   help="TMAF backend for tmaf.set_backend (auto, native, compiled, eager, reference)")
    p.add_argument("--nondeterministic", action="store_true",
                   help="skip torch.use_deterministic_algorithms (faster on GPU)")
    p.add_argument("--out", type=Path, default=None,
                   help="run folder (default runs/DATASET-MODEL-ACTIVATION)")
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt")
    p.add_argument("--dry-run", action="store_true",
                   help="2 steps of 1 epoch on tiny data (synthetic if DATASET is not installed)")


def _config(args: argparse.Namespace, seed: int) -> TrainConfig:
    keys = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in keys}
    values.update(seed=seed, deterministic=not args.nondeterministic)
    if args.dry_run:
        values.update(epochs=1)
    cfg = TrainConfig(**values)
    _check_text(cfg)
    for name in ("epochs", "batch_size", "eval_batch_size", "subset", "test_subset", "width",
                 "steps", "context", "depth", "heads", "eval_every", "eval_windows"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise RunError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.val_split < 0:
        raise RunError(f"--val-split must be >= 0 (training images), got {cfg.val_split}")
    if cfg.calibrate < 0:
        raise RunError(f"--calibrate must be >= 0 (training batches), got {cfg.calibrate}")
    if not 0 <= cfg.ema < 1:
        raise RunError(f"--ema must be in [0, 1) (a decay per step; 0: off), got {cfg.ema}")
    if not cfg.bn_bias_lr_scale > 0:
        raise RunError(f"--bn-bias-lr-scale must be > 0, got {cfg.bn_bias_lr_scale}")
    if cfg.whiten_bias_epochs < 0:
        raise RunError(f"--whiten-bias-epochs must be >= 0, got {cfg.whiten_bias_epochs}")
    if cfg.memory_format == "channels-last" and cfg.dataset == TEXT_NAME:
        raise RunError(f"--memory-format channels-last needs image data, got {cfg.dataset}")
    if cfg.start_from is not None and cfg.dataset != TEXT_NAME:
        raise RunError(f"--start-from continues a text run; got dataset {cfg.dataset}")
    if cfg.gpt_init != "gpt2" and cfg.model != "gpt":
        raise RunError(f"--gpt-init {cfg.gpt_init} needs --model gpt, got --model {cfg.model}")
    if cfg.weight_decay_on != "all" and cfg.bn_bias_lr_scale != 1.0:
        raise RunError("--bn-bias-lr-scale needs --weight-decay-on all (the norm shifts' own "
                       f"group), got --weight-decay-on {cfg.weight_decay_on}")
    if cfg.whiten_bias_epochs and cfg.model != "airbench-white":
        raise RunError(f"--whiten-bias-epochs needs --model airbench-white (its whitening "
                       f"stem), got --model {cfg.model}")
    if not cfg.lr > 0:
        raise RunError(f"--lr must be > 0, got {cfg.lr}")
    if not 0 <= cfg.warmup < 1:
        raise RunError(f"--warmup must be in [0, 1), got {cfg.warmup}")
    return cfg


def _check_text(cfg: TrainConfig) -> None:
    """shakespeare trains the gpt for --steps; the gpt needs shakespeare."""
    text = cfg.dataset == TEXT_NAME
    if text != (cfg.model == "gpt"):
        raise RunError(f"--model gpt trains on {TEXT_NAME} and {TEXT_NAME} on --model gpt only; "
                       f"got {cfg.dataset} with --model {cfg.model}")
    if text and cfg.steps is None:
        raise RunError(f"{TEXT_NAME}: give the budget with --steps N (or a --recipe)")


def _data(cfg: TrainConfig, log) -> ImageData | TextData:
    if cfg.dataset == TEXT_NAME:
        return load_dataset(cfg.dataset)
    if cfg.dry_run:
        try:
            data = load_dataset(cfg.dataset)
        except DataMissing:
            shape = DRY_SHAPES.get(cfg.dataset, (1, 28, 28))
            log(f"[dry-run] {cfg.dataset} is not installed: using synthetic {shape} images")
            data = synthetic(n_train=4 * cfg.batch_size, n_test=DRY_RUN_TEST, shape=shape)
        data = data.subset(4 * cfg.batch_size, DRY_RUN_TEST)
    else:
        data = load_dataset(cfg.dataset).subset(cfg.subset, cfg.test_subset)
    if not cfg.val_split:
        return data
    try:
        return data.validation_split(cfg.val_split)
    except ValueError as e:
        raise RunError(f"--val-split: {e}") from e


def _device(name: str, dist_local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RunError(f"--device {name}: CUDA is not available here (use --device cpu)")
    if name == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        name = f"cuda:{dist_local_rank}"
    return torch.device(name)


def _check_activation(name: str, model: str) -> None:
    from ..models import act_factory, token_act_factory

    try:
        token_act_factory(name)(4) if model == "gpt" else act_factory(name)(4)
    except (ValueError, TypeError) as e:
        raise UsageError(f"--activation {name!r}: {reason(e)}") from e


def _install_signals(stop: StopFlag) -> dict:
    """Ctrl-C / SIGTERM ask the loop to save and stop; returns the handlers to restore."""
    def handler(signum, frame):
        if stop.requested:  # a second Ctrl-C: stop at once (the last checkpoint is kept)
            raise KeyboardInterrupt
        stop.requested = True
        print(f"\n{signal.Signals(signum).name}: finishing this step, saving a checkpoint...",
              file=sys.stderr, flush=True)

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Validate, set up (threads, determinism, DDP, signals), train each seed, restore."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    handlers: dict = {}
    try:
        return _run(args, argv, handlers)
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _run(args: argparse.Namespace, argv: list[str], handlers: dict) -> int:
    cfgs = [_config(args, s) for s in args.seeds]
    _check_activation(args.activation, args.model)
    if args.backend is not None:
        import tmaf

        tmaf.set_backend(args.backend)
    dist_env_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(args.device, dist_env_rank)
    if cfgs[0].threads < 0:
        raise RunError(f"--threads must be >= 0, got {cfgs[0].threads}")
    if cfgs[0].threads:
        torch.set_num_threads(cfgs[0].threads)
    if cfgs[0].deterministic:
        if device.type == "cuda":  # cuBLAS needs this set before its first use to be deterministic
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    out = output_folder("train", args.out, Path("runs") / f"{args.dataset}-{args.model}-{args.activation}")
    dist = setup(str(device))
    log = print if dist.main else (lambda *a, **k: None)
    try:
        if dist.main:
            check_writable(out)
        stop = StopFlag()
        handlers.update(_install_signals(stop))
        data = _data(cfgs[0], log)
        results = []
        for cfg in cfgs:
            run_dir = out / f"seed{cfg.seed}" if len(cfgs) > 1 else out
            if dist.main:
                check_writable(run_dir)
            fit = train_text if cfg.dataset == TEXT_NAME else train
            status, res = fit(cfg, data, run_dir, dist, device, stop, args.resume, argv, log)
            if status == "interrupted":
                log(f"interrupted: checkpoint saved in {run_dir}; continue with the same "
                    "command plus --resume", file=sys.stderr)
                return EXIT_INTERRUPTED
            if status == "nonfinite":
                log(f"error: the loss became NaN/inf in {run_dir}; stopped. The last good "
                    f"checkpoint (if any) is kept in {run_dir}/checkpoint.pt; try a lower --lr",
                    file=sys.stderr)
                return EXIT_NONFINITE
            results.append(res)
        if len(cfgs) > 1 and dist.main:
            write_summary(out, results)
    finally:
        teardown(dist)
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The parsed ``tmaf train`` options, a recipe's values filling the defaults; raises
    :class:`UsageError` on a bad option."""
    args = _parser().parse_args(argv)
    text = args.dataset == TEXT_NAME
    if args.recipe is not None or text:  # parse again with the recipe's values as defaults
        parser = _parser()
        parser.set_defaults(**{**(TEXT_DEFAULTS if text else {}),
                               **(RECIPES[args.recipe] if args.recipe is not None else {})})
        args = parser.parse_args(argv)
    return args


def resolved_config(argv: list[str], seed: int) -> TrainConfig:
    """The config a ``tmaf train`` command line trains with for ``seed`` under this checkout
    (recipes and defaults applied), without training; raises UsageError or RunError."""
    return _config(parse_args(argv), seed)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return command_main(_parser, lambda _: _train(argv), argv,
                        errors=(RunError, DataError, OutputFolderError))


def _train(argv: list[str]) -> int:
    args = parse_args(argv)  # again, with the recipe's values as defaults
    try:
        return run(args, ["tmaf", "train", *argv])
    except KeyboardInterrupt:  # a second Ctrl-C: the last saved checkpoint is kept
        print("interrupted again: stopped without saving; the last checkpoint is kept "
              "(continue with --resume)", file=sys.stderr)
        return EXIT_INTERRUPTED
