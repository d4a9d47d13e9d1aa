"""Named training recipes: the same recipe for every activation, so baselines are competent.

``tmaf train DATASET --recipe NAME`` takes the recipe's values as defaults; any option given
on the command line still wins, and config.json records both the values and the recipe's
name. The learned-activation parameters (TMAF levels, PReLU and pwl slopes) share one
optimiser group with no weight decay and the same learning rate as the weights
(:func:`tmaf_lab.models.optimizer_groups`), so no activation gets its own tuning.

- ``converged-mlp``: the 784-512-512-10 MLP for 15 epochs: AdamW (lr 1e-3, decoupled weight
  decay 0.05 on the weights), batch 128, 5 % warm-up then cosine to 0, label smoothing 0.1,
  no augmentation. (Random 2-pixel shifts, ``--augment shift``, cost Fashion-MNIST 2.6 points
  after 2 epochs in the pilot, 85.2 vs 87.8 %, so they stay off.)
- ``converged-cnn``: the CNN (width 32) for 5 epochs, same optimiser, lr 2e-3 and 10 % warm-up,
  no augmentation.
- ``cpu-cifar``: CIFAR-10 on the CPU with airbench94's techniques, written from their
  published description: the ``airbench-white`` model (a frozen patch-whitening stem whose bias
  trains for the first 3 epochs; BatchNorm momentum 0.4, eps 1e-12, no trained scale;
  identity-initialised convolutions; logits x 1/9) at width 32 (groups of 32, 128, 128
  channels), 15 epochs of batch 512 in channels-last layout; SGD Nesterov with airbench94's
  settings restated for a mean loss over batch 512: lr 0.75, momentum 0.85, weight decay
  1.33e-3 (1e-3 of decay per step), BatchNorm shifts at 64x the learning rate and 1/64 the
  decay; 23 % warm-up then cosine; label smoothing 0.2; pad-2 crops + flips; a weight
  average (decay 0.99 per step) evaluated with test-time augmentation over flips and one-pixel
  shifts. results/cifar/README.md has the pilot (each technique's effect on ReLU).
- ``gpu-cifar``: the same recipe at airbench94's width 64 (64, 256, 256) and 10 epochs, with
  bf16 autocast on the GPU (``tmaf study gpu``).
- ``cpu-gpt``: the character-level GPT on Shakespeare at nanoGPT's CPU size (4 blocks, 4 heads,
  width 128, context 64, 0.81 M parameters) for 3000 steps of 32 windows (6.1 M training
  characters, 1.3 passes): AdamW lr 1e-3, weight decay 0.1, 2 % warm-up then cosine to 0
  (results/gpt/README.md: the pilot curve and wall times).
- ``cpu-gpt-unit``: ``cpu-gpt`` with the MLP pre-activations at about unit scale and nanoGPT's
  weight decay: the MLP's input matrix starts N(0, 1/width) instead of N(0, 0.02) (after the
  LayerNorm the pre-activations start at std about 1, not 0.23), and weight decay 0.1 applies
  to the matrices and embeddings only, not to the LayerNorm gains
  (results/gpt-baselines/README.md: the measured scales).

A run's config.json records ``--recipe NAME`` in its command line, so a rerun from that
command needs the recipe unchanged: once runs made with a recipe are committed, change it only
under a new name (a test pins the values).

:data:`COMPETENCE` holds the accuracy a ReLU baseline must reach for a study to count
(its competence bar): ``tmaf recipes check DIR`` checks the ReLU runs below DIR.
"""

from __future__ import annotations

from pathlib import Path

from tmaf_lab.runs import RunFileError, find_runs, read_results

_CPU_CIFAR: dict[str, object] = {
    "model": "airbench-white", "width": 32, "epochs": 15, "batch_size": 512, "optimizer": "sgd",
    "lr": 0.75, "momentum": 0.85, "weight_decay": 1.33e-3, "bn_bias_lr_scale": 64.0,
    "schedule": "onecycle", "warmup": 0.23, "label_smoothing": 0.2, "augment": "flip-shift",
    "whiten_bias_epochs": 3, "tta": "flip-translate", "ema": 0.99,
    "memory_format": "channels-last", "eval_batch_size": 1000}

RECIPES: dict[str, dict[str, object]] = {
    "converged-mlp": {"model": "mlp", "epochs": 15, "batch_size": 128, "optimizer": "adamw",
                      "lr": 1e-3, "weight_decay": 0.05, "schedule": "onecycle", "warmup": 0.05,
                      "label_smoothing": 0.1, "augment": "off"},
    "converged-cnn": {"model": "cnn", "epochs": 5, "batch_size": 128, "optimizer": "adamw",
                      "lr": 2e-3, "weight_decay": 0.05, "schedule": "onecycle", "warmup": 0.1,
                      "label_smoothing": 0.1, "augment": "off"},
    "cpu-cifar": _CPU_CIFAR,
    "gpu-cifar": {**_CPU_CIFAR, "width": 64, "epochs": 10, "eval_batch_size": 2000},
    "cpu-gpt": {"model": "gpt", "steps": 3000, "batch_size": 32, "context": 64, "width": 128,
                "depth": 4, "heads": 4, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.1,
                "schedule": "onecycle", "warmup": 0.02, "eval_every": 100, "eval_windows": 256,
                "eval_batch_size": 256},
}
RECIPES["cpu-gpt-unit"] = {**RECIPES["cpu-gpt"], "gpt_init": "unit", "weight_decay_on": "matrices"}

# Defaults of a shakespeare run that names no recipe (a minute-scale GPT run at one thread).
TEXT_DEFAULTS: dict[str, object] = {"model": "gpt", "batch_size": 32, "lr": 1e-3,
                                    "weight_decay": 0.1, "warmup": 0.05, "eval_every": 50,
                                    "eval_windows": 128, "eval_batch_size": 256}

# (dataset, model) -> minimum ReLU test accuracy (mean over seeds) for a competent baseline.
COMPETENCE = {("mnist", "mlp"): 0.982, ("mnist", "cnn"): 0.992,
              ("fashion-mnist", "mlp"): 0.895, ("fashion-mnist", "cnn"): 0.915,
              ("cifar10", "airbench-white"): 0.910}


def check(root: Path) -> list[str]:
    """One line per (dataset, model) with ReLU runs below ``root``: mean accuracy vs the bar,
    prefixed 'ok' or 'BELOW'. Runs of other data sets/models are ignored."""
    accs: dict[tuple[str, str], list[float]] = {}
    for run in find_runs(root):
        try:
            res = read_results(run)
        except RunFileError:
            continue  # not a run's results; the gate counts the runs it can read
        if res.get("activation") == "relu":
            key = (res.get("dataset"), res.get("model"))
            if key in COMPETENCE and isinstance(res.get("test_acc"), (int, float)):
                accs.setdefault(key, []).append(float(res["test_acc"]))
    lines = []
    for key, vals in sorted(accs.items()):
        mean, bar = sum(vals) / len(vals), COMPETENCE[key]
        flag = "ok" if mean >= bar else "BELOW"
        lines.append(f"{flag:5} {key[0]} {key[1]}: relu {100 * mean:.2f} % over {len(vals)} "
                     f"seed(s), bar {100 * bar:.1f} %")
    return lines


def build_parser():
    from tmaf_lab.cli import OneLineErrorParser

    p = OneLineErrorParser(prog="tmaf recipes", allow_abbrev=False,
                           description="The named training recipes, and the competence check "
                                       "of ReLU runs against their recipe's bar.")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="every recipe with its values")
    check_ = sub.add_parser("check", help="the ReLU runs below DIR against their bars "
                                          "(exit 1 when one misses)")
    check_.add_argument("dir", type=Path, metavar="DIR")
    return p


def run(args) -> int:
    if args.action == "list":
        for name, values in RECIPES.items():
            print(f"{name}: " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in values.items()))
        return 0
    if not args.dir.is_dir():
        raise ValueError(f"{args.dir} is not a folder")
    lines = check(args.dir)
    print("\n".join(lines) if lines else f"no ReLU runs with a competence bar below {args.dir}")
    return 1 if any(line.startswith("BELOW") for line in lines) else 0


def main(argv: list[str] | None = None) -> int:
    """``tmaf recipes list | check DIR``; check exits 1 below a bar."""
    from tmaf_lab.cli import command_main

    return command_main(build_parser, run, argv)
