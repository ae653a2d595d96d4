"""A small, safe rule language for segments (tokenised and parsed by hand; no ``eval``).

Grammar (keywords are lower-case; names are feature, score or attribute names)::

    rule    := or
    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | atom
    atom    := "(" rule ")"
             | NAME OP value                    OP: >= <= > < == !=
             | NAME "between" value "and" value (inclusive on both ends)
             | NAME "in" "(" value ("," value)* ")"
             | NAME                             (a boolean name: true when the flag is set)
    value   := NUMBER | 'text' | "text" | true | false

Examples: ``churn >= 0.6 and days_since_last_purchase between 30 and 120 and consent_email``,
``lifecycle_stage in ('win_back', 'retention') or not consent_ads``.

Evaluation on a table is vectorised (numpy masks); a missing value (NaN/None) makes every
comparison false, so ``not (x > 1)`` is true for a missing ``x``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

Kind = Literal["number", "bool", "string"]
Value = float | bool | str
COMPARISONS = (">=", "<=", ">", "<", "==", "!=")
KEYWORDS = frozenset({"and", "or", "not", "between", "in", "true", "false"})

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<string>'[^']*'|"[^"]*")
      | (?P<op>>=|<=|==|!=|>|<)
      | (?P<punct>[(),])
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<bad>\S+)
    )""",
    re.VERBOSE,
)


class RuleError(ValueError):
    """A rule cannot be parsed or does not fit the known names; ``str`` says why and where."""


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int


def tokenize(rule: str) -> list[Token]:
    """Split a rule into tokens (kinds: number, string, op, punct, name, keyword).

    Raises
    ------
    RuleError
        A character sequence that is no token (``=>``, ``&&``, ``$``), with its position.
    """
    out: list[Token] = []
    pos = 0
    rule = rule.rstrip()
    while pos < len(rule):
        m = _TOKEN.match(rule, pos)
        if m is None:  # only trailing whitespace left
            break
        kind = m.lastgroup or "bad"
        text = m.group(kind)
        start = m.start(kind)
        if kind == "bad":
            hint = " (operators: >=, <=, >, <, ==, !=, between, in)" if text[0] in "=<>!&|" else ""
            raise RuleError(f"unexpected {text!r} at position {start + 1}{hint}")
        if kind == "name" and text.lower() in KEYWORDS:
            kind, text = "keyword", text.lower()
        out.append(Token(kind, text, start))
        pos = m.end()
    return out


# -- syntax tree ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Compare:
    name: str
    op: str  # one of COMPARISONS, "between" or "in"
    values: tuple[Value, ...]


@dataclass(frozen=True)
class Flag:
    name: str


@dataclass(frozen=True)
class Not:
    arg: Node


@dataclass(frozen=True)
class BoolOp:
    op: Literal["and", "or"]
    args: tuple[Node, ...]


Node = Compare | Flag | Not | BoolOp


class _Parser:
    def __init__(self, rule: str):
        self.tokens = tokenize(rule)
        self.at = 0

    def peek(self) -> Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise RuleError("the rule ends too early")
        self.at += 1
        return tok

    def expect(self, kind: str, text: str | None = None) -> Token:
        tok = self.take()
        if tok.kind != kind or (text is not None and tok.text != text):
            want = repr(text) if text else f"a {kind}"
            raise RuleError(f"expected {want} at position {tok.pos + 1}, got {tok.text!r}")
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "keyword" and tok.text == word:
            self.at += 1
            return True
        return False

    def parse(self) -> Node:
        if not self.tokens:
            raise RuleError("the rule is empty")
        node = self.or_()
        tok = self.peek()
        if tok is not None:
            raise RuleError(f"unexpected {tok.text!r} at position {tok.pos + 1}")
        return node

    def or_(self) -> Node:
        args = [self.and_()]
        while self.keyword("or"):
            args.append(self.and_())
        return args[0] if len(args) == 1 else BoolOp("or", tuple(args))

    def and_(self) -> Node:
        args = [self.not_()]
        while self.keyword("and"):
            args.append(self.not_())
        return args[0] if len(args) == 1 else BoolOp("and", tuple(args))

    def not_(self) -> Node:
        if self.keyword("not"):
            return Not(self.not_())
        return self.atom()

    def value(self) -> Value:
        tok = self.take()
        if tok.kind == "number":
            return float(tok.text)
        if tok.kind == "string":
            return tok.text[1:-1]
        if tok.kind == "keyword" and tok.text in ("true", "false"):
            return tok.text == "true"
        raise RuleError(
            f"expected a number, 'text', true or false at position {tok.pos + 1}, got {tok.text!r}"
        )

    def atom(self) -> Node:
        tok = self.take()
        if tok.kind == "punct" and tok.text == "(":
            node = self.or_()
            self.expect("punct", ")")
            return node
        if tok.kind != "name":
            raise RuleError(f"expected a name at position {tok.pos + 1}, got {tok.text!r}")
        nxt = self.peek()
        if nxt is not None and nxt.kind == "op":
            self.at += 1
            return Compare(tok.text, nxt.text, (self.value(),))
        if self.keyword("between"):
            low = self.value()
            self.expect("keyword", "and")
            return Compare(tok.text, "between", (low, self.value()))
        if self.keyword("in"):
            self.expect("punct", "(")
            values = [self.value()]
            while (p := self.peek()) is not None and p.text == ",":
                self.at += 1
                values.append(self.value())
            self.expect("punct", ")")
            return Compare(tok.text, "in", tuple(values))
        if nxt is not None and nxt.kind == "name":
            raise RuleError(
                f"unknown operator {nxt.text!r} after {tok.text!r} at position {nxt.pos + 1} "
                "(operators: >=, <=, >, <, ==, !=, between, in)"
            )
        return Flag(tok.text)


def parse_rule(rule: str) -> Node:
    """Parse a rule into a syntax tree.

    Raises
    ------
    RuleError
        Syntax error, with the position and what was expected.
    """
    return _Parser(rule).parse()


def names(node: Node) -> set[str]:
    """Every name a rule refers to."""
    if isinstance(node, Compare | Flag):
        return {node.name}
    if isinstance(node, Not):
        return names(node.arg)
    return set().union(*(names(a) for a in node.args))


def _kind_of(value: Value) -> Kind:
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, float) else "string"


def check_types(node: Node, schema: Mapping[str, Kind]) -> list[str]:
    """Problems of a parsed rule against the known names and their kinds (empty: fine).

    Parameters
    ----------
    node : Node
    schema : mapping of str to {"number", "bool", "string"}

    Returns
    -------
    list of str
        e.g. ``"unknown name 'churnn'"``, ``"type mismatch: 'consent_email' is bool,
        compared with number 0.6"``.
    """
    if isinstance(node, Not):
        return check_types(node.arg, schema)
    if isinstance(node, BoolOp):
        return [p for a in node.args for p in check_types(a, schema)]
    if node.name not in schema:
        close = difflib.get_close_matches(node.name, list(schema), n=3)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        return [f"unknown name {node.name!r}{hint}"]
    kind = schema[node.name]
    if isinstance(node, Flag):
        return (
            []
            if kind == "bool"
            else [f"type mismatch: {node.name!r} is {kind}, used alone as a true/false flag"]
        )
    problems = [
        f"type mismatch: {node.name!r} is {kind}, compared with {_kind_of(v)} {v!r}"
        for v in node.values
        if _kind_of(v) != kind
    ]
    if kind != "number" and node.op in ("between", ">=", "<=", ">", "<"):
        problems.append(f"operator {node.op!r} needs a number, but {node.name!r} is {kind}")
    return problems


_OPS: dict[str, Callable[[np.ndarray, Value], np.ndarray]] = {
    ">=": lambda a, v: a >= v,
    "<=": lambda a, v: a <= v,
    ">": lambda a, v: a > v,
    "<": lambda a, v: a < v,
    "==": lambda a, v: a == v,
    "!=": lambda a, v: a != v,
}


def evaluate(node: Node, frame: pd.DataFrame) -> np.ndarray:
    """Boolean mask of the rows of ``frame`` that satisfy the rule.

    Parameters
    ----------
    node : Node
        A parsed rule whose names are columns of ``frame`` (check with :func:`check_types`).
    frame : DataFrame

    Returns
    -------
    ndarray of bool, shape (len(frame),)
        Missing values never satisfy a comparison or a flag.

    Raises
    ------
    RuleError
        A name is not a column of ``frame``.
    """
    if isinstance(node, Not):
        return ~evaluate(node.arg, frame)
    if isinstance(node, BoolOp):
        masks = [evaluate(a, frame) for a in node.args]
        return np.logical_and.reduce(masks) if node.op == "and" else np.logical_or.reduce(masks)
    if node.name not in frame.columns:
        raise RuleError(f"unknown name {node.name!r}: not a column of the segment data")
    col = frame[node.name]
    present = col.notna().to_numpy(dtype=bool)
    if isinstance(node, Flag):
        return present & col.fillna(False).astype(bool).to_numpy(dtype=bool)
    # compare only the present values, as plain numbers / bools / strings (no pd.NA)
    if pd.api.types.is_bool_dtype(col.dtype):
        arr = col.to_numpy(dtype=object)[present].astype(bool)
    elif pd.api.types.is_numeric_dtype(col.dtype):
        arr = col.to_numpy(dtype=np.float64, na_value=np.nan)[present]
    else:
        arr = col.to_numpy(dtype=object)[present]
    if node.op == "between":
        hit = (arr >= node.values[0]) & (arr <= node.values[1])
    elif node.op == "in":
        hit = pd.Series(arr, dtype=object).isin(list(node.values)).to_numpy()
    else:
        hit = _OPS[node.op](arr, node.values[0])
    out = np.zeros(len(frame), dtype=bool)
    out[present] = np.asarray(hit, dtype=bool)
    return out


__all__ = [
    "BoolOp",
    "Compare",
    "Flag",
    "Kind",
    "Node",
    "Not",
    "RuleError",
    "check_types",
    "evaluate",
    "names",
    "parse_rule",
    "tokenize",
]
