"""Rerun one committed training run from its config.json and compare it with the original.

    tmaf rerun RUN_DIR --out DIR [--tolerance 0.25]

RUN_DIR is a finished ``tmaf train`` run folder (config.json and results.json; one seed).
The rerun replays the command line recorded in RUN_DIR/config.json, with ``--out DIR`` and
only that run's seed, in this process. It then writes DIR/rerun.json: both runs' final
accuracy and loss, the difference in percentage points, both environments (CPU model,
threads, torch, TMAF backend, commit) and the verdict:

* ``bit-identical``: the same accuracy and the same loss to the last bit;
* ``within tolerance``: |accuracy difference| <= tolerance (percentage points);
* ``outside tolerance``: a larger difference.

Only the final accuracy and loss are compared. The rerun uses this checkout's code: before
training, the recorded command is resolved under it (recipes, defaults) and must give the
recorded config, else the rerun is refused with the differences (check out the recorded
commit, ``commit`` in config.json). Exit status 0 for the first two verdicts, 1 for the
third, 2 for bad input; a rerun that stops passes on the train command's status (130
interrupted, 3 non-finite loss). An interrupted rerun continues from DIR/checkpoint.pt when
the command is repeated; a finished one (DIR holds the results of this very command) is
compared again without training. Runs made under torchrun should be rerun with the same
process count; this tool reruns in one process.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

from tmaf_lab.cli import OneLineErrorParser, command_main
from tmaf_lab.files import write_json
from tmaf_lab.runs import RunFileError, read_json

VERDICTS = ("bit-identical", "within tolerance", "outside tolerance")
_ENV_KEYS = ("cpu_model", "torch_threads", "torch", "numpy", "tmaf_backend", "platform")


class RerunError(ValueError):
    """The run folder cannot be rerun; the message says what was expected and what was found."""


class RerunStopped(RuntimeError):
    """The rerun's training stopped with a non-zero exit status (kept in ``status``)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def _read_json(path: Path, what: str) -> dict:
    try:
        return read_json(path)
    except RunFileError as e:
        raise RerunError(f"expected {what}: {e}") from None


def _metric_name(results: dict, path: Path) -> str:
    """``test`` or ``val`` (a --val-split run), whichever the results record as numbers."""
    for name in ("test", "val"):
        if f"{name}_acc" in results and f"{name}_loss" in results:
            values = (results[f"{name}_acc"], results[f"{name}_loss"], results.get("seed"))
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                raise RerunError(f"expected numbers for {name}_acc, {name}_loss and seed in "
                                 f"{path}, got {values}")
            return name
    raise RerunError(f"expected test_acc/test_loss (or val_acc/val_loss) and the seed of one "
                     f"run in {path}, found keys {sorted(results)}")


def rerun_argv(config: dict, seed: int, out: Path) -> list[str]:
    """The ``tmaf train`` arguments of a recorded run, for one seed, writing into ``out``:
    the recorded ``--out`` and ``--seeds``/``--seed`` are replaced, ``--resume`` is dropped
    (the caller adds it to continue an interrupted rerun), and a command without
    ``--threads`` gets the recorded thread count (the default was once 1)."""
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
    threads = config.get("config", {}).get("threads")
    if threads is not None and not any(a.split("=", 1)[0] == "--threads" for a in args):
        # recorded when --threads defaulted to 1: rerun at the recorded count
        at = args.index("--") if "--" in args else len(args)
        args[at:at] = ["--threads", str(threads)]
    return ["--seeds", str(seed), "--out", str(out), *args]  # before any "--"


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


def _with_defaults(config: dict) -> dict:
    """A config.json's resolved config, with the fields added since it was written."""
    from tmaf_lab.train.config import upgraded

    return upgraded(config.get("config", {}))


def _config_changes(config: dict, argv: list[str], seed: int) -> list[str]:
    """Fields where the recorded config differs from what ``argv`` resolves to now."""
    from tmaf_lab.cli import UsageError as CliUsageError
    from tmaf_lab.train import cli

    try:
        now = dataclasses.asdict(cli.resolved_config(argv, seed))
    except (CliUsageError, cli.RunError) as e:
        raise RerunError(f"the recorded command does not parse under this checkout: {e}") from None
    from tmaf_lab.train.config import current_values

    saved, now = current_values(_with_defaults(config)), current_values(now)
    return [f"{k}: recorded {saved.get(k)!r}, now {now.get(k)!r}"
            for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]


def _train(argv: list[str], out: Path) -> None:
    from tmaf_lab.train import cli  # imports torch: only when a run is needed

    resume = ["--resume"] if (out / "checkpoint.pt").is_file() else []
    print(f"[rerun] tmaf train {' '.join(argv + resume)}")
    status = cli.main(argv + resume)
    if status == 0:
        return
    if status == 2 and not (out / "config.json").is_file():
        raise RerunStopped("the rerun could not start (exit status 2, the error above)", 2)
    raise RerunStopped(f"the rerun stopped with exit status {status} (the message above); "
                       f"repeat this command to continue it from {out}", status)


def rerun(run_dir: Path, out: Path, tolerance: float = 0.25) -> dict:
    """Rerun ``run_dir`` into ``out`` (or reuse a finished rerun of the same command there);
    write and return the record of out/rerun.json."""
    if not math.isfinite(tolerance) or tolerance < 0:
        raise RerunError(f"expected a tolerance >= 0 percentage points, got {tolerance}")
    run_dir, out = Path(run_dir), Path(out)
    if out.resolve() == run_dir.resolve():
        raise RerunError(f"--out must differ from the run folder {run_dir}: the rerun would "
                         "overwrite the run it is compared with")
    config = _read_json(run_dir / "config.json", "the run's config.json")
    original = _read_json(run_dir / "results.json", "a finished run's results.json")
    name = _metric_name(original, run_dir / "results.json")
    seed = int(original["seed"])
    argv = rerun_argv(config, seed, out)
    changes = _config_changes(config, argv, seed)
    if changes:
        raise RerunError(f"the recorded command trains a different config under this checkout "
                         f"(recorded at commit {config.get('commit')}): {'; '.join(changes)}; "
                         "check out the recorded commit to rerun it")
    if not (out / "results.json").is_file():
        _train(argv, out)
    rerun_config = _read_json(out / "config.json", "the rerun's config.json")
    result = _read_json(out / "results.json", "the rerun's results.json")
    if (_with_defaults(rerun_config) != _with_defaults(config) or result.get("seed") != seed
            or f"{name}_acc" not in result):
        raise RerunError(f"{out} holds another run (command {rerun_config.get('argv')}, seed "
                         f"{result.get('seed')}), not a rerun of {run_dir}; choose an empty "
                         "--out")
    _metric_name(result, out / "results.json")
    record = {"run_dir": str(run_dir), "rerun_dir": str(out),
              "command": ["tmaf", "train", *argv],
              **compare(original, result, tolerance, name),
              "original_environment": _environment(config),
              "rerun_environment": _environment(rerun_config)}
    cpus = (record["original_environment"]["cpu_model"],
            record["rerun_environment"]["cpu_model"])
    record["same_cpu_model"] = None if None in cpus else cpus[0] == cpus[1]
    record["same_commit"] = (record["original_environment"]["commit"]
                             == record["rerun_environment"]["commit"])
    write_json(out / "rerun.json", record)
    return record


def _parser() -> OneLineErrorParser:
    p = OneLineErrorParser(prog="tmaf rerun",
                           description="Rerun a committed tmaf train run from its config.json "
                                       "and compare the final accuracy.")
    p.add_argument("run_dir", type=Path, help="finished run folder (config.json, results.json)")
    p.add_argument("--out", type=Path, required=True, help="folder of the rerun")
    p.add_argument("--tolerance", type=float, default=0.25,
                   help="largest accepted accuracy difference, percentage points (0.25)")
    return p


def _rerun(args) -> int:
    try:
        record = rerun(args.run_dir, args.out, args.tolerance)
    except RerunStopped as e:
        print(f"error: {e}", file=sys.stderr)
        return e.status
    env0, env1 = record["original_environment"], record["rerun_environment"]
    print(f"{record['metric']}: original {100 * record['original']:.2f} % ({env0['cpu_model']}), "
          f"rerun {100 * record['rerun']:.2f} % ({env1['cpu_model']}), "
          f"difference {record['difference_pp']:+.2f} pp: {record['verdict']} "
          f"(tolerance {record['tolerance_pp']} pp); wrote {args.out / 'rerun.json'}")
    return 0 if record["verdict"] != VERDICTS[2] else 1


def main(argv: list[str] | None = None) -> int:
    return command_main(_parser, _rerun, argv, errors=(RerunError,))
