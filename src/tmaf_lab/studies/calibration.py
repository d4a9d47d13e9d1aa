"""Fixed grids against calibrated grids (tmaf.calibrate before the first step), diagonal and
tridiagonal TMAF, on the converged protocol, 5 seeds, paired by seed.

approx: smooth, highfreq, chirp at width 32, 10000 steps; streams A fixed, B calibrated,
C recalibrated (every 1000 steps). mlp: the converged-mlp recipe with --calibrate 32; the
fixed-grid runs are those of the converged study (results/converged/mlp); streams A (MNIST),
B (Fashion-MNIST).
"""

from tmaf_lab.study import Study, approx_run, train_grid

MODES = (("A", "fixed", ()), ("B", "calibrated", ("--calibrate",)),
         ("C", "recalibrated", ("--calibrate", "--recalibrate-every", "1000")))
BASE = "results/converged/mlp"

STUDY = Study(
    name="calibration", question="Do calibrated grids beat fixed grids?",
    out="results/calibration", readme="results/calibration/README.md",
    parts={
        "approx": tuple(approx_run(f"approx/{mode}/{t}", (
            "--target", t, "--width", "32", "--steps", "10000", "--activations",
            "diagonal,tridiagonal", "--seeds", "0,1,2,3,4", "--history-points", "50",
            "--threads", "1", *flag), stream)
            for stream, mode, flag in MODES for t in ("smooth", "highfreq", "chirp")),
        "mlp": train_grid("mlp", ("mnist", "fashion-mnist"), range(5),
                          ("diagonal", "tridiagonal"),
                          ("--recipe", "converged-mlp", "--calibrate", "32"),
                          stream_of={"mnist": "A", "fashion-mnist": "B"}.get),
    },
    reports=(
        ("compare", "{out}/approx/fixed", "{out}/approx/calibrated", "--out",
         "{out}/report/approx", "--title", "Calibrated vs fixed grids: function fitting"),
        ("compare", "{out}/approx/fixed", "{out}/approx/recalibrated", "--out",
         "{out}/report/approx-recalibrated", "--title",
         "Recalibrated (every 1000 steps) vs fixed grids: function fitting"),
        ("compare", BASE, "{out}/mlp", "--activations", "diagonal,tridiagonal", "--out",
         "{out}/report/mlp", "--title", "Calibrated vs fixed grids: MLP"),
    ),
)
