"""The ``tmaf`` command: one entry point, one tree of sub-commands.

Each sub-command lives in its own module exposing ``main(argv: list[str]) -> int``;
modules are imported only when their sub-command runs, so ``tmaf --help`` is fast
and a broken optional dependency of one family never breaks the others. A command with
sub-commands of its own (``tmaf bench grids``, ``tmaf recipes check``) declares them with
:func:`add_subcommands`, and :func:`command_main` runs the chosen one.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "approx": ("tmaf_lab.approx.cli", "function approximation (no data download); sweep: its table"),
    "data": ("tmaf_lab.data.cli", "install / check the MNIST, Fashion-MNIST, CIFAR-10 caches"),
    "train": ("tmaf_lab.train.cli", "train an image classifier or the GPT (checkpoints, resume, DDP)"),
    "study": ("tmaf_lab.study.cli", "run a named study (resumable, streams, gates) or report it"),
    "report": ("tmaf_lab.report.cli", "collect run folders into Markdown + HTML reports"),
    "tables": ("tmaf_lab.report.tables", "regenerate (or --check) the tables in results READMEs"),
    "compare": ("tmaf_lab.report.trees", "paired variant-vs-base statistics of two run trees"),
    "coverage": ("tmaf_lab.report.coverage", "how much of each TMAF grid the inputs cover"),
    "tuning": ("tmaf_lab.train.tuning", "summarise --val-split runs: best learned-activation lr"),
    "summary": ("tmaf_lab.train.summary", "one Markdown table over the summary.json files of a tree"),
    "rerun": ("tmaf_lab.train.rerun", "rerun a committed run from its config.json and compare"),
    "recipes": ("tmaf_lab.train.recipes", "list the training recipes, or check ReLU runs against their bars"),
    "match": ("tmaf_lab.match", "how well init=\"match\" keeps a function and a trained GPT-2"),
    "bench": ("tmaf_lab.bench.cli", "speed and memory against ReLU/PReLU/GELU, and its tools"),
}


class UsageError(Exception):
    """A mistake in the command line or the options; reported as one ``error:`` line, exit 2."""


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that turns a bad option into :class:`UsageError` (one line, no usage dump);
    every command parses with it, so mistakes read the same everywhere. ``--help`` and
    ``--version`` still print and raise SystemExit(0), as argparse does."""

    def error(self, message: str):
        raise UsageError(message)


def reason(error: BaseException) -> str:
    """An exception's message without the core library's ``tmaf:`` prefix, so a CLI line
    reads ``error: --activation 'x': unknown activation ...`` with one prefix."""
    return str(error).removeprefix("tmaf: ")


def usage_error(message: object) -> int:
    """Print ``error: message`` to stderr; return exit code 2 (for a ``main()`` to return)."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def add_subcommands(parser: argparse.ArgumentParser, table: dict[str, tuple[str, str]],
                    required: bool = True, title: str = "sub-commands") -> None:
    """Give ``parser`` one argparse sub-command per ``table`` entry ``name: (module, help)``.
    A sub-command's options are parsed by its module's ``main(argv)``, imported only when it
    runs (``command_main`` calls it), so ``--help`` after the name shows that command's help.
    ``required=False``: the command also runs alone (``tmaf bench --quick``)."""
    sub = parser.add_subparsers(title=title, dest="subcommand", metavar="COMMAND",
                                required=required)
    for name, (module, help_) in table.items():
        sub.add_parser(name, help=help_, add_help=False).set_defaults(
            subcommand_module=module, subcommand_prog=f"{parser.prog} {name}")


def run_module(module: str, argv: list[str], prog: str) -> int:
    """``main(argv)`` of ``module``; a missing optional dependency names the extra to install."""
    try:
        return int(importlib.import_module(module).main(argv) or 0)
    except ModuleNotFoundError as e:
        extra = next((x for x, mods in EXTRAS.items() if (e.name or "").split(".")[0] in mods), None)
        if extra is None:
            raise
        return usage_error(f"{prog} needs the {extra!r} extra (missing module {e.name!r}): "
                           f"pip install 'tmaf[{extra}]', or from the tmaf source: "
                           f"pip install --no-build-isolation -e '.[{extra}]'")


def command_main(build_parser, run, argv: list[str] | None = None,
                 errors: tuple[type[BaseException], ...] = (ValueError, OSError, KeyError)) -> int:
    """The ``main()`` of every command: parse ``argv`` with ``build_parser()``, call
    ``run(args)`` and return its exit code; a sub-command (:func:`add_subcommands`) runs its
    module's ``main`` with the rest of the line instead. ``--help`` returns 0; a bad option or
    a library error listed in ``errors`` is one ``error:`` line and exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args, rest = parser.parse_known_args(argv)
        module = getattr(args, "subcommand_module", None)
        if module is not None:
            return run_module(module, rest, args.subcommand_prog)
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return int(run(args) or 0)
    except SystemExit as e:  # --help / --version
        return int(e.code or 0)
    except (UsageError, *errors) as e:
        return usage_error(reason(e))


def parse_seeds(text: str) -> tuple[int, ...]:
    """``--seeds``/``--seed`` value: a comma list of seed values, e.g. "0,1,2"; "4" is seed 4
    alone (never a count). Use as an argparse ``type``."""
    from tmaf_lab.lists import parse_list

    try:
        return parse_list(text, int, what="seed values", example="0,1,2", low=0)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class _SeedsOnce(argparse.Action):
    """Store the seeds; refuse a second --seeds/--seed (the two spellings are one option)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, "seeds_option", None):
            parser.error(f"give the seeds once: {namespace.seeds_option} and {option_string} are "
                         "the same option (a comma list of seed values, e.g. --seeds 0,1,2)")
        namespace.seeds_option = option_string
        setattr(namespace, self.dest, values)


def add_seed_options(parser: argparse.ArgumentParser,
                     default: tuple[int, ...] | None) -> None:
    """``--seeds 0,1,2`` and its alias ``--seed N`` (same meaning: the seed values to run)."""
    shown = ",".join(map(str, default)) if default else "each run's own"
    parser.add_argument("--seeds", "--seed", dest="seeds", type=parse_seeds, default=default,
                        action=_SeedsOnce, metavar="S[,S...]",
                        help=f"seed values to run, e.g. 0,1,2; a single value N runs seed N "
                             f"alone (default: {shown})")


DEFAULT_THREADS = 0
THREADS_HELP = "torch CPU threads (default 0: torch's default for this machine)"
#: Help text of the option that runs N one-thread streams side by side.
STREAM_THREADS_HELP = ("each run uses one torch thread (--threads 1), so give at most one "
                       "stream per CPU core")


def version() -> str:
    """The installed tmaf version (package metadata, else ``tmaf.__version__``)."""
    try:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        return dist_version("tmaf")
    except PackageNotFoundError:
        import tmaf

        return tmaf.__version__


def build_parser() -> OneLineErrorParser:
    p = OneLineErrorParser(prog="tmaf", allow_abbrev=False,
                           description="Trainable matrix activation functions: experiments, "
                                       "studies, reports and benchmarks.",
                           epilog="tmaf COMMAND --help shows a command's options")
    p.add_argument("-V", "--version", action="version", version=f"tmaf {version()}")
    add_subcommands(p, COMMANDS, title="commands")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        build_parser().print_help()
        return 0
    return command_main(build_parser, lambda args: 0, argv)


#: The modules of each optional extra (pyproject.toml), for the error when one is missing.
EXTRAS = {"lab": ("numpy", "matplotlib", "tqdm", "PIL"), "export": ("onnx", "onnxruntime", "onnxscript"),
          "hf": ("transformers", "accelerate")}
