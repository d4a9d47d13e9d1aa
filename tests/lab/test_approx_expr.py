"""The safe target-expression parser: correct values, and every hostile input refused."""

from __future__ import annotations

import math

import pytest
import torch

from tmaf_lab.approx import expr as expr_mod
from tmaf_lab.approx.expr import ExprError, parse_expr
from tmaf_lab.approx.targets import PRESETS, grid_points, resolve_target

X = torch.linspace(-1.0, 1.0, 41, dtype=torch.float64)
Y = torch.linspace(-0.5, 1.5, 41, dtype=torch.float64)


@pytest.mark.parametrize(("text", "ref"), [
    ("sin(20*pi*x)*exp(-x**2)", lambda x, y: torch.sin(20 * math.pi * x) * torch.exp(-x**2)),
    ("np.sin(3*x) + numpy.cos(x)", lambda x, y: torch.sin(3 * x) + torch.cos(x)),
    ("abs(x) - 0.5*abs(x-0.5)", lambda x, y: x.abs() - 0.5 * (x - 0.5).abs()),
    ("where(x > 0, x, -2*x)", lambda x, y: torch.where(x > 0, x, -2 * x)),
    ("(x >= 0.25)*1.5", lambda x, y: (x >= 0.25).double() * 1.5),
    ("clip(3*x, -1, 1) + maximum(x, 0.2)", lambda x, y: (3 * x).clamp(-1, 1) + x.clamp_min(0.2)),
    ("-x**2 % 0.3", lambda x, y: torch.remainder(-(x**2), 0.3)),
    ("exp(sin(pi*x) + y**2)", lambda x, y: torch.exp(torch.sin(math.pi * x) + y**2)),
    ("sqrt(x**2 + y**2) * tau / e", lambda x, y: torch.hypot(x, y) * math.tau / math.e),
    ("arctan2(y, x) + tanh(x*y)", lambda x, y: torch.atan2(y, x) + torch.tanh(x * y)),
])
def test_values_match_torch(text, ref):
    e = parse_expr(text)
    got = e(X, Y) if e.dim == 2 else e(X)
    torch.testing.assert_close(got, ref(X, Y), rtol=1e-12, atol=1e-12)
    assert got.dtype == torch.float64 and got.shape == X.shape


def test_constant_in_y_broadcasts_to_x_shape():
    e = parse_expr("y + 0*x")
    assert e.dim == 2
    torch.testing.assert_close(e(X, Y), Y)


HOSTILE = [
    "__import__('os')", "__import__('os').system('true')", "x.__class__", "().__class__",
    "().__class__.__bases__[0].__subclasses__()", "np.sin.__call__(x)",
    "lambda: 1", "(lambda x: x)(x)", "[t for t in x]", "{t for t in x}", "(t for t in x)",
    "open('/etc/passwd')", "eval('1')", "exec('x=1')", "getattr(x, 'real')", "globals()",
    "os.system('true')", "np.load('f.npy')", "torch.save(x, 'f')", "x.real", "x.sum()",
    "x[0]", "x if x > 0 else 1", "'abc'", "b'abc'", "True*x", "None", "1j*x", "x and 1",
    "not x", "~x", "x // 2", "x @ x", "x << 2", "x < 1 < 2", "sin(x=x)", "sin(*[x])",
    "sin(x, x)", "where(x, x)", "9**9**9", "x**1000", "2**-100*x", "(2)**(10**9)",
    "1e400*x", "1e7*x", "z + x", "X", "sin", "2", "", "   ", "x;1", "x\nimport os",
    "(" * 300 + "x" + ")" * 300, "+".join(["x"] * 150), "-" * 250 + "x",
    "f'{x}'", "x := 1", "(y := x)", "[x]", "{'a': x}", "x, x", "...", "await x",
    "yield x", "*x",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_or_invalid_expressions_are_refused(text):
    with pytest.raises(ExprError) as info:
        parse_expr(text, allowed_vars=("x",))
    assert str(info.value)  # a message, never an empty error


def test_refusal_does_not_depend_on_the_dunder_text_check():
    # Defence in depth: even without the '__' pre-check, the AST checker refuses these.
    import ast

    for text in ("().__class__", "x.__class__", "__import__('os')"):
        tree = ast.parse(text, mode="eval")
        with pytest.raises(ExprError):
            expr_mod._Checker(("x",), set()).visit(tree.body)


def test_parser_never_calls_eval(monkeypatch):
    import builtins

    def boom(*a, **k):
        raise AssertionError("eval/exec must not be used")

    monkeypatch.setattr(builtins, "eval", boom)
    monkeypatch.setattr(builtins, "exec", boom)
    assert float(parse_expr("x*2")(torch.ones(1))) == 2.0


@pytest.mark.parametrize(("text", "words"), [
    ("z + x", ["'z'", "x"]),
    ("y + x", ["'y'", "1-D"]),
    ("x**1000", ["1000", "64"]),
    ("foo(x)", ["'foo'", "sin"]),
    ("x.real", ["Attribute"]),
    ("sin(x, x)", ["1 argument", "got 2"]),
])
def test_error_messages_name_the_problem(text, words):
    with pytest.raises(ExprError) as info:
        parse_expr(text, allowed_vars=("x",))
    for w in words:
        assert w in str(info.value)


@pytest.mark.parametrize("name", sorted(PRESETS) + ["sin24", "sin2d3"])
def test_presets_parse_and_are_finite(name):
    t = resolve_target(name)
    pts = grid_points(t.dim, 33, -1.0, 1.0)
    vals = t(pts)
    assert vals.shape == (pts.shape[0],) and torch.isfinite(vals).all()
    assert vals.std() > 0  # not a constant function


def test_family_presets_expand():
    assert resolve_target("sin24").text == "sin(24*pi*x)"
    assert resolve_target("sin2d3").dim == 2


def test_dim_inference_and_conflicts():
    assert resolve_target("sin(x)").dim == 1
    assert resolve_target("sin(x)*y").dim == 2
    assert resolve_target("sin(x)", dim=2).dim == 2
    with pytest.raises(ExprError, match="'y'"):
        resolve_target("sin(x)*y", dim=1)
    with pytest.raises(ExprError):
        resolve_target("sin2d", dim=1)
