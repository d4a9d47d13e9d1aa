"""``tmaf reproduce --budget gpu``: the CIFAR-10 study and the CUDA benchmark on one GPU, in
about 8 minutes.

    tmaf reproduce --budget gpu [--out results/gpu] [--minutes 8] [--seeds 0,...,9]
                   [--activations relu,gelu,pwl,diagonal,tridiagonal] [--no-bench] [--dry-run]

1. CIFAR-10 with recipe ``gpu-cifar`` (cpu-cifar at width 64, 10 epochs; train/recipes.py) for
   every activation and seed, seed by seed (every activation of seed 0, then seed 1, ...), into
   OUT/train/cifar10-airbench/<activation>/seed<S>/ (config.json, metrics.jsonl, results.json).
   Once a round of seeds has been timed, a new round starts only if it is expected to end
   before the training deadline (``--minutes`` from the start, less the benchmark's time
   limit and REPORT_SECONDS for the report), so every activation ends with the same seeds;
   should the deadline pass during a round (a first round slower than the whole budget), no
   further run starts.
2. The CUDA benchmark, ``tmaf bench --device cuda --quick --parts act,train --out
   OUT/bench``, as a subprocess with a time limit; when it fails (no
   GPU, timeout) the failure is recorded in OUT/study.json and the study goes on.
3. ``tmaf report OUT/train --out OUT/report``: mean ± std, paired differences to ReLU with
   95 % t intervals, learning curves; OUT/study.json: status and seconds of every step.

Rerunning the same command keeps finished runs and resumes unfinished ones (``--resume``).
``--dry-run`` runs all of it on the CPU at toy sizes in seconds (2 seeds, width-8 net, 2 steps
per run, synthetic images when CIFAR-10 is not installed, the benchmark's ``--dry-run``), into
``--out`` (default runs/gpu-dry-run); the test suite calls it that way.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tmaf_lab.cli import OneLineErrorParser, UsageError, add_seed_options, usage_error

ACTIVATIONS = ("relu", "gelu", "pwl", "diagonal", "tridiagonal")
SEEDS = tuple(range(10))
DRY_SEEDS = (0, 1)
REPORT_SECONDS = 60.0  # kept free for tmaf report at the end of the budget
DRY_TRAIN = ("--width", "8", "--batch-size", "32", "--eval-batch-size", "256", "--dry-run")


@dataclass(frozen=True)
class GpuStudyConfig:
    out: str
    activations: tuple[str, ...] = ACTIVATIONS
    seeds: tuple[int, ...] = SEEDS
    minutes: float = 8.0  # wall-clock budget of the whole study (benchmark included)
    bench: bool = True
    bench_timeout: float = 120.0  # seconds
    device: str = "cuda"
    dry_run: bool = False


def parse_args(argv: list[str], prog: str) -> GpuStudyConfig:
    p = OneLineErrorParser(prog=prog, description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--out", default=None, help="study folder (default results/gpu; "
                   "dry run: runs/gpu-dry-run)")
    p.add_argument("--activations", default=",".join(ACTIVATIONS),
                   help="comma list (default %(default)s)")
    add_seed_options(p, SEEDS)
    p.add_argument("--minutes", type=float, default=GpuStudyConfig.minutes,
                   help="wall-clock budget; no round of seeds starts that would end later "
                        "(default %(default)s)")
    p.add_argument("--no-bench", dest="bench", action="store_false",
                   help="skip the CUDA benchmark")
    p.add_argument("--bench-timeout", type=float, default=GpuStudyConfig.bench_timeout)
    p.add_argument("--device", default="cuda", help="cuda or cuda:N (dry run: cpu)")
    p.add_argument("--dry-run", action="store_true",
                   help="the whole study on the CPU at toy sizes, in seconds")
    a = p.parse_args(argv)
    acts = tuple(s.strip() for s in a.activations.split(",") if s.strip())
    if not acts or len(set(acts)) != len(acts):
        p.error(f"--activations: expected distinct names, got {a.activations!r}")
    from tmaf_lab.models import act_factory

    for act in acts:
        try:
            act_factory(act)
        except ValueError as e:
            p.error(f"--activations: {e}")
    if not (a.minutes > 0 and a.bench_timeout > 0):
        p.error("--minutes and --bench-timeout must be > 0")
    seeds = a.seeds if not a.dry_run or "--seeds" in argv or "--seed" in argv else DRY_SEEDS
    from tmaf_lab.runmeta import output_folder

    out = output_folder("reproduce --budget gpu", a.out, "runs/gpu-dry-run" if a.dry_run else "results/gpu")
    return GpuStudyConfig(out, acts, tuple(seeds), a.minutes, a.bench, a.bench_timeout,
                          "cpu" if a.dry_run else a.device, a.dry_run)


def bench_step(cfg: GpuStudyConfig, out: Path) -> dict:
    """Run the benchmark as a subprocess; any failure is recorded, never raised."""
    args = (["--dry-run", "--device", "cpu"] if cfg.dry_run
            else ["--device", "cuda", "--quick", "--parts", "act,train"])
    cmd = [sys.executable, "-m", "tmaf_lab.bench", *args, "--out", str(out / "bench")]
    rec = {"step": "bench", "argv": cmd[1:]}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=cfg.bench_timeout)
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        rec.update(status="done" if proc.returncode == 0 else "failed",
                   exit_code=proc.returncode, tail=tail)
    except subprocess.TimeoutExpired:
        rec.update(status="failed", reason=f"timed out after {cfg.bench_timeout:g} s")
    except OSError as e:
        rec.update(status="failed", reason=str(e))
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    return rec


def train_argv(cfg: GpuStudyConfig, act: str, seed: int, folder: Path) -> list[str]:
    argv = ["cifar10", "--recipe", "gpu-cifar", "--activation", act, "--seeds", str(seed),
            "--device", cfg.device, "--out", str(folder), "--resume"]
    return argv + (list(DRY_TRAIN) + ["--threads", "1"] if cfg.dry_run
                   else ["--nondeterministic", "--threads", "0"])


def train_steps(cfg: GpuStudyConfig, out: Path, deadline: float, records: list[dict]) -> str:
    """Seed-major training runs; no round starts that would end after ``deadline``
    (a perf_counter time). Returns why it stopped."""
    from tmaf_lab.study.run import call

    round_seconds: float | None = None
    started = False  # at least one run started here: the deadline may stop the next one
    for seed in cfg.seeds:
        left = deadline - time.perf_counter()
        if round_seconds is not None and round_seconds > left:
            return (f"stopped before seed {seed}: a round of seeds takes about "
                    f"{round_seconds:.0f} s and {max(left, 0):.0f} s of training time are left "
                    f"(rerun the same command to add seeds)")
        t_round, ran = time.perf_counter(), False
        for act in cfg.activations:
            folder = out / "train" / "cifar10-airbench" / act / f"seed{seed}"
            argv = train_argv(cfg, act, seed, folder)
            rec = {"step": f"train {act} seed {seed}", "argv": ["tmaf", "train", *argv]}
            if (folder / "results.json").is_file():
                records.append({**rec, "status": "done", "reason": "results.json exists"})
                continue
            if started and time.perf_counter() > deadline:  # a hard stop, even mid-round
                return (f"stopped at {act} seed {seed}: the training deadline passed during a "
                        "round (rerun the same command to complete it)")
            print(f"[gpu-study] {act} seed {seed}", file=sys.stderr, flush=True)
            t0, ran, started = time.perf_counter(), True, True
            code, err = call("train", argv)
            ok = code == 0 and (folder / "results.json").is_file()
            rec.update(status="done" if ok else "failed", exit_code=code,
                       seconds=round(time.perf_counter() - t0, 1))
            if err:
                rec["error"] = err.splitlines()[-1]
            records.append(rec)
            if code == 130:
                return "interrupted"
        if ran:  # the slowest round so far (the first one includes warm-up: conservative)
            round_seconds = max(round_seconds or 0.0, time.perf_counter() - t_round)
    return "all seeds done"


def device_name(cfg: GpuStudyConfig) -> str:
    import torch

    if cfg.device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(cfg.device))
    return "cpu"


def run(cfg: GpuStudyConfig, argv: list[str]) -> int:
    from tmaf_lab.files import write_json
    from tmaf_lab.report.cli import main as report
    from tmaf_lab.runmeta import OutputFolderError, check_writable, save_config

    if not cfg.dry_run:
        import torch

        if not torch.cuda.is_available():
            return usage_error("--budget gpu needs a CUDA GPU (torch.cuda.is_available() is "
                               "False); --dry-run runs the study at toy sizes on the CPU")
        from tmaf_lab.study.run import data_missing

        missing = data_missing("cifar10")
        if missing:
            return usage_error(missing)
    out = Path(cfg.out)
    try:
        check_writable(out)
    except OutputFolderError as e:
        return usage_error(e)
    save_config(out, cfg, argv, cfg.device)
    start = time.perf_counter()
    records: list[dict] = []

    def save(note: str = "") -> None:
        write_json(out / "study.json", {"config": asdict(cfg), "device": device_name(cfg),
                                        "seconds": round(time.perf_counter() - start, 1),
                                        "note": note, "steps": records})

    deadline = start + cfg.minutes * 60 - REPORT_SECONDS - (cfg.bench_timeout if cfg.bench else 0)
    note = train_steps(cfg, out, deadline, records)
    save(note)
    if cfg.bench and note != "interrupted":
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the benchmark is another process on the same GPU
        records.append(bench_step(cfg, out))
        save(note)
    figures = ["--max-activation-figures", "1"] if cfg.dry_run else []
    code = report([str(out / "train"), "--out", str(out / "report"), *figures,
                   "--title", "GPU study: CIFAR-10 airbench"]) \
        if (out / "train").is_dir() else 0
    save(note)
    failed = [r["step"] for r in records if r["status"] == "failed" and r["step"] != "bench"]
    print(f"[gpu-study] {note}; {len(failed)} failed training run(s); "
          f"{time.perf_counter() - start:.0f} s; report in {out / 'report'}", file=sys.stderr)
    return 130 if note == "interrupted" else (1 if failed or code else 0)


def main(argv: list[str] | None = None, prog: str = "tmaf reproduce --budget gpu") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = parse_args(argv, prog)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except UsageError as e:
        return usage_error(e)
    return run(cfg, ["tmaf", "reproduce", "--budget", "gpu", *argv])


if __name__ == "__main__":
    raise SystemExit(main())
