"""A generative verifier (GenRM, Zhang et al. 2024) for Countdown: a causal LM that works out a
boxed answer's value in writing, as a person would, and scores the answer by its probability
that the value is the target.

On Countdown written as a search the policy's wrong answers are slips (a wrong sum, a goal
claimed that is not reached) and numbers it was not given (docs/results.md); the value models
trained on its samples rank them near chance within a problem, because telling them apart means
redoing the arithmetic. A GenRM is taught to redo it, by next-token prediction on synthetic
rows: random numbers and answers over them, exactly worked out, as many as training wants. A
row's prompt is the numbers and the answer, each on its line (the target is not shown: a
first version that showed it learnt to write the arithmetic that reaches it); the check::

    19+ 8+ 2+      each number of the answer in order: "+" given and not used yet, "-" not
    8-2=6          each operation, innermost first (left to right among equals)
    19+6=25
    =25            the value

A number not given ends the check at once ("19+ 9-" then "=x"). A value that is not an integer
is written "x" and stays "x" (so an answer whose fractions cancel, which the answer checker
counts right, gets value x: Countdown's moves never make a fraction). The score is the
probability of the target, then the end, after the check's last "=" (``scores``). Model output
is hostile: the answer is only ever tokens in the GenRM's prompt, and the GenRM's own text is
only searched for its last "=" token; nothing is parsed or evaluated.
"""

from __future__ import annotations

import functools
import random
import re
from fractions import Fraction
from typing import Sequence

import jax
import numpy as np

from o1jax import flops
from o1jax.data import search_tasks
from o1jax.data.prompts import PromptFormat, pad_prompts, prompt_ids
from o1jax.rollout import SamplingConfig, gathering_sampler
from o1jax.rollout.scoring import token_logprobs
from o1jax.tokenizer import Tokenizer

TASKS = ("countdown_search",)   # the problems a GenRM's synthetic rows are drawn like
FORMAT = PromptFormat(template="{question}\n")
MAX_ROW = 128            # tokens of a training row (prompt and check)
MAX_ANSWER = 40          # characters: longer answers are not checked (score 0); with the
                         # numbers, a prompt stays under MAX_ROW - MAX_CHECK tokens
MAX_CHECK = 48           # tokens the GenRM may write
PERTURB = 0.4            # the chance a synthetic answer uses a number it was not given


def _value_text(v: Fraction | None) -> str:
    return "x" if v is None or v.denominator != 1 else str(v.numerator)


def _apply(a: Fraction | None, op: str, b: Fraction | None) -> Fraction | None:
    if a is None or b is None or op == "/" and b == 0:
        return None
    return a + b if op == "+" else a - b if op == "-" else a * b if op == "*" else a / b


def check_text(numbers: Sequence[int], leaves: Sequence[int],
               steps: Sequence[tuple[int, str, int]]) -> str:
    """The check of an answer (see the module docstring): ``leaves`` its numbers in written
    order, ``steps`` its operations innermost first, each (left, op, right) with operands
    indices into the values so far (leaves, then each step's result in turn)."""
    pool, marks = list(numbers), []
    for n in leaves:
        ok = n in pool
        if ok:
            pool.remove(n)
        marks.append(f"{n}{'+' if ok else '-'}")
        if not ok:
            return " ".join(marks) + "\n=x"
    values: list[Fraction | None] = [Fraction(n) for n in leaves]
    lines = [" ".join(marks)]
    for a, op, b in steps:
        values.append(_apply(values[a], op, values[b]))
        lines.append(f"{_value_text(values[a])}{op}{_value_text(values[b])}="
                     f"{_value_text(values[-1])}")
    return "\n".join(lines + [f"={_value_text(values[-1])}"])


def random_answer(numbers: Sequence[int], rng: random.Random
                  ) -> tuple[str, list[int], list[tuple[int, str, int]]]:
    """An answer as the policy writes one (``search_tasks``'s moves: two numbers at a time,
    the larger first, sub-expressions in parentheses) over some of ``numbers``, sometimes with
    a number it was not given: (text, leaves in written order, steps as ``check_text``)."""
    k = len(numbers) if rng.random() < 0.8 else rng.randint(2, len(numbers))
    used = rng.sample(list(numbers), k)
    if rng.random() < PERTURB:
        used[rng.randrange(k)] = rng.randint(1, search_tasks.MAX_NUMBER)
    items = [(Fraction(n), str(n), [n]) for n in used]       # value, text, leaves
    while len(items) > 1:
        i, j = rng.sample(range(len(items)), 2)
        a, b = items[i], items[j]
        if (a[0] is not None and b[0] is not None and a[0] < b[0]) and rng.random() < 0.9:
            a, b = b, a
        op = rng.choice(search_tasks.OPS)
        items = [it for m, it in enumerate(items) if m not in (i, j)]
        items.append((_apply(a[0], op, b[0]), search_tasks._compose(a[1], op, b[1]),
                      a[2] + b[2]))
    text, leaves = items[0][1], items[0][2]
    return text, leaves, _steps_of(text, leaves)


def _steps_of(text: str, leaves: Sequence[int]) -> list[tuple[int, str, int]]:
    """The operations of a well-formed ``text`` written by ``random_answer`` (numbers, + - * /,
    parentheses), innermost first, as ``check_text`` wants them."""
    pos, k = 0, [len(leaves)]
    steps: list[tuple[int, str, int]] = []
    leaf = iter(range(len(leaves)))

    def operand() -> int:
        nonlocal pos
        if text[pos] == "(":
            pos += 1
            out = expr()
            pos += 1                                    # ")"
            return out
        while pos < len(text) and text[pos].isdigit():
            pos += 1
        return next(leaf)

    def expr() -> int:
        nonlocal pos
        left = operand()
        while pos < len(text) and text[pos] in search_tasks.OPS:
            op = text[pos]
            pos += 1
            right = operand()
            steps.append((left, op, right))
            left, k[0] = k[0], k[0] + 1
        return left

    expr()
    return steps


def synthetic_example(rng: random.Random, difficulty: int) -> dict:
    """A check row: {"question": the GenRM's prompt text, "solution": its check, "value": the
    value it ends with}, for random numbers of a Countdown problem of ``difficulty``
    (difficulty + 2 numbers from 1..20) and a random answer over them."""
    numbers = sorted(rng.randint(1, search_tasks.MAX_NUMBER) for _ in range(difficulty + 2))
    text, leaves, steps = random_answer(numbers, rng)
    check = check_text(numbers, leaves, steps)
    return {"question": prompt_text(numbers_text(numbers), text), "solution": check,
            "value": check.rsplit("=", 1)[1]}


def synthetic_batch(rng: random.Random, size: int, difficulty: int, hard: float) -> list[dict]:
    """``size`` rows of ``synthetic_example``, a ``hard`` share of them one level above
    ``difficulty`` (so that the GenRM also checks the hard split's answers)."""
    return [synthetic_example(rng, difficulty + (rng.random() < hard)) for _ in range(size)]


def check_tasks(examples: Sequence[dict]) -> None:
    """ValueError unless every example is of a task the GenRM checks (TASKS)."""
    other = sorted({e.get("task") for e in examples} - set(TASKS), key=str)
    if other:
        raise ValueError(f"--verifier genrm checks {', '.join(TASKS)} answers, not "
                         f"{', '.join(map(str, other))}: use orm:PATH, prm:PATH or confidence")


def check_model(cfg) -> None:
    """ValueError unless a GenRM of shapes ``cfg`` (a ModelConfig) holds its rows: MAX_ROW
    tokens to train on, and when scoring a question with an answer of up to MAX_ANSWER
    characters followed by a check of MAX_CHECK tokens (under MAX_ROW in all)."""
    if cfg.max_seq_len < MAX_ROW:
        raise ValueError(f"a GenRM's rows take up to {MAX_ROW} tokens, and the policy's "
                         f"max_seq_len (which a verifier keeps) is {cfg.max_seq_len}: use "
                         "orm:PATH or prm:PATH for this policy")


def numbers_text(numbers: Sequence[int]) -> str:
    return f"Use {', '.join(map(str, numbers))}"


def prompt_text(numbers: str, answer: str) -> str:
    return f"{numbers}\n{answer}"


_QUESTION = re.compile(r"(Use [\d, ]{1,80}) to make (\d{1,6})")


@functools.partial(jax.jit, static_argnums=0)
def _logprobs(model, params, tokens, mask):
    return token_logprobs(model, params, tokens, mask)[0]


def scores(model, params, tokenizer: Tokenizer, questions: Sequence[str],
           answers: Sequence[Sequence[str | None]], batch: int = 256
           ) -> tuple[np.ndarray, np.ndarray]:
    """The GenRM's score of every answer and the FLOPs it spent, each [N, G]. It writes its
    check greedily (``questions``: Countdown's "Use A, B, C to make T", whose numbers it is
    shown, not T); the score is its probability of T, then the end, after the check's last
    line's "=", read by one more forward pass; the cost its prefill, the tokens it wrote and
    that pass. 0, at no cost, for no answer, one over MAX_ANSWER characters or a prompt over
    MAX_ROW - MAX_CHECK tokens; 0 for a check with no value line (or none within MAX_ROW)."""
    n, g = len(answers), max((len(a) for a in answers), default=0)
    out, cost = np.zeros((n, g)), np.zeros((n, g))
    rows = []
    for i, (question, row) in enumerate(zip(questions, answers)):
        m = _QUESTION.fullmatch(question)
        if m is None:
            raise ValueError(f"a GenRM checks Countdown answers; {question[:60]!r} is not "
                             "'Use A, B, ... to make T'")
        for j, a in enumerate(row):
            ids = [] if a is None or len(a) > MAX_ANSWER else prompt_ids(
                {"question": prompt_text(m.group(1), a)}, tokenizer, FORMAT)
            if 0 < len(ids) <= MAX_ROW - MAX_CHECK:
                rows.append((i, j, ids, m.group(2)))
    sampler = gathering_sampler(model, SamplingConfig(MAX_CHECK, greedy=True,
                                                      stop_ids=tokenizer.stop_ids,
                                                      pad_id=tokenizer.pad_id))
    eq, nl = (tokenizer.encode(c, add_special_tokens=False)[0] for c in "=\n")
    valued = []    # (i, j, the prompt and check up to its value, the target and the end)
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        tokens, mask = pad_prompts([r[2] for r in chunk], tokenizer.pad_id,
                                   MAX_ROW - MAX_CHECK, batch)
        roll = sampler(params, tokens, mask, jax.random.key(0))
        toks, wrote = np.asarray(roll.tokens), np.asarray(roll.response_mask)
        for r, (i, j, prompt, target) in enumerate(chunk):
            check = toks[r][wrote[r]].tolist()
            cost[i, j] = (flops.prefill_flops(model.cfg, len(prompt)) +
                          flops.decode_flops(model.cfg, len(prompt), len(check)))
            ends = [k for k in range(1, len(check)) if check[k] == eq and check[k - 1] == nl]
            pre = prompt + check[:ends[-1] + 1] if ends else []
            cont = tokenizer.encode(target, add_special_tokens=False) + [tokenizer.stop_ids[0]]
            if pre and len(pre) + len(cont) <= MAX_ROW:
                valued.append((i, j, pre, cont))
    for start in range(0, len(valued), batch):
        chunk = valued[start:start + batch]
        tokens, mask = pad_prompts([pre + cont for _, _, pre, cont in chunk], tokenizer.pad_id,
                                   MAX_ROW, batch)
        lp = np.asarray(_logprobs(model, params, tokens, mask))
        for r, (i, j, pre, cont) in enumerate(chunk):
            out[i, j] = float(np.exp(lp[r, MAX_ROW - len(cont):].sum()))
            cost[i, j] += flops.prefill_flops(model.cfg, len(pre) + len(cont))
    return out, cost
