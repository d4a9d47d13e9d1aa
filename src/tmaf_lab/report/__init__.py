"""``tmaf report``: collect ``tmaf approx`` and ``tmaf train`` run folders into one report.

Pipeline (one module each): ``collect`` finds and validates ``results.json`` files through
:mod:`tmaf_lab.runs` (bad ones become "skipped" entries, never exceptions) -> ``stats`` aggregates over
seeds -> ``figures`` draws PNGs (``learned`` the TMAF-layer figures, via ``layer_figures``) ->
``build`` lays out the document -> ``document``
renders it as Markdown and as a self-contained HTML page (images as data URIs).
"""
