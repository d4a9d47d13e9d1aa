"""Function approximation (``tmaf approx``): TMAF vs ReLU and rivals on 1-D/2-D targets.

Modules: ``expr`` (safe expression parser), ``targets`` (presets), ``fit`` (config, model,
training, metrics), ``runner`` (per-target runs and output files), ``tables``, ``plots``,
``sweep`` (``tmaf approx sweep``: summary over several output folders), ``cli``
(``main(argv) -> int``). The studies that run it are in :mod:`tmaf_lab.studies`.
"""
