"""Speed and memory benchmarks of TMAF against ReLU / PReLU / GELU.

Run ``tmaf bench --help``; ``tmaf bench --quick`` measures the speed targets
of the native backend.  See docs/benchmarks.md.  Not part of the installed package: run from
the repository root.
"""
