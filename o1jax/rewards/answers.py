"""The final answer of a response, and its plain-text normal form: the last ``\\boxed{}``
(or ``#### X``, "the answer is X", else the last number), LaTeX rewritten to plain text, units
and thousands separators dropped. Text in, text out: ``verifier.py`` parses the result."""

from __future__ import annotations

import re

from o1jax.rewards.parsing import ParseError

MAX_ANSWER_CHARS = 1000


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} or \\fbox{...}, nested braces included."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    if not starts:
        return None
    i = starts[-1]
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None  # unbalanced: no answer


_NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?(?:/\d+)?%?|-?\$?\.\d+%?"


def extract_answer(response: str) -> str | None:
    """The final answer of a response: the last \\boxed{}, else '#### X', else 'the answer is X',
    else the last number. None when there is nothing to extract."""
    boxed = last_boxed(response)
    if boxed is not None:
        return boxed.strip() or None
    m = list(re.finditer(r"####\s*([^\n]+)", response))
    if m:
        return m[-1].group(1).strip() or None
    m = list(re.finditer(r"answer is[:\s]*([^\n]+)", response, flags=re.IGNORECASE))
    if m:
        ans = m[-1].group(1).strip().rstrip(".").strip()
        return ans or None
    nums = re.findall(_NUMBER, response)
    return nums[-1] if nums else None


# -------------------------------------------------------------------------- normalisation
_UNIT_WORDS = (r"dollars?|cents?|percent|units?|meters?|metres?|cm|mm|km|kg|g|grams?|"
               r"inches|inch|feet|foot|ft|miles?|hours?|hrs?|minutes?|mins?|seconds?|secs?|days?|"
               r"weeks?|years?|months?|degrees?|sq|square|cubic|people|students|apples|points")
_LATEX_REPLACEMENTS = [
    (r"\{,\}", ","), (r"(?<=\d)\\,(?=\d{3})", ""),
    (r"\\left|\\right|\\big|\\Big|\\bigg|\\Bigg", ""),
    (r"\\[,;:! ]|~", " "), (r"\\quad|\\qquad", " "),
    (r"\\dfrac|\\tfrac", r"\\frac"), (r"\\cdot|\\times|\\ast", "*"), (r"\\div", "/"),
    (r"\\pi", " pi "), (r"\\infty", " oo "), (r"\\%|%", " % "), (r"\\\$|\$", ""),
    (r"\^\s*\{?\s*\\circ\s*\}?|°", ""), (r"\\lbrace|\\\{", "\x01"), (r"\\rbrace|\\\}", "\x02"),
    (r"\\le(?:q)?\b", "<="), (r"\\ge(?:q)?\b", ">="),
]


def _replace_braced(text: str, command: str, render) -> str:
    """Rewrites \\command{a}{b}... (``render`` receives the list of arguments)."""
    n_args = render.__code__.co_argcount
    out, i = [], 0
    pattern = re.compile(r"\\" + command + r"(?![A-Za-z])")
    while True:
        m = pattern.search(text, i)
        if not m:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:m.start()])
        j, args = m.end(), []
        for _ in range(n_args):
            while j < len(text) and text[j] == " ":
                j += 1
            if j < len(text) and text[j] == "{":
                depth, k = 1, j + 1
                while k < len(text) and depth:
                    depth += {"{": 1, "}": -1}.get(text[k], 0)
                    k += 1
                if depth:
                    raise ParseError(f"unbalanced braces after \\{command}")
                args.append(text[j + 1:k - 1])
                j = k
            elif j < len(text):  # \frac12 style single-character argument
                args.append(text[j])
                j += 1
            else:
                raise ParseError(f"missing argument of \\{command}")
        out.append(render(*args))
        i = j


def latex_to_plain(text: str) -> str:
    """LaTeX math to the plain syntax of ``parse_expression`` (no evaluation)."""
    for pat, rep in _LATEX_REPLACEMENTS:
        text = re.sub(pat, rep, text)
    text = _replace_braced(text, "text", lambda a: " " + a + " ")
    text = _replace_braced(text, "mathrm", lambda a: " " + a + " ")
    text = _replace_braced(text, "mbox", lambda a: " " + a + " ")
    # a mixed number: 3\frac{1}{2} -> 3 1/2
    text = re.sub(r"(\d+)\s*\\frac\s*\{(\d+)\}\s*\{(\d+)\}", r"\1 \2/\3", text)
    text = re.sub(r"\\sqrt\s*\[([^\[\]{}]+)\]\s*\{([^{}]*)\}", r"((\2)^(1/(\1)))", text)
    for _ in range(20):  # nested \frac and \sqrt, one level per pass
        before = text
        text = _replace_braced(text, "frac", lambda a, b: f"(({a})/({b}))")
        text = _replace_braced(text, "sqrt", lambda a: f"sqrt({a})")
        if text == before:
            break
    text = re.sub(r"\\(sin|cos|tan|log|ln|exp)\b", r" \1 ", text)
    text = text.replace("{", "(").replace("}", ")").replace("\x01", "{").replace("\x02", "}")
    if "\\" in text:
        raise ParseError(f"unsupported LaTeX in {text!r}")
    return text


def normalize(answer: str) -> str:
    """Strips what carries no mathematical meaning: $, units, thousands separators, trailing
    full stops, 'x =' prefixes are kept (equations are handled by ``to_math``)."""
    s = answer.strip()
    if len(s) > MAX_ANSWER_CHARS:
        raise ParseError("answer too long")
    s = latex_to_plain(s)
    s = re.sub(r"\b(?:" + _UNIT_WORDS + r")\b\.?", " ", s, flags=re.IGNORECASE)
    s = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s)  # 1,234,567 -> 1234567
    s = re.sub(r"\s+", " ", s).strip().rstrip(".").strip()
    return s
