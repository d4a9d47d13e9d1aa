"""Function-approximation study (``tmaf approx``): TMAF vs ReLU and rivals on 1-D/2-D targets.

Modules: ``expr`` (safe expression parser), ``targets`` (presets), ``study`` (config, model,
training, metrics), ``runner`` (per-target runs and output files), ``tables``, ``plots``,
``sweep`` (summary over several output folders), ``cli`` (``main(argv) -> int``).
"""
