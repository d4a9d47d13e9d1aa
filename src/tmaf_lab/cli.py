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
}


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that reports a bad option as one ``error: ...`` line and exits with code 2
    (no usage dump); sub-commands use it so mistakes read the same everywhere."""

    def error(self, message: str):
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _usage() -> str:
    lines = ["usage: tmaf COMMAND [options]   (tmaf COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"tmaf: unknown command {name!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        print(_usage(), file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
