"""tmaf_lab: experiments, CLI, data loaders and reports built on the ``tmaf`` core.

The core library (``tmaf``) imports only torch; everything here may use the
``lab`` extra (numpy, matplotlib, tqdm, pillow, scipy). Run folders (config.json,
metrics.jsonl, results.json) are read through :mod:`tmaf_lab.runs` and comma lists parsed
by :mod:`tmaf_lab.lists`.
"""
