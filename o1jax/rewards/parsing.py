"""A whitelisting parser from answer text to sympy objects. Nothing here calls ``eval``,
``sympify`` or ``parse_expr``: text is tokenised, parsed by recursive descent, and sympy objects are
built directly, with limits on length, nesting and the size of numbers.

Accepted: numbers (integers, decimals, scientific notation), + - * / ^ **, implicit products
(2x, 3(x+1)), parentheses, single-letter variables, pi, e, sqrt/sin/cos/tan/log/ln/exp/abs.
"""

from __future__ import annotations

import fractions
import re

import sympy

MAX_CHARS = 2000
MAX_DEPTH = 60
MAX_EXPONENT = 1000          # |n| in x^n for numeric x
MAX_RESULT_DIGITS = 10000    # digits of an integer power
MAX_SCI_EXPONENT = 300       # 1e300 at most

_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z]+)"
                    r"|(?P<op>\*\*|[-+*/^(),]))")
_FUNCS = {"sqrt": sympy.sqrt, "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan,
          "log": sympy.log, "ln": sympy.log, "exp": sympy.exp, "abs": sympy.Abs}
_CONSTS = {"pi": sympy.pi, "e": sympy.E}


class ParseError(ValueError):
    """Text that is not a (safe) math expression."""


def tokenize(text: str) -> list[tuple[str, str]]:
    if len(text) > MAX_CHARS:
        raise ParseError(f"expression longer than {MAX_CHARS} characters")
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ParseError(f"unexpected character {text[pos]!r}")
        kind = m.lastgroup
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


def _number(s: str) -> sympy.Expr:
    m = re.search(r"[eE]([+-]?\d+)$", s)
    if m and abs(int(m.group(1))) > MAX_SCI_EXPONENT:
        raise ParseError("number too large")
    frac = fractions.Fraction(s)
    return sympy.Rational(frac.numerator, frac.denominator)


def _digits(x: sympy.Rational) -> float:
    """Decimal digits of a rational's numerator and denominator (numbers parse as rationals)."""
    return 0.30103 * (int(abs(x.p)).bit_length() + int(x.q).bit_length()) + 1.0


def _power(base: sympy.Expr, exp: sympy.Expr) -> sympy.Expr:
    if exp.is_Number and base.is_Number:
        if abs(exp) > MAX_EXPONENT:
            raise ParseError("exponent too large")
        # integer, rational and float bases alike: (1.1^1000)^1000 is refused here
        if base.is_Rational and base != 0 and float(abs(exp)) * _digits(base) > MAX_RESULT_DIGITS:
            raise ParseError("power too large")
    elif exp.is_Number and abs(exp) > MAX_EXPONENT:
        raise ParseError("exponent too large")
    elif not exp.is_Number and base.is_Number:
        # a symbolic exponent such as 9^(9^x): only evaluated numerically later, refuse nesting
        if any(a.is_Pow for a in exp.atoms(sympy.Pow)):
            raise ParseError("nested symbolic power")
    return sympy.Pow(base, exp)


class _Parser:
    def __init__(self, tokens):
        self.toks = tokens
        self.i = 0
        self.depth = 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def take(self, value=None):
        kind, val = self.peek()
        if kind is None or (value is not None and val != value):
            raise ParseError(f"expected {value or 'more input'}")
        self.i += 1
        return kind, val

    def enter(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError("expression nested too deeply")

    def expr(self):
        self.enter()
        value = self.term()
        while self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            rhs = self.term()
            value = value + rhs if op == "+" else value - rhs
        self.depth -= 1
        return value

    def term(self):
        value = self.unary()
        while True:
            kind, val = self.peek()
            if val in ("*", "/"):
                self.take()
                rhs = self.unary()
                if val == "/":
                    if rhs == 0:
                        raise ParseError("division by zero")
                    value = value / rhs
                else:
                    value = value * rhs
            elif kind in ("num", "name") or val == "(":
                value = value * self.unary()  # implicit product: 2x, 3(x+1), 2pi
            else:
                return value

    def unary(self):
        val = self.peek()[1]
        if val in ("-", "+"):
            self.take()
            self.enter()
            inner = self.unary()
            self.depth -= 1
            return -inner if val == "-" else inner
        return self.power()

    def power(self):
        base = self.atom()
        if self.peek()[1] in ("^", "**"):
            self.take()
            self.enter()
            exp = self.unary()
            self.depth -= 1
            return _power(base, exp)
        return base

    def atom(self):
        kind, val = self.take()
        if kind == "num":
            return _number(val)
        if val == "(":
            inner = self.expr()
            self.take(")")
            return inner
        if kind == "name":
            low = val.lower()
            if low in _FUNCS:
                if self.peek()[1] == "(":
                    self.take("(")
                    arg = self.expr()
                    self.take(")")
                else:
                    arg = self.power()
                return _FUNCS[low](arg)
            if low in _CONSTS and val in (low, "Pi"):
                return _CONSTS[low]
            if len(val) == 1:
                return sympy.Symbol(val)
            if len(val) <= 3:  # xy, abc: implicit products of single-letter variables
                return sympy.Mul(*[_CONSTS["e"] if ch == "e" else sympy.Symbol(ch)
                                   for ch in val])
            raise ParseError(f"unknown name {val!r}")
        raise ParseError(f"unexpected {val!r}")


def parse_expression(text: str) -> sympy.Expr:
    """Parses plain math text (see the module docstring) into a sympy expression."""
    tokens = tokenize(text)
    if not tokens:
        raise ParseError("empty expression")
    parser = _Parser(tokens)
    value = parser.expr()
    if parser.i != len(tokens):
        raise ParseError(f"unexpected {tokens[parser.i][1]!r}")
    return value
