"""Per-call cost of a TMAF module's forward + backward, this checkout's ``tmaf.modules`` against
another revision's ``src/tmaf/modules.py`` loaded beside it in the same process.

For a change to the module class alone (how ``levels`` is found or computed, say): both classes
run the same functional API and kernels, so what differs is the module's own Python per call.
Same-process paired medians (rounds interleaved, the difference taken per round), on small
(N, C) inputs where the fixed cost of a call dominates; one line per (layer, shape):

    tmaf bench module-call --before main --rounds 41     # prints a Markdown table
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import torch

from .percall import paired

SHAPES = ((256, 512), (64, 128))
#: name -> keyword arguments of DiagonalTMAF: the Parameter levels and the computed ones
LAYERS = {"levels": {}, "knot_values": {"form": "continuous", "parameterization": "knot_values"}}


def modules_at(rev: str) -> ModuleType:
    """``tmaf.modules`` as it is at git revision ``rev``, loaded as a sibling of this checkout's
    (its relative imports resolve to this checkout's tmaf package)."""
    import tmaf

    root = Path(tmaf.__file__).resolve().parents[2]
    text = subprocess.run(["git", "show", f"{rev}:src/tmaf/modules.py"], cwd=root, check=True,
                          capture_output=True, text=True).stdout
    name = "tmaf._modules_before"
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader=None))
    module.__package__ = "tmaf"
    sys.modules[name] = module
    exec(compile(text, f"{rev}:src/tmaf/modules.py", "exec"), module.__dict__)  # noqa: S102
    return module


def measure(before: ModuleType, rounds: int, calls: int) -> list[dict]:
    """One row per (layer, shape): medians of the per-call time before and after, and the median
    and quartiles of the per-round difference (after - before), in microseconds."""
    import tmaf

    rows = []
    for layer, kwargs in LAYERS.items():
        for n, c in SHAPES:
            x, g = torch.randn(n, c), torch.randn(n, c)
            acts = {"before": before.DiagonalTMAF(c, **kwargs), "after": tmaf.DiagonalTMAF(c, **kwargs)}
            s = paired({k: (lambda a=a, x=x, g=g: a(x).backward(g)) for k, a in acts.items()},
                       rounds, calls)
            diff = [a - b for a, b in zip(s["after"], s["before"], strict=True)]
            q1, _, q3 = statistics.quantiles(diff, n=4)
            rows.append({"layer": layer, "shape": f"{n}x{c}",
                         "before_us": 1e6 * statistics.median(s["before"]),
                         "after_us": 1e6 * statistics.median(s["after"]),
                         "diff_us": 1e6 * statistics.median(diff),
                         "diff_q1_us": 1e6 * q1, "diff_q3_us": 1e6 * q3})
    return rows


def table(rows: list[dict]) -> str:
    from tmaf_lab.mdtable import markdown_table

    return markdown_table(
        ["layer", "input", "before (us)", "after (us)", "after - before (us)",
         "after - before, quartiles (us)"],
        [[r["layer"], r["shape"], f"{r['before_us']:.1f}", f"{r['after_us']:.1f}",
          f"{r['diff_us']:+.1f}", f"{r['diff_q1_us']:+.1f} .. {r['diff_q3_us']:+.1f}"] for r in rows],
        align="llrrrr")


def build_parser() -> argparse.ArgumentParser:
    from tmaf_lab.cli import OneLineErrorParser

    p = OneLineErrorParser(prog="tmaf bench module-call", description=__doc__.split("\n")[0],
                           allow_abbrev=False)
    p.add_argument("--before", default="main", help="git revision of src/tmaf/modules.py to "
                   "compare with (default main)")
    p.add_argument("--rounds", type=int, default=41, help="interleaved rounds (default 41)")
    p.add_argument("--calls", type=int, default=50, help="calls per round and module (default 50)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's)")
    p.add_argument("--dry-run", action="store_true", help="toy sizes: 3 rounds of 2 calls")
    return p


def run(args) -> int:
    import tmaf

    if args.threads:
        torch.set_num_threads(args.threads)
    rounds, calls = (3, 2) if args.dry_run else (args.rounds, args.calls)
    if rounds < 2 or calls < 1:
        raise ValueError(f"need --rounds >= 2 and --calls >= 1, got {rounds} and {calls}")
    try:
        before = modules_at(args.before)
    except subprocess.CalledProcessError as e:
        raise ValueError(f"cannot read src/tmaf/modules.py at {args.before!r}: "
                         f"{e.stderr.strip()}") from None
    torch.manual_seed(0)
    print(f"# {tmaf.native_status()}; {torch.get_num_threads()} threads; backend "
          f"{tmaf.get_backend()}; {rounds} rounds of {calls} calls; before = {args.before}")
    print(table(measure(before, rounds, calls)))
    return 0


def main(argv: list[str] | None = None) -> int:
    from tmaf_lab.cli import command_main

    return command_main(build_parser, run, argv)
