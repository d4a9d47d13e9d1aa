"""The ``tmaf`` command: one entry point, one sub-command per experiment family.

Each sub-command lives in its own module exposing ``main(argv: list[str]) -> int``;
modules are imported only when their sub-command runs, so ``tmaf --help`` is fast
and a broken optional dependency of one family never breaks the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "approx": ("tmaf_lab.approx.cli", "function-approximation study (no data download)"),
    "data": ("tmaf_lab.data.cli", "install / check the MNIST, Fashion-MNIST, CIFAR-10 caches"),
    "train": ("tmaf_lab.train.cli", "train an image classifier (checkpoints, resume, DDP)"),
    "report": ("tmaf_lab.report.cli", "collect run folders into Markdown + HTML reports"),
    "reproduce": ("tmaf_lab.reproduce", "rerun the whole study at a budget, then report"),
    "study": ("tmaf_lab.study.cli", "run a named study (resumable, streams, gates) or report it"),
    "rerun": ("tmaf_lab.train.rerun", "rerun a committed run from its config.json and compare"),
    "compare": ("tmaf_lab.report.trees", "paired variant-vs-base statistics of two run trees"),
    "coverage": ("tmaf_lab.report.coverage", "how much of each TMAF grid the inputs cover"),
    "tuning": ("tmaf_lab.train.tuning", "summarise --val-split runs: best learned-activation lr"),
    "competence": ("tmaf_lab.train.recipes", "list recipes, or check ReLU runs against their bars"),
    "tables": ("tmaf_lab.report.tables", "regenerate (or --check) the tables in results READMEs"),
    "match": ("tmaf_lab.match_study", "how well init=\"match\" keeps a function and a trained GPT-2"),
    "bench": ("tmaf_lab.bench.cli", "speed and memory against ReLU/PReLU/GELU (--quick: the speed targets)"),
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


def command_main(build_parser, run, argv: list[str] | None = None,
                 errors: tuple[type[BaseException], ...] = (ValueError, OSError, KeyError)) -> int:
    """The ``main()`` of every command: parse ``argv`` with ``build_parser()``, call
    ``run(args)`` and return its exit code. ``--help`` returns 0; a bad option or a library
    error listed in ``errors`` is one ``error:`` line and exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
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


DEFAULT_THREADS = 1
THREADS_HELP = ("torch CPU threads (default 1: for these small models one thread per process "
                "is fastest once as many runs as cores share the machine; 0 = torch's default)")


def version() -> str:
    """The installed tmaf version (package metadata, else ``tmaf.__version__``)."""
    try:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        return dist_version("tmaf")
    except PackageNotFoundError:
        import tmaf

        return tmaf.__version__


def _usage() -> str:
    lines = ["usage: tmaf COMMAND [options]   (tmaf COMMAND --help for its options)",
             "       tmaf --version", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"tmaf {version()}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        return usage_error(f"unknown command {name!r}; expected one of {', '.join(COMMANDS)} "
                           "(tmaf --help lists them)")
    try:
        module = importlib.import_module(COMMANDS[name][0])
        return int(module.main(rest) or 0)
    except ModuleNotFoundError as e:
        extra = next((x for x, mods in EXTRAS.items() if (e.name or "").split(".")[0] in mods), None)
        if extra is None:
            raise
        return usage_error(f"tmaf {name} needs the {extra!r} extra (missing module {e.name!r}): "
                           f"pip install 'tmaf[{extra}]', or from the tmaf source: "
                           f"pip install --no-build-isolation -e '.[{extra}]'")


#: The modules of each optional extra (pyproject.toml), for the error when one is missing.
EXTRAS = {"lab": ("numpy", "matplotlib", "tqdm", "PIL"), "export": ("onnx", "onnxruntime", "onnxscript"),
          "hf": ("transformers", "accelerate")}
