"""Comma lists in option values and table markers: the one parser of them.

``parse_list("relu, gelu")`` gives ``("relu", "gelu")``: items are stripped and empty items
(``"a,,b"``, a trailing comma) dropped; each is converted by ``item`` (``int``, ``float``,
``Path``, ...) and checked against ``choices``, ``distinct`` and ``low``. Bad input raises
``ValueError`` naming what was expected and what came. :func:`list_type` wraps it as an
argparse ``type`` (the error becomes argparse's one-line usage error).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any


def parse_list(text: str, item: Callable[[str], Any] = str, *, what: str = "names",
               example: str = "", choices: Sequence[Any] | None = None, distinct: bool = True,
               low: float | None = None, lower: bool = False,
               allow_empty: bool = False) -> tuple[Any, ...]:
    """The items of the comma list ``text``, in order.

    Args:
        item: converts one stripped item (``int`` for integers); its ValueError is bad input.
        what: the items' name in error messages ("seed values", "activation names").
        example: a valid list shown in error messages, e.g. "0,1,2".
        choices: the allowed items (after conversion); None allows any.
        distinct: refuse an item given twice.
        low: the smallest allowed item (numbers).
        lower: lower-case each item before converting it.
        allow_empty: return ``()`` for an empty list instead of refusing it.
    Raises:
        ValueError: an empty list, an item ``item`` refuses, one outside ``choices`` or below
        ``low``, or a repeat; the message names what was expected and ``text``.
    """
    eg = f" such as {example}" if example else ""
    got = f", got {text!r}"
    raw = [s.strip() for s in str(text).split(",")]
    raw = [s.lower() if lower else s for s in raw if s]
    try:
        values = tuple(item(s) for s in raw)
    except (TypeError, ValueError):
        raise ValueError(f"expected comma-separated {what}{eg}{got}") from None
    if not values and not allow_empty:
        raise ValueError(f"expected comma-separated {what}{eg}{got} (an empty list)")
    if choices is not None and (bad := [v for v in values if v not in choices]):
        raise ValueError(f"expected comma-separated {what} from {', '.join(map(str, choices))}"
                         f"{got} ({', '.join(map(str, bad))} not among them)")
    below = [v for v in values if low is not None and v < low]
    repeats = list(dict.fromkeys(v for i, v in enumerate(values) if v in values[:i]))
    if below or (distinct and repeats):
        rule = ("distinct " if distinct else "") + what + (f" >= {low}" if low is not None else "")
        why = ", ".join(map(str, below or repeats)) + (
            f" below {low}" if below else " repeated")
        raise ValueError(f"expected {rule}{eg}{got} ({why})")
    return values


def list_type(item: Callable[[str], Any] = str, **rules: Any) -> Callable[[str], tuple[Any, ...]]:
    """:func:`parse_list` with these ``rules`` as an argparse ``type`` (its error message is
    argparse's)."""
    def parse(text: str) -> tuple[Any, ...]:
        try:
            return parse_list(text, item, **rules)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = f"comma list of {rules.get('what', 'names')}"
    return parse
