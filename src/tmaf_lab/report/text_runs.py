"""Text runs below a folder, and the cells their tables share (``tmaf tables``).

``text_results(FOLDER)`` reads ``FOLDER/<arm>/seed<S>/results.json``; ``loss_cell`` is a paired
difference of test losses with its 95 % t interval; ``seeds_text`` writes a set of seeds.
"""

from __future__ import annotations

from pathlib import Path

from tmaf_lab.runs import find_runs, read_results


def seeds_text(seeds: set[int]) -> str:
    s = sorted(seeds)
    return f"{s[0]}-{s[-1]}" if s == list(range(s[0], s[-1] + 1)) and len(s) > 1 else ",".join(map(str, s))


def text_results(folder: Path) -> dict[str, list[dict]]:
    """{arm: [results.json of each finished seed, by seed]} of ``folder/<arm>/seed<S>``."""
    from tmaf_lab.report.stats import sort_activations

    runs: dict[str, list[dict]] = {}
    for run in find_runs(folder, "*/seed*"):
        runs.setdefault(run.parent.name, []).append(read_results(run))
    if not runs:
        raise ValueError(f"table source {folder} has no finished text run (<arm>/seed<S>/results.json)")
    return {arm: sorted(runs[arm], key=lambda r: r["seed"]) for arm in sort_activations(runs)}


def loss_cell(values: dict[int, float], ref: dict[int, float] | None) -> str:
    """``−0.012 [−0.020, −0.004]`` (nats/char, paired 95 % t interval), bold when it excludes 0."""
    from tmaf_lab.report.stats import paired

    if not ref or not values or not set(values) & set(ref):
        return ""
    p = paired(values, ref)

    def num(x: float) -> str:
        return f"{x:+.4f}".replace("-", "−")

    if p.n < 2:
        return f"{num(p.mean)} (n={p.n})"
    text = f"{num(p.mean)} [{num(p.low)}, {num(p.high)}]"
    return f"**{text}**" if p.low > 0 or p.high < 0 else text
