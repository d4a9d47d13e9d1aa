"""Speed and memory benchmarks of TMAF against ReLU / PReLU / GELU (issues 5 and 9).

Run ``python -m benchmarks --help``; ``python -m benchmarks --quick`` measures the issue-9 targets
of the native backend.  See benchmarks/README.md.  Not part of the installed package: run from
the repository root.
"""
