"""LaTeX answers as mathematics: parsed by latex2sympy2 through Math-Verify's LaTeX extraction
and normalisation, made safe, and compared with Math-Verify's ``verify``.

Only the LaTeX path is used. Math-Verify's expression path hands text to sympy's ``parse_expr``
(which evaluates Python) and is never called here; plain numbers and expressions go through our
own parser (o1jax/rewards/parsing.py). latex2sympy2 turns arbitrary text inside ``\\text{}``,
``\\hat{}`` etc. into sympy symbol names, and sympy generates Python code from symbol names in
some numeric evaluations (``lambdify`` in infinite sums): every parsed object is rejected unless
each symbol and function name is made of letters, digits and ``_{}\\,+-`` only (no spaces,
parentheses, dots or quotes: nothing that could form a call), before anything evaluates it.
Math-Verify's own SIGALRM timeouts are switched off: the caller's worker pool (time and memory
limits, kill on timeout) bounds every check.
"""

from __future__ import annotations

import logging
import re

import math_verify
import sympy
from sympy.core.function import AppliedUndef

_SAFE_NAME = re.compile(r"[A-Za-z0-9_{}\\,+-]*")
_CODE = re.compile(r"__|\"|`|'[A-Za-z_ ]+'")  # dunder names, string literals: code, not math
_CONFIG = [math_verify.LatexExtractionConfig(boxed_match_priority=0)]
logging.getLogger("math_verify").setLevel(logging.ERROR)  # its "timeout disabled" warning


def _safe(obj) -> bool:
    """Whether a parsed object is a sympy object (or plain string) whose every symbol and
    undefined-function name is harmless as an identifier."""
    if isinstance(obj, str):
        return True
    if not isinstance(obj, (sympy.Basic, sympy.MatrixBase)):
        return False
    names = [s.name for s in obj.atoms(sympy.Symbol)]
    names += [f.func.__name__ for f in obj.atoms(AppliedUndef)]
    return all(_SAFE_NAME.fullmatch(n) for n in names)


def parse(answer: str) -> list | None:
    """The answer (bare LaTeX, no delimiters) as Math-Verify's parse result, or None when it
    does not parse, looks like code, or is unsafe."""
    if _CODE.search(answer):
        return None
    parsed = math_verify.parse(f"${answer}$", extraction_config=_CONFIG, parsing_timeout=None)
    if not parsed or not all(_safe(p) for p in parsed):
        return None
    return parsed


def equal(gold: list, answer: list, decimals: int) -> bool:
    """Math-Verify's verdict on two ``parse`` results (gold first), numbers compared after
    rounding to ``decimals`` places."""
    return bool(math_verify.verify(gold, answer, float_rounding=decimals, timeout_seconds=None))
