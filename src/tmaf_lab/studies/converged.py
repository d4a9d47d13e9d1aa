"""TMAF against ReLU, PReLU, GELU and pwl trained to the end, paired by seed (95 % intervals).

mlp: 784-512-512-10, recipe converged-mlp, seeds 0-4; cnn: width 32, recipe converged-cnn,
seeds 0-2; both seed by seed, ReLU first and gated by its competence bar; streams A (MNIST)
and B (Fashion-MNIST). approx: sin(k pi x) k = 1, 4, 16, 32, chirp, sin2d, parameter counts
matched to ReLU at width 32 and 64, 10000 steps, seeds 0-4; streams A (sin1 sin16 chirp) and
B (sin4 sin32 sin2d).

Channel mixing in the continuous form (parts not run by default): mixing-approx fits the same
six targets at width 32 (10000 steps, seeds 0-4) with relu, pwl (= continuous_diagonal),
tridiagonal and continuous_tridiagonal side by side in approx-mixing/w32/<target>; mixing-cnn
adds continuous_tridiagonal to the Fashion-MNIST CNN (seeds 0-2, paired with the committed
pwl and tridiagonal runs of cnn/fashion-mnist).

The peer libraries (part peers-approx, not run by default; needs the optional peers of
tmaf_lab.peer_activations): the same six fits at width 32 (10000 steps, seeds 0-4) with pwl_knots (the
core's continuous_diagonal trained through its knot values), DeepSplines' deepbspline,
rational-activations' rational and pykan's kan layer, each parameter-matched to ReLU, in
approx-peers/w32/<target>; they pair by seed with relu, pwl and diagonal of approx/w32/<target>
(the same protocol, widths and data, deterministic).
"""

from tmaf_lab.study import Study, approx_run, train_grid

MLP_ARMS = ("relu", "prelu", "gelu", "pwl", "diagonal", "tridiagonal")
CNN_ARMS = ("relu", "pwl", "diagonal", "tridiagonal")
MIXING_ARMS = ("relu", "pwl", "tridiagonal", "continuous_tridiagonal")
PEER_ARMS = ("pwl_knots", "deepbspline", "rational", "kan")
STREAM = {"mnist": "A", "fashion-mnist": "B"}.get


def _approx(folder: str = "approx", arms=MLP_ARMS, widths=(32, 64)):
    return tuple(approx_run(f"{folder}/w{w}/{t}", (
        "--target", t, "--width", str(w), "--steps", "10000", "--activations",
        ",".join(arms), "--seeds", "0,1,2,3,4", "--history-points", "50", "--threads", "1"),
        stream) for stream, targets in (("A", ("sin1", "sin16", "chirp")),
                                        ("B", ("sin4", "sin32", "sin2d")))
        for t in targets for w in widths)


STUDY = Study(
    name="converged", question="Does TMAF beat ReLU, PReLU, GELU and pwl when trained to "
    "convergence?", out="results/converged", readme="results/converged/README.md",
    parts={
        "mlp": train_grid("mlp", ("mnist", "fashion-mnist"), range(5), MLP_ARMS,
                          ("--recipe", "converged-mlp"), gate=True, stream_of=STREAM),
        "cnn": train_grid("cnn", ("mnist", "fashion-mnist"), range(3), CNN_ARMS,
                          ("--recipe", "converged-cnn"), gate=True, stream_of=STREAM),
        "approx": _approx(),
        "mixing-approx": _approx("approx-mixing", MIXING_ARMS, (32,)),
        "mixing-cnn": train_grid("cnn", ("fashion-mnist",), range(3), ("continuous_tridiagonal",),
                                 ("--recipe", "converged-cnn"), stream_of=STREAM),
        "peers-approx": _approx("approx-peers", PEER_ARMS, (32,)),
    },
    default_parts=("mlp", "cnn", "approx"),
    reports=tuple(("report", f"{{out}}/{p}", "--out", f"{{out}}/{p}/report", "--title",
                   f"Converged {p} study") for p in ("mlp", "cnn", "approx")),
)
