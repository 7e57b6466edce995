"""Mathematical equivalence of final answers (extracted by o1jax/rewards/answers.py).

These functions do the work; they are meant to run inside the worker processes of
``o1jax.rewards.pool`` (time limit, memory limit, kill on timeout). Use ``o1jax.rewards.verify``
rather than calling ``is_equivalent`` on model text in the training process.
"""

from __future__ import annotations

import cmath
import functools
import random
import re

import sympy

from o1jax.rewards import latex
from o1jax.rewards.answers import (PLAIN_NUMBER, boxed_group, extract_answer, last_boxed,
                                   normalize)
from o1jax.rewards.parsing import ParseError, parse_expression

# The one precision rule for numbers: equal within a relative 1e-9, or, when one is a decimal
# written to DECIMALS places or more, equal once both are rounded to DECIMALS places
# (Math-Verify's float_rounding; so 0.333333 is 1/3, 1.999999 is not 2, 1/3000000 is not 0).
DECIMALS = 6


# ---------------------------------------------------------------------------- to sympy
def _split_top(s: str, sep: str = ",") -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def _scalar(s: str):
    """A scalar answer: expression, percentage, mixed number, or equation. Returns a list of
    acceptable sympy values (a percentage may mean p or p/100)."""
    s = s.strip()
    if not s:
        raise ParseError("empty")
    if "=" in s:
        sides = [p.strip() for p in s.split("=")]
        if len(sides) != 2 or not all(sides):
            raise ParseError("malformed equation")
        lhs, rhs = (parse_expression(p) for p in sides)
        out = []
        for var, other in ((lhs, rhs), (rhs, lhs)):  # x = 3 also means 3
            if var.is_Symbol and var not in other.free_symbols:
                out.append(other)
        return out + [("eq", lhs - rhs)]
    if s.endswith("%"):
        v = parse_expression(s[:-1])
        return [v, v / 100]
    m = re.fullmatch(r"(-?)(\d+)\s+\(?\(?(\d+)\)?/\(?(\d+)\)?\)?", s)  # mixed number 3 1/2
    if m:
        whole, num, den = int(m.group(2)), int(m.group(3)), int(m.group(4))
        if den == 0:
            raise ParseError("division by zero")
        v = sympy.Integer(whole) + sympy.Rational(num, den)
        return [-v if m.group(1) else v]
    return [parse_expression(s)]


def to_math(answer: str) -> tuple[str, list]:
    """('scalar', [values]) | ('tuple', [[values]...]) | ('set', [[values]...]) |
    ('interval', (left_bracket, [values], [values], right_bracket))."""
    s = normalize(answer)
    m = re.fullmatch(r"([\[(])(.*),(.*)([\])])", s)
    if m and len(_split_top(s[1:-1])) == 2 and s[0] + s[-1] in ("[)", "(]", "[]"):
        return "interval", (m.group(1), _scalar(m.group(2)), _scalar(m.group(3)), m.group(4))
    if s.startswith("{") and s.endswith("}"):
        return "set", [_scalar(p) for p in _split_top(s[1:-1])]
    inner = s[1:-1] if s[:1] in "([" and s[-1:] in ")]" else s
    parts = _split_top(inner)
    if len(parts) > 1:
        return "tuple", [_scalar(p) for p in parts]
    return "scalar", _scalar(s)


# ------------------------------------------------------------------------ equivalence
def _values_equal(a, b, rel_tol: float) -> bool:
    if isinstance(a, tuple) or isinstance(b, tuple):
        if not (isinstance(a, tuple) and isinstance(b, tuple)):
            return False
        da, db = a[1], b[1]   # equations: proportional differences
        if db == 0 or da == 0:
            return da == db
        ratio = sympy.simplify(da / db)
        return bool(ratio.is_number and ratio != 0)
    diff = a - b
    if diff == 0:
        return True
    if a.is_number and b.is_number:
        av, bv = complex(sympy.N(a, 30)), complex(sympy.N(b, 30))
        if not (cmath.isfinite(av) and cmath.isfinite(bv)):
            return False  # an overflow is never equal to anything
        rounded = (av.imag == bv.imag == 0 and (_long_decimal(a) or _long_decimal(b)) and
                   round(av.real, DECIMALS) == round(bv.real, DECIMALS))
        return abs(av - bv) <= rel_tol * max(abs(av), abs(bv)) or rounded
    free = sorted(diff.free_symbols, key=str)
    if sympy.simplify(diff) == 0:
        return True
    rng = random.Random(0)  # numeric probe at random points, for what simplify misses
    for _ in range(5):
        point = {s: sympy.Rational(rng.choice([-1, 1]) * rng.randint(1, 97), rng.randint(1, 13))
                 for s in free}
        try:
            val = complex(sympy.N(diff.subs(point), 20))
        except (TypeError, ValueError):
            return False
        if abs(val) > 1e-9 * max(1.0, abs(complex(sympy.N(b.subs(point), 20)))):
            return False
    return True


def _long_decimal(x) -> bool:
    """Whether x is a decimal written to DECIMALS places or more (a rational whose denominator
    is 2^a 5^b and at least 10^DECIMALS): the values the rounding rule applies to."""
    if not x.is_Rational:
        return False
    q = int(x.q)
    if q < 10 ** DECIMALS:
        return False
    for f in (2, 5):
        while q % f == 0:
            q //= f
    return q == 1


def _any_equal(cands_a: list, cands_b: list, rel_tol: float) -> bool:
    return any(_values_equal(a, b, rel_tol) for a in cands_a for b in cands_b)


def _ours(given: str, reference: str, rel_tol: float) -> bool | None:
    """Our own parser's verdict, or None when it cannot parse both answers."""
    try:
        ref_kind, ref = to_math(reference)
        kind, val = to_math(given)
    except ParseError:
        return None
    if kind == "scalar" and ref_kind == "scalar":
        return _any_equal(val, ref, rel_tol)
    if kind == "interval" or ref_kind == "interval":
        if kind != ref_kind:
            return False
        return (val[0] == ref[0] and val[3] == ref[3] and _any_equal(val[1], ref[1], rel_tol)
                and _any_equal(val[2], ref[2], rel_tol))
    if {kind, ref_kind} <= {"tuple", "set"}:
        if len(val) != len(ref):
            return False
        if "set" in (kind, ref_kind):
            unused = list(range(len(ref)))
            for v in val:
                hit = next((j for j in unused if _any_equal(v, ref[j], rel_tol)), None)
                if hit is None:
                    return False
                unused.remove(hit)
            return True
        return all(_any_equal(v, r, rel_tol) for v, r in zip(val, ref))
    return False


def _latex(given: str, reference: str) -> bool | None:
    """Math-Verify's verdict on the two answers as LaTeX, or None when either does not parse."""
    gold = latex.parse(reference)
    answer = latex.parse(given) if gold is not None else None
    return None if answer is None else latex.equal(gold, answer, DECIMALS)


_NAMED_LHS = re.compile(r"\s*(?:[A-Za-z](?:_\{?\w+\}?)?(?:\([^=()]*\))?|\|[A-Za-z]+\|)\s*=")


def _right_hand_values(answer: str) -> str:
    """``x_1 = 3`` -> ``3``, ``f(x) = 2x+1`` -> ``2x+1``, ``x = 5+5+1 = 11`` -> ``11``,
    ``y_1 = a, y_2 = b`` -> ``a, b``: the values of an answer written as named left sides equal
    to them (the last side of a chain), or the answer unchanged."""
    parts = _split_top(answer)
    if ";" in answer or not all(_NAMED_LHS.match(p) for p in parts):
        return answer
    values = [p.rsplit("=", 1)[1].strip() for p in parts]
    return ", ".join(values) if all(values) else answer


def _words(answer: str) -> str | None:
    """The answer when it is only letters and spaces after normalisation, else None."""
    try:
        s = normalize(answer)
    except ParseError:
        return None
    return s if re.fullmatch(r"[A-Za-z ]+", s) else None


def answers_equivalent(given: str, reference: str, rel_tol: float = 1e-9) -> bool:
    """Whether two answer strings are mathematically the same.

    Plain numbers are compared by our own parser (the synthetic tasks' fast path); words as
    words. Otherwise the answers are equal when our own parser or Math-Verify's LaTeX
    mathematics (``latex``: intervals, unions, sets, tuples, matrices, relations, ``\\pm``,
    symbolic expressions) finds them equal; each is sound on its own, and each reads forms the
    other misses (for one plain expression on each side, our parser's verdict stands alone).
    Named left sides (``x_1 =``, ``f(x) =``, a chain ``x = 5+5+1 = 11``) are dropped from one
    answer when the other has no ``=``. Numbers follow ``DECIMALS``; a one-element set equals
    its element (Math-Verify's rule). A reference neither can parse is matched only by the same
    normalised LaTeX text, never by a looser comparison."""
    if "=" not in reference:
        given = _right_hand_values(given)
    elif "=" not in given:
        reference = _right_hand_values(reference)
    if PLAIN_NUMBER.fullmatch(given) and PLAIN_NUMBER.fullmatch(reference):
        return _any_equal(_scalar(normalize(given)), _scalar(normalize(reference)), rel_tol)
    words = [_words(x) for x in (given, reference)]
    if all(words):
        if words[0].lower().split() == words[1].lower().split():
            return True
        if any(re.search(r"[A-Za-z]{3}", w) for w in words):
            return False  # different words; two-letter ones may still be products (xy, yx)
    parsed = False
    for method in (functools.partial(_ours, rel_tol=rel_tol), _latex):
        try:
            verdict = method(given, reference)
        except Exception:  # noqa: BLE001 - hostile text may upset sympy anywhere; not equal
            verdict = None
        if verdict:
            return True
        if verdict is False and not re.search(r"[\\{}$,;]", given + reference):
            return False  # one plain expression on each side: our parser read all there is
        parsed = parsed or verdict is not None
    if not parsed and latex.parse(reference) is None:
        try:
            to_math(reference)
        except ParseError:
            return latex_text(given) == latex_text(reference) != ""
    return False


def latex_text(s: str) -> str:
    """LaTeX with what does not change its meaning removed: whitespace, $, \\left/\\right,
    spacing commands, \\text{} / \\mathrm{} wrappers (their content kept)."""
    s = re.sub(r"\\(?:text|mathrm|textbf|mbox)\s*\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\left|\\right|\\[,;:! ]|\$|~", "", s)
    return re.sub(r"\s+", "", s)


def _candidates(response: str, reference: str) -> list[str]:
    """The answer to check, and when the response ends with several boxed answers written as
    one (``boxed_group``) and the reference has as many parts (``(1,2),(2,1)``, ``{1,2,3}``,
    ``k = 45, n = 2``), those joined."""
    answer = extract_answer(response, reference)
    out = [] if answer is None else [answer]
    boxed = boxed_group(response)
    parts = _split_top(re.sub(r"^\\?\{(.*)\\?\}$", r"\1", reference.strip()))
    if len(boxed) > 1 and len(parts) == len(boxed):
        out.append(", ".join(boxed))
    return out


def is_equivalent(response: str, reference: str) -> bool:
    """Extracts the final answer of ``response`` and compares it with ``reference`` (a reference
    stored with its \\boxed{} is read as its content, several boxes as one list). False when no
    answer can be extracted or compared. Run it in a worker (``o1jax.rewards.verify``)."""
    if last_boxed(reference):
        reference = ", ".join(boxed_group(reference))
    try:
        return any(answers_equivalent(a, reference) for a in _candidates(response, reference))
    except (ParseError, TypeError, ValueError, ZeroDivisionError, RecursionError,
            OverflowError, AttributeError, KeyError, IndexError, NotImplementedError,
            sympy.SympifyError):
        return False
