"""The final answer of a response, and its plain-text normal form: the last ``\\boxed{}``
(or ``#### X``, "the answer is X", else the last number), LaTeX rewritten to plain text, units
and thousands separators dropped. Text in, text out: ``verifier.py`` parses the result."""

from __future__ import annotations

import re

from o1jax.rewards.parsing import ParseError

MAX_ANSWER_CHARS = 1000


def all_boxed(text: str) -> list[str | None]:
    """Contents of every \\boxed{...} or \\fbox{...}, in order, nested braces included;
    None for one whose braces never close."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    out: list[str | None] = [None] * len(starts)
    open_, depth, nxt = [], 0, 0   # open boxes: (index, depth outside it)
    for j, ch in enumerate(text):  # one pass: many unbalanced boxes stay linear
        if nxt < len(starts) and j == starts[nxt] - 1:
            open_.append((nxt, depth))
            nxt += 1
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if open_ and open_[-1][1] == depth:
                k = open_.pop()[0]
                out[k] = text[starts[k]:j]
    return out


_CONNECTOR = re.compile(r"(?:\s|,|;|\band\b|\bor\b|\\quad|\\qquad|\\text\{\s*(?:and|or|,)?\s*\}|"
                        r"\$|\\[()\[\]])*")


def boxed_group(text: str) -> list[str]:
    """The last run of boxed answers written as one answer ("\\boxed{1} and \\boxed{2}",
    "\\boxed{(2,2)} \\quad \\boxed{(6,2)}"): boxes separated only by commas, "and", "or",
    spacing or math delimiters. One element when the last box stands alone."""
    spans = [(m.start(), m.end()) for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    contents = all_boxed(text)
    if not contents or contents[-1] is None:
        return []
    group = [contents[-1]]
    for k in range(len(spans) - 2, -1, -1):
        if contents[k] is None:
            break
        between = text[spans[k][1] + len(contents[k]) + 1:spans[k + 1][0]]
        if not _CONNECTOR.fullmatch(between):
            break
        group.insert(0, contents[k])
    return group


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} or \\fbox{...} (None if it is unbalanced)."""
    boxed = all_boxed(text)
    return boxed[-1] if boxed else None


# inline or display math: $$..$$, $..$, \[..\], \(..\)
_MATH = re.compile(r"\$\$(.+?)\$\$|(?<!\\)\$(.+?)(?<!\\)\$|\\\[(.+?)\\\]|\\\((.+?)\\\)",
                   re.DOTALL)
_FINAL = re.compile(r"(?:final answer|the answer)\s*(?:is|:)[:\s]*", re.IGNORECASE)
# a number that stands alone: not inside a word or a power, nor an argument of a LaTeX command
_LONE_NUMBER = re.compile(r"(?<![\w.^/\\])-?\$?\d+(?:(?:,| (?=\d{3}(?![\d/])))\d{3})*"
                          r"(?:\.\d+)?(?:/\d+)?%?(?![\w^/]|\.\d)")
_OPENS_ARGUMENT = re.compile(r"(?:\\[A-Za-z]+\s*|[}^_])$")   # \frac{, }{, ^{, _{
# a reference that is a plain number (integer, decimal, fraction a/b, percentage)
PLAIN_NUMBER = re.compile(r"\s*-?\$?\d+(?:,\d{3}| \d{3}(?![\d/]))*(?:\.\d+)?(?:/\d+)?\s*"
                          r"(?:\\?%)?\s*")


_BARE_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")  # a word, not a \command's name


def _math_content(m: re.Match) -> str:
    return next(g for g in m.groups() if g is not None).strip()


def _is_prose(content: str) -> bool:
    """Text between two dollar amounts ("$5 and $7"), not math: it starts with a digit and has
    a bare word of 3+ letters outside \\text{} and the like."""
    content = re.sub(r"\\(?:text|mathrm|textbf|mbox|operatorname)\s*\{[^{}]*\}", "", content)
    return bool(re.match(r"\s*\d", content) and
                _BARE_WORD.search(content))


def _maths(text: str) -> list[re.Match]:
    return [m for m in _MATH.finditer(text) if not _is_prose(_math_content(m))]


def extract_answer(response: str, reference: str | None = None) -> str | None:
    """The final answer of a response, in the order the field uses: the last \\boxed{} (or
    \\fbox{}); else GSM8K's '#### X'; else what follows 'final answer is' / 'the answer is' (the
    math right after it, or that sentence's last number or math, or the sentence); else the last
    inline or display math ($...$, \\(...\\), \\[...\\]) or, when ``reference`` is a plain
    number (or not given), the last number standing alone if it comes later (never digits out
    of a word, a LaTeX group or a power); else the whole response when it is one short
    expression. None when there is nothing to extract."""
    boxed = last_boxed(response)
    if boxed is not None:
        return boxed.strip() or None
    m = list(re.finditer(r"####\s*([^\n]+)", response))
    if m:
        return m[-1].group(1).strip() or None
    numeric = reference is None or PLAIN_NUMBER.fullmatch(reference) is not None
    m = list(_FINAL.finditer(response))
    if m:
        tail = response[m[-1].end():]
        math = _MATH.match(tail)
        if math and not _is_prose(_math_content(math)):
            return _math_content(math) or None
        sentence = re.match(r"(.+?)(?:\.(?!\d)|\n|$)", tail)
        if sentence and sentence.group(1).strip():
            return _last_candidate(sentence.group(1), numeric) or sentence.group(1).strip()
    found = _last_candidate(response, numeric)
    if found is not None:
        return found
    bare = response.strip()
    if 0 < len(bare) <= 200 and not _BARE_WORD.search(bare):
        return bare
    return None


def _last_candidate(text: str, numeric: bool) -> str | None:
    """The last math in ``text``, or its last lone number when ``numeric`` and that comes later."""
    maths = _maths(text)
    nums = _LONE_NUMBER.finditer(text) if numeric else ()
    num = next((m for m in reversed(list(nums)) if not _in_argument(text, m.start())), None)
    if num and (not maths or num.start() >= maths[-1].end()):
        return num.group()
    return _math_content(maths[-1]) or None if maths else None


def _in_argument(text: str, i: int) -> bool:
    """Whether position ``i`` lies inside the braces of a LaTeX command's argument."""
    j = text.rfind("{", 0, i)
    return j >= 0 and text.rfind("}", j, i) < 0 and bool(
        _OPENS_ARGUMENT.search(text, max(0, j - 40), j))


# -------------------------------------------------------------------------- normalisation
_UNIT_WORDS = (r"dollars?|cents?|units?|meters?|metres?|cm|mm|km|kg|g|grams?|"
               r"inches|inch|feet|foot|ft|miles?|hours?|hrs?|minutes?|mins?|seconds?|secs?|days?|"
               r"weeks?|years?|months?|degrees?|sq|square|cubic|people|students|apples|points")
_LATEX_REPLACEMENTS = [
    (r"\{,\}", ","), (r"(?<=\d)\\,(?=\d{3})", ""),
    (r"\\left|\\right|\\big|\\Big|\\bigg|\\Bigg", ""),
    (r"\\!", ""), (r"\\[,;: ]|~", " "), (r"\\quad|\\qquad", " "),
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
    s = re.sub(r"\s*\b(?:percent(?:age)?|pct)\b", "%", s, flags=re.IGNORECASE)
    s = re.sub(r"\b(?:" + _UNIT_WORDS + r")\b\.?", " ", s, flags=re.IGNORECASE)
    # 1,234,567 and 1 234 567 -> 1234567 (not the mixed number 2 100/101)
    s = re.sub(r"(?<=\d)(?:,(?=\d{3}(?!\d))| (?=\d{3}(?![\d/])))", "", s)
    s = re.sub(r"\s+", " ", s).strip().rstrip(".").strip()
    return s
