"""Speed and memory benchmarks of TMAF against ReLU / PReLU / GELU (issue 5).

Run ``python -m benchmarks --help``; see the README section "Speed and memory".  Not part of the installed
package: run from the repository root.
"""
