"""Safe target expressions: a numpy-style formula in ``x`` (and ``y``), never ``eval``-ed.

``parse_expr("sin(20*pi*x)*exp(-x**2)")`` parses the text with :mod:`ast`, checks every
node against a whitelist, and returns a :class:`TargetExpr` whose ``__call__`` interprets
the tree on torch tensors (float64). Nothing from the text ever reaches ``eval``/``exec``;
names resolve only to the whitelisted functions and constants below.

Accepted: numbers (|c| <= 1e6), ``x``/``y``, ``pi``/``e``/``tau``, ``+ - * / ** %``, unary
``+ -``, comparisons (giving 0.0/1.0), calls of the whitelisted functions with positional
arguments, optionally written ``np.sin`` / ``numpy.sin`` / ``math.sin`` / ``torch.sin``.
Rejected with :class:`ExprError`: any other name, attribute access, subscripts,
keywords, lambdas, comprehensions, strings, dunders, constant exponents above
``MAX_POW``, more than ``MAX_LEN`` characters or ``MAX_NODES`` syntax nodes.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

MAX_LEN = 400
MAX_NODES = 200
MAX_CONST = 1e6
MAX_POW = 64

_T = torch.Tensor
# name -> (number of positional args, implementation on float64 tensors)
FUNCTIONS: dict[str, tuple[int, Callable[..., _T]]] = {
    "sin": (1, torch.sin), "cos": (1, torch.cos), "tan": (1, torch.tan),
    "arcsin": (1, torch.asin), "arccos": (1, torch.acos), "arctan": (1, torch.atan),
    "asin": (1, torch.asin), "acos": (1, torch.acos), "atan": (1, torch.atan),
    "sinh": (1, torch.sinh), "cosh": (1, torch.cosh), "tanh": (1, torch.tanh),
    "exp": (1, torch.exp), "log": (1, torch.log), "log2": (1, torch.log2),
    "log10": (1, torch.log10), "log1p": (1, torch.log1p), "expm1": (1, torch.expm1),
    "sqrt": (1, torch.sqrt), "abs": (1, torch.abs), "sign": (1, torch.sign),
    "floor": (1, torch.floor), "ceil": (1, torch.ceil), "erf": (1, torch.erf),
    "sigmoid": (1, torch.sigmoid), "sinc": (1, torch.sinc), "square": (1, torch.square),
    "relu": (1, torch.relu),
    "minimum": (2, torch.minimum), "maximum": (2, torch.maximum),
    "arctan2": (2, torch.atan2), "atan2": (2, torch.atan2),
    "hypot": (2, torch.hypot),
    "where": (3, lambda c, a, b: torch.where(c != 0, a, b)),
    "clip": (3, lambda v, lo, hi: torch.minimum(torch.maximum(v, lo), hi)),
}
CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
MODULE_ALIASES = ("np", "numpy", "math", "torch")
_BINOPS: dict[type, Callable[[_T, _T], _T]] = {
    ast.Add: torch.add, ast.Sub: torch.sub, ast.Mult: torch.mul, ast.Div: torch.div,
    ast.Pow: torch.pow, ast.Mod: torch.remainder,
}
_CMPOPS: dict[type, Callable[[_T, _T], _T]] = {
    ast.Lt: torch.lt, ast.LtE: torch.le, ast.Gt: torch.gt, ast.GtE: torch.ge,
    ast.Eq: torch.eq, ast.NotEq: torch.ne,
}


class ExprError(ValueError):
    """A target expression that is not in the accepted subset (message says why)."""


@dataclass(frozen=True)
class TargetExpr:
    """A checked expression; call it with tensors ``x`` (and ``y``) of one shape."""

    text: str
    variables: tuple[str, ...]  # subset of ("x", "y") the expression uses
    _tree: ast.Expression

    @property
    def dim(self) -> int:
        """1 if the expression uses only ``x``, else 2."""
        return 2 if "y" in self.variables else 1

    def __call__(self, x: _T, y: _T | None = None) -> _T:
        """Evaluate on tensors; returns a float64 tensor broadcast to the shape of ``x``."""
        if "y" in self.variables and y is None:
            raise ExprError(f"expression {self.text!r} uses y but only x was given")
        env = {"x": x.to(torch.float64)}
        if y is not None:
            env["y"] = y.to(torch.float64)
        out = _Interp(env).visit(self._tree.body)
        return torch.broadcast_to(out, x.shape).clone()


def parse_expr(text: str, allowed_vars: tuple[str, ...] = ("x", "y")) -> TargetExpr:
    """Parse and check ``text``; raise :class:`ExprError` naming the first problem."""
    if not isinstance(text, str):
        raise ExprError(f"expression must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ExprError("expression is empty")
    if len(text) > MAX_LEN:
        raise ExprError(f"expression is {len(text)} characters long; at most {MAX_LEN} allowed")
    if "__" in text:
        raise ExprError("double underscores ('__') are not allowed in expressions")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ExprError(f"cannot parse expression {text!r}: {e.msg}") from None
    except (RecursionError, MemoryError, ValueError) as e:
        raise ExprError(f"cannot parse expression {text!r}: {type(e).__name__}") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise ExprError(f"expression has {len(nodes)} syntax nodes; at most {MAX_NODES} allowed")
    used: set[str] = set()
    _Checker(allowed_vars, used).visit(tree.body)
    variables = tuple(v for v in ("x", "y") if v in used)
    if not variables:
        raise ExprError(f"expression {text!r} does not use x" + (" or y" if "y" in allowed_vars
                                                                    else ""))
    return TargetExpr(text.strip(), variables, tree)


def _describe(node: ast.AST) -> str:
    try:
        src = ast.unparse(node)
    except Exception:  # noqa: BLE001 - only used to word an error message
        src = type(node).__name__
    return src if len(src) <= 40 else src[:37] + "..."


def _call_name(func: ast.expr) -> str | None:
    """``sin`` for ``sin`` and for ``np.sin``/``numpy.sin``/``math.sin``/``torch.sin``."""
    if isinstance(func, ast.Name):
        return func.id
    if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
            and func.value.id in MODULE_ALIASES):
        return func.attr
    return None


class _Checker(ast.NodeVisitor):
    """Walks the tree once and raises on anything outside the whitelist."""

    def __init__(self, allowed_vars: tuple[str, ...], used: set[str]) -> None:
        self.allowed_vars = allowed_vars
        self.used = used

    def generic_visit(self, node: ast.AST) -> None:
        raise ExprError(f"{type(node).__name__} is not allowed in expressions "
                        f"(at {_describe(node)!r}); use numbers, x, y, + - * / ** % "
                        f"and the functions {', '.join(sorted(FUNCTIONS))}")

    def visit_Constant(self, node: ast.Constant) -> None:
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ExprError(f"only real numbers are allowed as constants, got {v!r}")
        if not math.isfinite(float(v)) or abs(v) > MAX_CONST:
            raise ExprError(f"constant {v!r} is out of range; |c| <= {MAX_CONST:g} allowed")

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in CONSTANTS:
            return
        if node.id in ("x", "y"):
            if node.id not in self.allowed_vars:
                raise ExprError(f"variable {node.id!r} is not available here; the target is "
                                f"{len(self.allowed_vars)}-D (variables: "
                                f"{', '.join(self.allowed_vars)})")
            self.used.add(node.id)
            return
        if node.id in FUNCTIONS:
            raise ExprError(f"function {node.id!r} must be called, e.g. {node.id}(x)")
        raise ExprError(f"unknown name {node.id!r}; allowed variables: "
                        f"{', '.join(self.allowed_vars)}; constants: {', '.join(CONSTANTS)}")

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if type(node.op) not in _BINOPS:
            raise ExprError(f"operator {type(node.op).__name__} is not allowed "
                            f"(at {_describe(node)!r}); allowed: + - * / ** %")
        if isinstance(node.op, ast.Pow):
            p = _const_value(node.right)
            if p is not None and abs(p) > MAX_POW:
                raise ExprError(f"exponent {p:g} is too large (|p| <= {MAX_POW} allowed) "
                                f"at {_describe(node)!r}")
            if isinstance(node.right, ast.BinOp) and isinstance(node.right.op, ast.Pow):
                raise ExprError(f"chained powers such as {_describe(node)!r} are not allowed; "
                                "add parentheses, e.g. (a**b)**c")
        self.visit(node.left)
        self.visit(node.right)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if not isinstance(node.op, (ast.UAdd, ast.USub)):
            raise ExprError(f"unary operator {type(node.op).__name__} is not allowed "
                            f"(at {_describe(node)!r})")
        self.visit(node.operand)

    def visit_Compare(self, node: ast.Compare) -> None:
        if len(node.ops) != 1 or type(node.ops[0]) not in _CMPOPS:
            raise ExprError(f"only single comparisons (< <= > >= == !=) are allowed, "
                            f"got {_describe(node)!r}")
        self.visit(node.left)
        self.visit(node.comparators[0])

    def visit_Call(self, node: ast.Call) -> None:
        name = _call_name(node.func)
        if name is None:
            raise ExprError(f"only calls of named functions are allowed, got {_describe(node)!r}")
        if name not in FUNCTIONS:
            raise ExprError(f"unknown function {name!r}; allowed: {', '.join(sorted(FUNCTIONS))}")
        if node.keywords:
            raise ExprError(f"keyword arguments are not allowed (in {_describe(node)!r})")
        nargs = FUNCTIONS[name][0]
        if len(node.args) != nargs or any(isinstance(a, ast.Starred) for a in node.args):
            raise ExprError(f"{name}() takes {nargs} argument(s), got {len(node.args)} "
                            f"(in {_describe(node)!r})")
        for arg in node.args:
            self.visit(arg)


def _const_value(node: ast.expr) -> float | None:
    """The value of a (possibly negated) numeric literal, else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _const_value(node.operand)
        return None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    return None


class _Interp(ast.NodeVisitor):
    """Evaluates a tree that passed :class:`_Checker`, on float64 tensors."""

    def __init__(self, env: dict[str, _T]) -> None:
        self.env = env
        self.like = env["x"]

    def _scalar(self, v: float) -> _T:
        return torch.tensor(float(v), dtype=torch.float64, device=self.like.device)

    def visit_Constant(self, node: ast.Constant) -> _T:
        return self._scalar(node.value)

    def visit_Name(self, node: ast.Name) -> _T:
        if node.id in CONSTANTS:
            return self._scalar(CONSTANTS[node.id])
        return self.env[node.id]

    def visit_BinOp(self, node: ast.BinOp) -> _T:
        return _BINOPS[type(node.op)](self.visit(node.left), self.visit(node.right))

    def visit_UnaryOp(self, node: ast.UnaryOp) -> _T:
        v = self.visit(node.operand)
        return -v if isinstance(node.op, ast.USub) else v

    def visit_Compare(self, node: ast.Compare) -> _T:
        out = _CMPOPS[type(node.ops[0])](self.visit(node.left), self.visit(node.comparators[0]))
        return out.to(torch.float64)

    def visit_Call(self, node: ast.Call) -> _T:
        fn = FUNCTIONS[_call_name(node.func)][1]
        return fn(*(self.visit(a) for a in node.args))

    def generic_visit(self, node: ast.AST) -> _T:  # unreachable after _Checker
        raise ExprError(f"{type(node).__name__} is not allowed")
