"""Function approximation at default and varied settings (results/approx). Each run keeps its
standard output tables in <name>.stdout.md. pilot: the wave packet at 1000 steps, seeds 0-1,
diagonal TMAF at other grids (m, R) and level learning rates, and ReLU (the pilot in
results/approx/README.md)."""

from tmaf_lab.study import Run, Study, approx_run

SIN = tuple(a for k in (1, 4, 8, 16, 32) for a in ("--target", f"sin{k}"))
MULTI = ("summary.csv",)
# (folder, options, activations) of the pilot
PILOT = (("m9r2", (), "relu,diagonal"),
         ("m5r2", ("--breakpoints", "5", "--bp-range", "2"), "diagonal"),
         ("m17r2", ("--breakpoints", "17", "--bp-range", "2"), "diagonal"),
         ("m9r3", ("--breakpoints", "9", "--bp-range", "3"), "diagonal"),
         ("m9r1", ("--breakpoints", "9", "--bp-range", "1"), "diagonal"),
         ("lr1e-2", ("--tmaf-lr", "1e-2"), "diagonal"),
         ("lr3e-4", ("--tmaf-lr", "3e-4"), "diagonal"))


def _run(name, options, folder=None):
    folder = folder or name
    single = options.count("--target") == 1
    return approx_run(folder, options, markers=("results.json",) if single else MULTI,
                      stdout=f"{name}.stdout.md")


STUDY = Study(
    name="approx", question="Does TMAF fit 1-D and 2-D functions better than ReLU at matched "
    "parameter counts?", out="results/approx", readme="results/approx/README.md",
    parts={
        "default": (_run("default", ()),),
        "2d": (_run("2d", ("--target", "sin2d", "--target", "expsin2d", "--seeds", "0,1")),),
        "sweep": (*(_run(f"sweep_w{w}", (*SIN, "--activations", "relu,diagonal,tridiagonal",
                                         "--width", str(w), "--seeds", "0,1", "--no-plots"),
                         f"sweep/w{w}") for w in (16, 32, 64)),
                  Run("sweep", "sweep", markers=("sweep.md",))),
        "same_width": (_run("same_width", ("--target", "sin8", "--target", "sin16", "--target",
                                           "sin32", "--no-match-params", "--seeds", "0,1",
                                           "--no-plots")),),
        "long": (_run("long", ("--target", "highfreq", "--activations", "relu,diagonal",
                               "--steps", "5000", "--seeds", "0,1")),),
        "lr": tuple(_run(f"lr_{lr}", ("--target", "sin8", "--activations", "relu,diagonal",
                                      "--lr", lr, "--seeds", "0,1", "--no-plots"),
                         f"lr/lr{lr}") for lr in ("1e-3", "1e-2", "3e-2")),
        "rivals": (_run("rivals", ("--target", "smooth", "--target", "sin8", "--activations",
                                   "relu,gelu,silu,tanh,diagonal", "--seeds", "0,1",
                                   "--no-plots")),),
        "init_torch": (_run("init_torch", ("--target", "sin8", "--target", "smooth",
                                           "--activations", "relu,diagonal", "--seeds", "0,1",
                                           "--no-plots", "--init", "torch")),),
        "chirp_localized": (_run("chirp_localized", ("--target", "chirp", "--target",
                                                     "localized", "--seeds", "0,1")),),
        "pilot": tuple(approx_run(f"pilot/{name}", ("--target", "packet", "--steps", "1000",
                                                    "--activations", acts, *options,
                                                    "--seeds", "0,1"))
                       for name, options, acts in PILOT),
    },
    reports=(("report", "{out}", "--out", "{out}/report"),),
)
