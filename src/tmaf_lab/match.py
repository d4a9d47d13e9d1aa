"""``tmaf match``: how well the init="match" start keeps a function (docs/method.md section 7).

    tmaf match fits  --out results/match    # every named function x form at the default grid
    tmaf match gpt2  --out results/match    # a tiny trained GPT-2 converted with each start

``fits`` writes ``fits.json``: per function of ``tmaf.matching.FUNCTIONS`` and form, the fit's
``match_error`` (sup error on the grid's range), its largest error on [-8, 8] and its mean
absolute error under y ~ N(0, 1) (a quadrature on [-8, 8], no sampling). ``gpt2`` writes
``gpt2.json``: a ``GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=256,
n_positions=64))`` from a seeded random init, trained ``--steps`` AdamW steps on the
character-level Shakespeare training split (``tmaf data install shakespeare``), then converted
by ``tmaf.convert`` (its ``NewGELUActivation`` modules, channels last) to each start; per start
the max and mean absolute change of the logits on a fixed validation batch and the change of
its loss. Per seed S: model init seed S, training batches S+1, validation batch S+2. Needs
``transformers``. ``--dry-run``: 3 steps on synthetic tokens, seconds. Each JSON carries the
command, commit, versions, CPU and seeds.
"""

from __future__ import annotations

import argparse
import copy
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import tmaf
from tmaf import matching
from tmaf_lab.cli import OneLineErrorParser, add_seed_options, command_main
from tmaf_lab.files import write_json
from tmaf_lab.mdtable import markdown_table
from tmaf_lab.runmeta import check_writable, environment, git_commit

FORMS = ("jump", "continuous")
WIDE = 8.0  # the range of the wide max error and of the N(0, 1) quadrature
#: (label, convert kind, options) of the starts compared on GPT-2
STARTS = (("continuous_diagonal, match", "continuous_diagonal", {"init": "match"}),
          ("diagonal (jump), match", "diagonal", {"init": "match"}),
          ("diagonal, relu start", "diagonal", {"init": "relu"}))


def fit_record(name: str, form: str, breakpoints: torch.Tensor) -> dict:
    """The fit of one named function in one form on one (m,) grid."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # f(0) != 0 is recorded as f0 instead
        m = tmaf.DiagonalTMAF(1, breakpoints=breakpoints, init="match", match=name, form=form,
                              dtype=torch.float64)
    f = matching.FUNCTIONS[name]
    y = torch.linspace(-WIDE, WIDE, 160001, dtype=torch.float64)
    err = (matching.term_values(m.levels, m.breakpoints, y[None], form)[0] - f(y)).abs()
    w = torch.exp(-0.5 * y.square())  # N(0, 1) weights on an even grid (trapezoid, ends ~0)
    return {"match_error": m.match_error, "max_error_wide": float(err.max()),
            "normal_mean_abs_error": float((err * w).sum() / w.sum()),
            "levels": m.levels.detach()[0].tolist()}


def fits(out: Path) -> dict:
    bp = tmaf.DEFAULT_BREAKPOINTS.double()
    rows = {}
    for name, f in matching.FUNCTIONS.items():
        left, right = matching.asymptotic_slopes(f, bp)
        rows[name] = {"f0": float(f(torch.zeros((), dtype=torch.float64))),
                      "asymptotic_slopes": [left, right],
                      **{form: fit_record(name, form, bp) for form in FORMS}}
    record = {"breakpoints": bp.tolist(), "samples_per_interval": matching.SAMPLES + 1,
              "wide_range": [-WIDE, WIDE], "functions": rows, "provenance": _provenance()}
    write_json(out / "fits.json", record)
    return record


def _num(v: float) -> str:
    if v < 1e-12:  # rounding of an exact fit
        return "0" if v == 0 else "< 1e-12"
    return f"{v:.2g}" if v < 0.01 else f"{v:.3f}"


def _slope(v) -> str:
    return "inf (tangent / f(s)/s)" if v is None else f"{v:g}"


def fits_table(path: Path) -> str:
    """docs table: per function, each form's max error on the grid's range, on [-8, 8], and
    mean |error| under N(0, 1)."""
    import json

    rows = []
    for name, r in json.loads(path.read_text())["functions"].items():
        cells = [_num(r[form][k]) for form in FORMS
                 for k in ("match_error", "max_error_wide", "normal_mean_abs_error")]
        rows.append((name, f"{r['f0']:g}", " / ".join(map(_slope, r["asymptotic_slopes"])), *cells))
    heads = ["f", "f(0)", "end slopes"] + [f"{form}: {k}" for form in FORMS
                                           for k in ("max on grid", "max on [-8, 8]", "mean N(0,1)")]
    return markdown_table(heads, rows, align="lll" + "r" * 6)


@dataclass(frozen=True)
class Gpt2Config:
    steps: int = 300
    batch: int = 32
    context: int = 64
    lr: float = 1e-3
    seeds: tuple[int, ...] = (0, 1, 2)
    eval_batch: int = 64
    threads: int = 1
    dry_run: bool = False


def _tokens(cfg: Gpt2Config) -> tuple[torch.Tensor, torch.Tensor, str]:
    if cfg.dry_run:
        g = torch.Generator().manual_seed(0)
        data = torch.randint(0, 85, (20000,), generator=g)
        return data, data.flip(0), "synthetic uniform tokens (dry run)"
    from tmaf_lab.data.text import load_text

    text = load_text()
    return text.train, text.val, "shakespeare 0.6 (tmaf data install shakespeare), characters"


def _windows(data: torch.Tensor, n: int, T: int, g: torch.Generator) -> torch.Tensor:
    start = torch.randint(0, len(data) - T, (n,), generator=g)
    return torch.stack([data[s:s + T] for s in start.tolist()])


def _eval(model, batch: torch.Tensor) -> tuple[torch.Tensor, float]:
    model.eval()
    with torch.no_grad():
        out = model(batch, labels=batch)
    return out.logits, float(out.loss)


def gpt2(out: Path, cfg: Gpt2Config) -> dict:
    import transformers

    torch.set_num_threads(cfg.threads)
    train, val, source = _tokens(cfg)
    record = {"config": asdict(cfg), "data": source,
              "runs": [_gpt2_seed(cfg, seed, train, val) for seed in cfg.seeds],
              "provenance": {**_provenance(), "transformers": transformers.__version__}}
    write_json(out / "gpt2.json", record)
    return record


def _gpt2_seed(cfg: Gpt2Config, seed: int, train: torch.Tensor, val: torch.Tensor) -> dict:
    """Train one seeded tiny GPT-2, then convert a copy to each of :data:`STARTS`."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.activations import NewGELUActivation

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=256,
                                       n_positions=64))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(seed + 1)
    model.train()
    losses = []
    for _ in range(cfg.steps):
        batch = _windows(train, cfg.batch, cfg.context, g)
        loss = model(batch, labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    batch = _windows(val, cfg.eval_batch, cfg.context, torch.Generator().manual_seed(seed + 2))
    pre, inputs = _site_inputs(model, batch, NewGELUActivation)
    logits, loss = _eval(model, batch)
    starts = {}
    for label, kind, options in STARTS:
        converted = copy.deepcopy(model)
        match = {"match": "gelu_tanh"} if options["init"] == "match" else {}
        tmaf.convert(converted, kind, activations=(NewGELUActivation,), channel_dim=-1,
                     example_input=batch, **options, **match)
        new_logits, new_loss = _eval(converted, batch)
        starts[label] = {"kind": kind, "options": {**options, **match},
                         **_changes(logits, new_logits),
                         "activation_error": _activation_errors(converted, inputs),
                         "loss": new_loss, "loss_change": new_loss - loss,
                         "match_error": [m.match_error for _, m in tmaf.tmaf_modules(converted)]}
    return {"seed": seed, "train_loss_last10": losses[-10:], "val_loss": loss,
            "val_logit_abs_max": float(logits.abs().max()), "activation_inputs": pre,
            "starts": starts}


def _changes(before: torch.Tensor, after: torch.Tensor) -> dict:
    """How far the converted model's logits (B, T, V) moved: raw, as log-probabilities (a shift
    common to all tokens does not count), KL(before || after) per token, top-1 agreement."""
    change = (after - before).abs()
    lp, lq = before.log_softmax(-1), after.log_softmax(-1)
    return {"max_abs_logit_change": float(change.max()),
            "mean_abs_logit_change": float(change.mean()),
            "max_abs_logprob_change": float((lq - lp).abs().max()),
            "mean_kl_nats": float((lp.exp() * (lp - lq)).sum(-1).mean()),
            "top1_agreement": float((before.argmax(-1) == after.argmax(-1)).float().mean())}


def _site_inputs(model, batch, cls) -> list[dict]:
    """Per replaced activation: its input's range and the share outside the default grid."""
    lo, hi = (float(tmaf.DEFAULT_BREAKPOINTS[0]), float(tmaf.DEFAULT_BREAKPOINTS[-1]))
    seen, inputs, handles = [], {}, []
    for name, m in model.named_modules():
        if isinstance(m, cls):
            def hook(mod, args, name=name):
                x = args[0]
                inputs[name] = (x.detach().clone(), mod.forward(x).detach())  # no hooks
                seen.append({"site": name, "min": float(x.min()), "max": float(x.max()),
                             "outside_grid": float(((x <= lo) | (x > hi)).float().mean())})
            handles.append(m.register_forward_pre_hook(hook))
    _eval(model, batch)
    for h in handles:
        h.remove()
    return seen, inputs


def _activation_errors(converted, inputs: dict) -> dict:
    """Per converted site, its output minus the replaced activation's on that site's inputs
    in the trained model (the batch's own pre-activations): mean, mean abs and max abs."""
    out = {}
    with torch.no_grad():
        for name, (x, want) in inputs.items():
            e = converted.get_submodule(name)(x) - want
            out[name] = {"mean": float(e.mean()), "mean_abs": float(e.abs().mean()),
                         "max_abs": float(e.abs().max())}
    return out


def gpt2_table(path: Path) -> str:
    """Per start, over the seeds: the largest max |logit change|, the mean of the other
    changes, and the range of the loss change."""
    import json

    runs = json.loads(path.read_text())["runs"]

    def over(label, key, how):
        v = [r["starts"][label][key] for r in runs]
        return max(v) if how == "max" else sum(v) / len(v)

    rows = [("as trained (NewGELUActivation)", "", "0", "0", "0", "0", "100",
             f"{sum(r['val_loss'] for r in runs) / len(runs):.4f}", "0")]
    for label in runs[0]["starts"]:
        errs = [e for r in runs for e in r["starts"][label]["match_error"] if e is not None]
        dl = [r["starts"][label]["loss_change"] for r in runs]
        rows.append((label, f"{max(errs):.4f}" if errs else "",
                     f"{over(label, 'max_abs_logit_change', 'max'):.3f}",
                     f"{over(label, 'mean_abs_logit_change', 'mean'):.4f}",
                     f"{over(label, 'max_abs_logprob_change', 'max'):.3f}",
                     f"{over(label, 'mean_kl_nats', 'mean'):.2e}",
                     f"{100 * over(label, 'top1_agreement', 'mean'):.2f}",
                     f"{over(label, 'loss', 'mean'):.4f}",
                     f"{min(dl):+.4f} .. {max(dl):+.4f}"))
    return markdown_table(["start", "match_error", "max abs logit change",
                           "mean abs logit change", "max abs log-prob change",
                           "mean KL (nats/token)", "top-1 agreement %", "val loss (nats/char)",
                           "loss change (min .. max)"], rows, align="l" + "r" * 8)


def _provenance() -> dict:
    import sys

    return {"argv": ["tmaf", *sys.argv[1:]] if sys.argv else [], "commit": git_commit(),
            "environment": environment()}


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(prog="tmaf match", description=__doc__.split("\n\n")[0])
    p.add_argument("part", choices=("fits", "gpt2"))
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--steps", type=int, default=Gpt2Config.steps, help="gpt2: training steps")
    add_seed_options(p, Gpt2Config.seeds)
    p.add_argument("--threads", type=int, default=Gpt2Config.threads, help="torch CPU threads")
    p.add_argument("--dry-run", action="store_true",
                   help="gpt2: 3 steps on synthetic tokens, a batch of 4 (seconds)")
    return p


def run(args) -> int:
    check_writable(args.out)
    if args.part == "fits":
        record = fits(args.out)
        print(fits_table(args.out / "fits.json"), end="")
        return 0 if record["functions"] else 1
    if args.steps < 0 or args.threads < 1:
        raise ValueError(f"--steps must be >= 0 and --threads >= 1, got {args.steps}, "
                         f"{args.threads}")
    cfg = Gpt2Config(steps=3 if args.dry_run else args.steps, seeds=args.seeds,
                     threads=args.threads, dry_run=args.dry_run,
                     **({"batch": 4, "eval_batch": 4} if args.dry_run else {}))
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise ValueError("tmaf match gpt2 needs transformers: pip install 'tmaf[hf]' (from the source: "
                         "pip install --no-build-isolation -e '.[hf]')") from None
    print(f"config: {asdict(cfg)}", flush=True)
    record = gpt2(args.out, cfg)
    print(gpt2_table(args.out / "gpt2.json"), end="")
    return 0 if all(math.isfinite(s["loss"]) for r in record["runs"]
                    for s in r["starts"].values()) else 1


def main(argv: list[str] | None = None) -> int:
    from tmaf_lab.data.cache import DataError

    return command_main(build_parser, run, argv, errors=(ValueError, OSError, DataError))
