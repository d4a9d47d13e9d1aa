"""tmaf_lab.lists: the one parser of comma lists (option values, table markers)."""

from __future__ import annotations

import argparse

import pytest

from tmaf_lab.lists import list_type, parse_list


def test_items_are_stripped_and_empty_items_dropped():
    assert parse_list(" relu, gelu,,") == ("relu", "gelu")
    assert parse_list("3,1,2", int) == (3, 1, 2)
    assert parse_list("ReLU,GELU", lower=True) == ("relu", "gelu")
    assert parse_list("1,1", int, distinct=False) == (1, 1)


@pytest.mark.parametrize("text, rules, message", [
    ("", {}, "expected comma-separated names, got '' (an empty list)"),
    (" , ", {}, "(an empty list)"),
    ("1,x", {"item": int, "what": "seed values", "example": "0,1,2"},
     "expected comma-separated seed values such as 0,1,2, got '1,x'"),
    ("1,1,2", {"item": int, "what": "seed values"},
     "expected distinct seed values, got '1,1,2' (1 repeated)"),
    ("0,-1", {"item": int, "what": "integers", "low": 0},
     "expected distinct integers >= 0, got '0,-1' (-1 below 0)"),
    ("relu,nope", {"choices": ("relu", "gelu")},
     "expected comma-separated names from relu, gelu, got 'relu,nope' (nope not among them)"),
])
def test_bad_input_names_what_was_expected_and_what_came(text, rules, message):
    item = rules.pop("item", str)
    with pytest.raises(ValueError) as e:
        parse_list(text, item, **rules)
    assert message in str(e.value)


def test_as_an_argparse_type_the_error_is_one_usage_line(capsys):
    p = argparse.ArgumentParser(prog="x")
    p.add_argument("--seeds", type=list_type(int, what="seed values", low=0))
    assert p.parse_args(["--seeds", "0,2"]).seeds == (0, 2)
    with pytest.raises(SystemExit):
        p.parse_args(["--seeds", "0,a"])
    err = capsys.readouterr().err
    assert "argument --seeds: expected comma-separated seed values, got '0,a'" in err
