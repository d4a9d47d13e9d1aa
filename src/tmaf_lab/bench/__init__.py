"""Speed and memory benchmarks of TMAF against ReLU / PReLU / GELU (issues 5 and 9).

Run ``tmaf bench --help``; ``tmaf bench --quick`` measures the speed targets
of the native backend.  See docs/benchmarks.md.  Not part of the installed package: run from
the repository root.
"""
