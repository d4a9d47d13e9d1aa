"""``tmaf approx``: TMAF vs ReLU and rivals on function approximation (no data download).

With no options it runs the default fits (three 1-D targets, relu/prelu/diagonal/
tridiagonal, parameter-matched, 3 seeds) and prints one table per target.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys

from tmaf_lab.approx.expr import ExprError
from tmaf_lab.approx.fit import DTYPES, ApproxConfig
from tmaf_lab.approx.targets import PRESETS, resolve_target
from tmaf_lab.cli import (
    THREADS_HELP,
    OneLineErrorParser,
    UsageError,
    add_seed_options,
    add_subcommands,
    command_main,
    reason,
    usage_error,
)
from tmaf_lab.lists import list_type, parse_list

#: ``tmaf approx NAME``: the tools over finished approx runs.
TOOLS = {"sweep": ("tmaf_lab.approx.sweep", "one table and plot over the runs of a sweep folder")}

DEFAULTS = ApproxConfig()
DRY_RUN = {"steps": 4, "n_train": 64, "n_test": 51, "n_test_2d": 11,
           "history_points": 2}


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _non_negative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return v


def _domain(text: str) -> tuple[float, float]:
    try:
        a, b = parse_list(text, float, what="numbers", distinct=False)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected two numbers 'a,b' (e.g. --domain=-1,1), got {text!r}") from None
    if not (math.isfinite(a) and math.isfinite(b) and a < b):
        raise argparse.ArgumentTypeError(f"expected finite a < b, got {text!r}")
    return (a, b)


#: --activations: distinct activation names, lower-cased
_names = list_type(what="activation names", example="relu,diagonal", lower=True)


def build_parser() -> argparse.ArgumentParser:
    d = DEFAULTS
    p = OneLineErrorParser(prog="tmaf approx", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="presets: " + ", ".join(PRESETS) + ", sin<k>, sin2d<k>")
    p.add_argument("--target", action="append", metavar="NAME|EXPR",
                   help="preset name or an expression in x (and y), e.g. "
                        "'sin(20*pi*x)*exp(-x**2)'; repeat for several targets "
                        f"(default: {', '.join(d.targets)})")
    p.add_argument("--dim", type=int, choices=(1, 2), help="input dimension (default: inferred)")
    p.add_argument("--domain", type=_domain, default=d.domain, metavar="a,b",
                   help="input interval (per axis), default -1,1")
    p.add_argument("--activations", type=_names, default=d.activations, metavar="A,B,...",
                   help="activation names for tmaf.get_act_layer, pwl, or a peer library's "
                        "(deepbspline, aplu, pau, rational, fourier, hermite, kan) "
                        f"(default: {','.join(d.activations)})")
    p.add_argument("--width", type=_positive_int, default=d.width,
                   help="hidden width; the ReLU reference width with --match-params "
                        "(default: %(default)s)")
    p.add_argument("--depth", type=_positive_int, default=d.depth,
                   help="hidden layers (default: %(default)s)")
    p.add_argument("--init", choices=("he", "torch"), default=d.init,
                   help="Linear init: he = Kaiming-normal weights, zero bias (default); "
                        "torch = PyTorch's default (uniform weights and bias)")
    p.add_argument("--match-params", action=argparse.BooleanOptionalAction,
                   default=d.match_params,
                   help="size each model to the ReLU model's parameter count (default: on)")
    p.add_argument("--steps", type=_positive_int, default=d.steps, help="default: %(default)s")
    p.add_argument("--lr", type=_positive_float, default=d.lr,
                   help="Adam learning rate, cosine-decayed to 1%% (default: %(default)s)")
    p.add_argument("--tmaf-lr", type=_positive_float, default=None,
                   help="separate learning rate for TMAF levels (default: same as --lr)")
    p.add_argument("--batch", type=_positive_int, default=d.batch, help="default: %(default)s")
    add_seed_options(p, d.seeds)
    p.add_argument("--dtype", choices=tuple(DTYPES), default=d.dtype, help="default: %(default)s")
    p.add_argument("--breakpoints", type=_positive_int, default=d.breakpoints,
                   help="TMAF breakpoints per channel, odd so 0 is one (default: %(default)s)")
    p.add_argument("--bp-range", type=_positive_float, default=d.bp_range,
                   help="TMAF breakpoints are uniform on [-R, R] (default: %(default)s)")
    p.add_argument("--calibrate", action="store_true",
                   help="before training, move every TMAF grid to per-channel quantiles of its "
                        "inputs on the training sample (tmaf.calibrate; other activations are "
                        "unchanged)")
    p.add_argument("--recalibrate-every", type=_non_negative_int, default=d.recalibrate_every,
                   metavar="K", help="also recalibrate after every K-th step (not the last): "
                   "least-squares refit of the levels on the new grids, Adam state of the "
                   "levels reset (default 0: never)")
    p.add_argument("--n-train", type=_positive_int, default=d.n_train,
                   help="training sample size (default: %(default)s)")
    p.add_argument("--history-points", type=_positive_int, default=d.history_points,
                   help="held-out errors recorded per run, evenly spaced over the steps "
                        "(error vs step; default: %(default)s)")
    p.add_argument("--threads", type=_non_negative_int, default=d.threads, help=THREADS_HELP)
    p.add_argument("--plots", action=argparse.BooleanOptionalAction, default=d.plots,
                   help="write the PNG plots (default: on)")
    p.add_argument("--out", default=None, help=f"output folder (default: {d.out})")
    p.add_argument("--dry-run", action="store_true",
                   help="tiny sizes: a few steps, one seed, to check the pipeline in seconds")
    add_subcommands(p, TOOLS, required=False, title="tools (tmaf approx NAME --help)")
    return p


def _fix_negative_domain(argv: list[str]) -> list[str]:
    """Let ``--domain -2,2`` work (argparse would read '-2,2' as an option)."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--domain" and i + 1 < len(argv) and argv[i + 1][:1] == "-":
            out.append(f"--domain={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def config_from_args(args: argparse.Namespace) -> ApproxConfig:
    """Options -> frozen config (dry run shrinks sizes but keeps every code path)."""
    from tmaf_lab.runmeta import output_folder

    if args.breakpoints % 2 == 0:
        raise UsageError(f"--breakpoints must be odd so that 0 is a breakpoint (ReLU init), "
                         f"got {args.breakpoints}")
    cfg = ApproxConfig(
        targets=tuple(args.target) if args.target else DEFAULTS.targets, dim=args.dim,
        domain=args.domain, activations=args.activations, width=args.width, depth=args.depth,
        init=args.init,
        match_params=args.match_params, steps=args.steps, lr=args.lr, tmaf_lr=args.tmaf_lr,
        batch=args.batch, seeds=args.seeds, dtype=args.dtype, breakpoints=args.breakpoints,
        bp_range=args.bp_range, calibrate=args.calibrate,
        recalibrate_every=args.recalibrate_every, n_train=args.n_train,
        history_points=args.history_points,
        threads=args.threads, plots=args.plots,
        out=output_folder("approx", args.out, DEFAULTS.out), dry_run=args.dry_run)
    if args.dry_run:  # at most two targets: still exercises the multi-target layout
        cfg = dataclasses.replace(cfg, width=min(cfg.width, 8), targets=cfg.targets[:2],
                                  seeds=cfg.seeds[:1], **DRY_RUN)
    return cfg


def check_activations(names: tuple[str, ...]) -> None:
    """Every name must be known to the lab's factory (its error lists the valid names)."""
    from tmaf_lab.models import act_factory

    for name in names:
        try:
            act_factory(name)
        except (ValueError, TypeError) as e:
            raise UsageError(f"--activations: {reason(e)}") from None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return command_main(build_parser, lambda args: _approx(args, argv),
                        _fix_negative_domain(argv), errors=(ExprError,))


def _approx(args: argparse.Namespace, argv: list[str]) -> int:
    try:
        cfg = config_from_args(args)
        targets = [resolve_target(t, cfg.dim) for t in cfg.targets]
        check_activations(cfg.activations)
    except (UsageError, ExprError) as e:
        return usage_error(f"{e} (see: tmaf approx --help)")
    from tmaf_lab.approx.runner import preflight, run_fits
    from tmaf_lab.runmeta import OutputFolderError, check_writable

    try:
        preflight(cfg, targets)
        check_writable(cfg.out)
    except (OutputFolderError, ExprError, ValueError, TypeError) as e:
        return usage_error(reason(e))
    print(f"tmaf approx: {len(targets)} target(s) x {len(cfg.activations)} activation(s) x "
          f"seeds {','.join(map(str, cfg.seeds))}, {cfg.steps} steps -> {cfg.out}",
          file=sys.stderr)
    run_fits(cfg, targets, ["tmaf", "approx", *argv])
    return 0
