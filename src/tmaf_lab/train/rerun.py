"""Rerun one committed training run from its config.json and compare it with the original.

    python -m tmaf_lab.train.rerun RUN_DIR --out DIR [--tolerance 0.25]

RUN_DIR is a finished ``tmaf train`` run folder (config.json and results.json; one seed).
The rerun replays the command line recorded in RUN_DIR/config.json, with ``--out DIR`` and
only that run's seed, in this process. It then writes DIR/rerun.json: both runs' final
accuracy and loss, the difference in percentage points, both environments (CPU model,
threads, torch, TMAF backend, commit) and the verdict:

* ``bit-identical``: the same accuracy and the same loss to the last bit;
* ``within tolerance``: |accuracy difference| <= tolerance (percentage points);
* ``outside tolerance``: a larger difference.

Exit status 0 for the first two, 1 for the third, 2 for bad input. An interrupted rerun
continues from DIR/checkpoint.pt when the command is repeated; a finished one (DIR holds
results.json) is compared again without training. Runs made under torchrun should be
rerun with the same process count; this tool reruns in one process.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from tmaf_lab.cli import OneLineErrorParser, UsageError, usage_error
from tmaf_lab.files import write_json

VERDICTS = ("bit-identical", "within tolerance", "outside tolerance")
_ENV_KEYS = ("cpu_model", "torch_threads", "torch", "numpy", "tmaf_backend", "platform")


class RerunError(ValueError):
    """The run folder cannot be rerun; the message says what was expected and what was found."""


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise RerunError(f"expected {what} at {path}, found none")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RerunError(f"{path} is not valid JSON ({e})") from None


def _metric_name(results: dict, path: Path) -> str:
    """``test`` or ``val`` (a --val-split run), whichever the results record."""
    for name in ("test", "val"):
        if f"{name}_acc" in results and f"{name}_loss" in results:
            return name
    raise RerunError(f"expected test_acc/test_loss (or val_acc/val_loss) in {path}, "
                     f"found keys {sorted(results)}")


def rerun_argv(config: dict, seed: int, out: Path) -> list[str]:
    """The ``tmaf train`` arguments of a recorded run, for one seed, writing into ``out``:
    the recorded ``--out`` and ``--seeds``/``--seed`` are replaced, ``--resume`` is dropped
    (the caller adds it to continue an interrupted rerun)."""
    argv = config.get("argv")
    if not isinstance(argv, list) or argv[:2] != ["tmaf", "train"] or len(argv) < 3:
        raise RerunError(f"expected config.json 'argv' to start with ['tmaf', 'train', DATASET], "
                         f"got {argv!r}")
    args, rest = [], list(argv[2:])
    while rest:
        a = rest.pop(0)
        name = a.split("=", 1)[0]
        if name in ("--out", "--seeds", "--seed"):
            if "=" not in a:
                if not rest:
                    raise RerunError(f"config.json 'argv' ends with {a} and no value")
                rest.pop(0)
            continue
        if a == "--resume":
            continue
        args.append(a)
    return [*args, "--seeds", str(seed), "--out", str(out)]


def compare(original: dict, rerun: dict, tolerance: float, name: str) -> dict:
    """The difference (rerun - original, in percentage points) and the verdict."""
    acc0, acc1 = original[f"{name}_acc"], rerun[f"{name}_acc"]
    loss0, loss1 = original[f"{name}_loss"], rerun[f"{name}_loss"]
    diff = 100.0 * (acc1 - acc0)
    if acc0 == acc1 and loss0 == loss1:
        verdict = VERDICTS[0]
    elif abs(diff) <= tolerance + 1e-9:
        verdict = VERDICTS[1]
    else:
        verdict = VERDICTS[2]
    return {"metric": f"{name}_acc", "original": acc0, "rerun": acc1,
            f"original_{name}_loss": loss0, f"rerun_{name}_loss": loss1,
            "difference_pp": diff, "tolerance_pp": tolerance, "verdict": verdict}


def _environment(config: dict) -> dict:
    env = config.get("environment", {})
    return {"commit": config.get("commit"), **{k: env.get(k) for k in _ENV_KEYS}}


def rerun(run_dir: Path, out: Path, tolerance: float = 0.25) -> dict:
    """Rerun ``run_dir`` into ``out`` (or reuse a finished rerun there); write and return
    the record of out/rerun.json."""
    if not math.isfinite(tolerance) or tolerance < 0:
        raise RerunError(f"expected a tolerance >= 0 percentage points, got {tolerance}")
    run_dir, out = Path(run_dir), Path(out)
    if out.resolve() == run_dir.resolve():
        raise RerunError(f"--out must differ from the run folder {run_dir}: the rerun would "
                         "overwrite the run it is compared with")
    config = _read_json(run_dir / "config.json", "the run's config.json")
    original = _read_json(run_dir / "results.json", "a finished run's results.json")
    name = _metric_name(original, run_dir / "results.json")
    if "seed" not in original:
        raise RerunError(f"expected one seed's results in {run_dir / 'results.json'} (a seed "
                         "folder), found no 'seed' key")
    argv = rerun_argv(config, int(original["seed"]), out)
    if not (out / "results.json").is_file():
        from tmaf_lab.train import cli  # imports torch: only when a run is needed

        resume = ["--resume"] if (out / "checkpoint.pt").is_file() else []
        print(f"[rerun] tmaf train {' '.join(argv + resume)}")
        status = cli.main(argv + resume)
        if status != 0:
            raise RerunError(f"the rerun stopped with exit status {status}; its output is in "
                             f"{out} (repeat the command to continue it)")
    rerun_config = _read_json(out / "config.json", "the rerun's config.json")
    result = _read_json(out / "results.json", "the rerun's results.json")
    if f"{name}_acc" not in result:
        raise RerunError(f"{out / 'results.json'} has no {name}_acc: it is not a rerun of "
                         f"{run_dir}")
    record = {"run_dir": str(run_dir), "rerun_dir": str(out),
              "command": ["tmaf", "train", *argv],
              **compare(original, result, tolerance, name),
              "original_environment": _environment(config),
              "rerun_environment": _environment(rerun_config)}
    record["same_cpu_model"] = (record["original_environment"]["cpu_model"]
                                == record["rerun_environment"]["cpu_model"])
    write_json(out / "rerun.json", record)
    return record


def main(argv: list[str] | None = None) -> int:
    p = OneLineErrorParser(prog="python -m tmaf_lab.train.rerun",
                           description="Rerun a committed tmaf train run from its config.json "
                                       "and compare the final accuracy.")
    p.add_argument("run_dir", type=Path, help="finished run folder (config.json, results.json)")
    p.add_argument("--out", type=Path, required=True, help="folder of the rerun")
    p.add_argument("--tolerance", type=float, default=0.25,
                   help="largest accepted accuracy difference, percentage points (0.25)")
    try:
        args = p.parse_args(argv)
        record = rerun(args.run_dir, args.out, args.tolerance)
    except SystemExit as e:
        return int(e.code or 0)
    except (UsageError, RerunError) as e:
        return usage_error(e)
    env0, env1 = record["original_environment"], record["rerun_environment"]
    print(f"{record['metric']}: original {100 * record['original']:.2f} % ({env0['cpu_model']}), "
          f"rerun {100 * record['rerun']:.2f} % ({env1['cpu_model']}), "
          f"difference {record['difference_pp']:+.2f} pp: {record['verdict']} "
          f"(tolerance {record['tolerance_pp']} pp); wrote {args.out / 'rerun.json'}")
    return 0 if record["verdict"] != VERDICTS[2] else 1


if __name__ == "__main__":
    raise SystemExit(main())
