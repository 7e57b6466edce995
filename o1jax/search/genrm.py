"""A generative verifier (GenRM, Zhang et al. 2024) for Countdown: a causal LM that checks a
boxed answer in writing, as a person would, and scores it by its probability of ending "Y".

On Countdown written as a search the policy's wrong answers are slips (a wrong sum, a goal
claimed that is not reached) and numbers it was not given (docs/results.md); the value models
trained on its samples rank them near chance within a problem, because telling them apart means
redoing the arithmetic. A GenRM is taught to redo it, by next-token prediction on synthetic
rows: random problems and answers, exactly labelled, as many as training wants. A row's prompt
is the question and the answer, each on its line; the check::

    19+ 8+ 2+      each number of the answer in order: "+" given and not used yet, "-" not
    8-2=6          each operation, innermost first (left to right among equals)
    19+6=25
    25 23 N        the value, the target, the verdict (Y: equal)

A number not given ends the check at once ("19+ 9- N"). A value that is not an integer is
written "x" and stays "x" (so an answer whose fractions cancel, which the answer checker
counts right, is checked N: Countdown's moves never make a fraction). Model output is hostile:
the answer is only ever tokens in the GenRM's prompt, and the GenRM's own text is only searched
for its verdict token; nothing is parsed or evaluated.
"""

from __future__ import annotations

import random
from fractions import Fraction
from typing import Sequence

import jax
import numpy as np

from o1jax import flops
from o1jax.data import search_tasks
from o1jax.data.prompts import PromptFormat, pad_prompts
from o1jax.rollout import SamplingConfig, make_sampler
from o1jax.tokenizer import Tokenizer

TASKS = ("countdown_search",)   # the problems a GenRM's synthetic rows are drawn like
FORMAT = PromptFormat(template="{question}\n")
MAX_ROW = 128            # tokens of a training row (prompt and check)
MAX_ANSWER = 40          # characters: longer answers are not checked (score 0)
MAX_CHECK = 48           # tokens the GenRM may write
PERTURB = 0.4            # the chance a synthetic answer uses a number it was not given
MATCH = (0.45, 0.2)      # the chance a synthetic problem's target is its answer's value, and
                         # that it is 1-5 away (the policy's false goals are near misses)


def _value_text(v: Fraction | None) -> str:
    return "x" if v is None or v.denominator != 1 else str(v.numerator)


def _apply(a: Fraction | None, op: str, b: Fraction | None) -> Fraction | None:
    if a is None or b is None or op == "/" and b == 0:
        return None
    return {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else None}[op]


def check_text(numbers: Sequence[int], target: int, leaves: Sequence[int],
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
            return " ".join(marks) + " N"
    values: list[Fraction | None] = [Fraction(n) for n in leaves]
    lines = [" ".join(marks)]
    for a, op, b in steps:
        values.append(_apply(values[a], op, values[b]))
        lines.append(f"{_value_text(values[a])}{op}{_value_text(values[b])}="
                     f"{_value_text(values[-1])}")
    value = _value_text(values[-1])
    lines.append(f"{value} {target} {'Y' if value == str(target) else 'N'}")
    return "\n".join(lines)


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
    """A verification row: {"question": the GenRM's prompt text, "solution": its check,
    "label": whether the check ends Y}, for a random Countdown problem of ``difficulty``
    (difficulty + 2 numbers from 1..20) and a random answer to it."""
    numbers = sorted(rng.randint(1, search_tasks.MAX_NUMBER) for _ in range(difficulty + 2))
    lo, hi = search_tasks.TARGETS
    target, r = rng.randint(lo, hi), rng.random()
    for _ in range(20 if r < sum(MATCH) else 1):   # an answer whose value can be the target
        text, leaves, steps = random_answer(numbers, rng)
        value = _evaluate(leaves, steps)
        if value is not None and value.denominator == 1 and lo <= value <= hi:
            break
    if r < sum(MATCH) and value is not None and value.denominator == 1:
        near = int(value) + (0 if r < MATCH[0] else rng.choice([-1, 1]) * rng.randint(1, 5))
        target = near if lo <= near <= hi else target
    question = f"Use {', '.join(map(str, numbers))} to make {target}"
    check = check_text(numbers, target, leaves, steps)
    return {"question": prompt_text(question, text), "solution": check,
            "label": check.endswith("Y")}


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


def _evaluate(leaves, steps) -> Fraction | None:
    values = [Fraction(n) for n in leaves]
    for a, op, b in steps:
        values.append(_apply(values[a], op, values[b]))
    return values[-1]


def prompt_text(question: str, answer: str) -> str:
    return f"{question}\n{answer}"


def scores(model, params, tokenizer: Tokenizer, questions: Sequence[str],
           answers: Sequence[Sequence[str | None]], batch: int = 256
           ) -> tuple[np.ndarray, np.ndarray]:
    """The GenRM's score of every answer and the FLOPs of its check (its prompt's prefill and
    the tokens it wrote), each [N, G]. It writes its check greedily; the score is its
    probability of "Y" where it writes its verdict (1 - that of "N"); 0, at no cost, for no
    answer or one over MAX_ANSWER characters; 0 for a check with no verdict."""
    n, g = len(answers), max((len(a) for a in answers), default=0)
    out, cost = np.zeros((n, g)), np.zeros((n, g))
    rows = [(i, j, tokenizer.encode(FORMAT.template.format(question=prompt_text(q, a))))
            for i, (q, row) in enumerate(zip(questions, answers)) for j, a in enumerate(row)
            if a is not None and len(a) <= MAX_ANSWER]
    if not rows:
        return out, cost
    width = max(len(r[2]) for r in rows)
    sampler = make_sampler(model, SamplingConfig(MAX_CHECK, greedy=True,
                                                 stop_ids=tokenizer.stop_ids,
                                                 pad_id=tokenizer.pad_id), gather=True)
    verdict = {tokenizer.encode("Y", add_special_tokens=False)[0]: True,
               tokenizer.encode("N", add_special_tokens=False)[0]: False}
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        chunk_ids = [r[2] for r in chunk]
        tokens, mask = pad_prompts(chunk_ids + [chunk_ids[-1]] * (batch - len(chunk)),
                                   tokenizer.pad_id, width)
        roll = sampler(params, tokens, mask, jax.random.key(0))
        toks, lp = np.asarray(roll.tokens), np.asarray(roll.logprobs)
        wrote, lengths = np.asarray(roll.response_mask), np.asarray(roll.lengths)
        for r, (i, j, ids) in enumerate(chunk):
            cost[i, j] = (flops.prefill_flops(model.cfg, len(ids)) +
                          flops.decode_flops(model.cfg, len(ids), int(lengths[r])))
            cols = [c for c in np.flatnonzero(wrote[r]) if int(toks[r, c]) in verdict]
            if cols:
                p = float(np.exp(lp[r, cols[-1]]))
                out[i, j] = p if verdict[int(toks[r, cols[-1]])] else 1.0 - p
    return out, cost
