"""Synthetic training rows for verifiers, made from the policy's own samples and labelled
exactly (the task's replay, the answer checker): slips and answer swaps.

Slips (process verifiers). On Countdown written as a search the policy's commonest error is a
slip (a wrong sum, check value or copied state; docs/results.md), and a verifier must see many
to learn to tell one; the samples hold few. A copy keeps a sampled response up to a move line
before its first invalid line, changes one digit of that line to another and ends after it
(unfinished, so its outcome is 0): its step ends before the slip keep their labels, the slip's
own is the replay's. The text after a slip is cut rather than kept because the kept lines would
follow from the right value, a tell that the policy's own slips (whose next lines follow from
the wrong one) never show.

Answer swaps (outcome verifiers). A sample's search and its answer are correlated with the
outcome in ways a verifier can fit without checking the answer (the policy writes the same
search for a problem and boxes a right or wrong expression at the end); a copy of a sample with
its final answer replaced by another sample's answer to the same problem, one of the other
outcome where the problem has one, differs only in what checking the answer sees: the
generation-verification gap a verifier must use.
"""

from __future__ import annotations

import json
import re
from typing import Sequence

import jax
import numpy as np

from o1jax.rewards.answers import last_boxed
from o1jax.search import strategies, value_training
from o1jax.search.value_training import REPLAYS, Labelled
from o1jax.tokenizer import Tokenizer


def slip_line(text: str, start: int, end: int, rng: np.random.Generator) -> str:
    """``text`` up to ``end`` (a line's end) with one digit of text[start:end] changed to
    another digit, chosen uniformly, then a newline."""
    digits = [i for i in range(start, end) if text[i].isdigit()]
    if not digits:
        raise ValueError(f"line {text[start:end]!r} has no digit to change")
    i = int(rng.choice(digits))
    new = str(rng.choice([d for d in "0123456789" if d != text[i]]))
    return text[:i] + new + text[i + 1:end] + "\n"


def slipped_generation(examples: Sequence[dict], tokenizer: Tokenizer,
                       gen: strategies.Generation, prompt_len: int, copies: int, seed: int = 0
                       ) -> strategies.Generation:
    """``copies`` slipped copies of each of ``gen``'s responses (``examples``: their problems,
    G = gen.correct.shape[1] each, tasks in ``REPLAYS``), as a Generation of G * copies rows per
    problem (a problem's copies of its first response, then of its second, ...): each copy a
    move line of the response's valid prefix, drawn uniformly, with one digit changed
    (``slip_line``), everything after it cut; outcome 0, unfinished. A response with no valid
    move line gets empty copies (no step end, so no label)."""
    rng = np.random.default_rng(seed)
    n, g = gen.correct.shape
    texts = []
    for r in range(n * g):
        example, text = examples[r // g], gen.texts[r // g][r % g]
        lines = REPLAYS[example["task"]](json.loads(example["meta"]), text)
        starts = [0] + [s.end + 1 for s in lines[:-1]]
        moves = []
        for step, start in zip(lines, starts):
            if not step.valid:
                break
            if step.kind == "move":
                moves.append((start, step.end))
        texts += [slip_line(text, *moves[int(rng.integers(len(moves)))], rng) if moves else ""
                  for _ in range(copies)]
    return _copies(gen, tokenizer, prompt_len, texts, np.zeros(len(texts)),
                   np.zeros(len(texts), bool))


def _copies(gen: strategies.Generation, tokenizer: Tokenizer, prompt_len: int,
            texts: list[str], correct: np.ndarray, finished: np.ndarray
            ) -> strategies.Generation:
    """A Generation of ``texts`` (K copies of each of ``gen``'s rows, in its order) after the
    prompts of the rows they copy; a finished copy ends with a stop token as sampled ones do."""
    n, g = gen.correct.shape
    k = len(texts) // n
    prompts = [gen.tokens[r, :prompt_len][gen.mask[r, :prompt_len]].tolist()
               for r in range(n * g) for _ in range(k // g)]
    tokens, mask = strategies.rows_of(
        prompts, [tokenizer.encode(t, add_special_tokens=False) + list(tokenizer.stop_ids[:int(
            done)]) if t else [] for t, done in zip(texts, finished)], prompt_len,
        tokenizer.pad_id)
    return strategies.Generation(
        [texts[i * k:(i + 1) * k] for i in range(n)], [[None] * k for _ in range(n)], tokens,
        mask, np.asarray(correct, np.float64).reshape(n, k), np.asarray(finished).reshape(n, k),
        np.asarray(mask[:, prompt_len:].sum(axis=1)).reshape(n, k), gen.prompt_lengths, 0.0,
        0.0)


def concat(a: Labelled, b: Labelled, pad_id: int) -> Labelled:
    """The rows of ``a`` then ``b`` (text rows: ValueError for rows with images, which it
    would drop), right-padded to one width."""
    if a.images is not None or b.images is not None:
        raise ValueError("synthetic rows are text rows; these carry images")
    width = max(a.tokens.shape[1], b.tokens.shape[1])
    pad = lambda x, value: np.pad(x, ((0, 0), (0, width - x.shape[1])),  # noqa: E731
                                  constant_values=value)
    return Labelled(*(np.concatenate([pad(x, v), pad(y, v)]) for x, y, v in zip(
        a[:4], b[:4], (pad_id, False, 0.0, 0.0))))


def _last_box_span(text: str) -> tuple[int, int] | None:
    """[start, end) of the last ``\\boxed{...}``'s content, None without a closed one."""
    starts = [m.end() for m in re.finditer(r"\\boxed\{", text)]
    content = last_boxed(text)
    if not starts or content is None or text[starts[-1]:starts[-1] + len(content)] != content:
        return None
    return starts[-1], starts[-1] + len(content)


def answer_swaps(examples: Sequence[dict], tokenizer: Tokenizer, gen: strategies.Generation,
                 prompt_len: int, copies: int, seed: int = 0) -> strategies.Generation:
    """``copies`` copies of each of ``gen``'s finished responses with a boxed answer
    (``examples``: their problems, G each), the last ``\\boxed{...}`` content replaced by
    another answer sampled for the same problem, drawn among those of the other outcome when
    there are any, else among the other answers; verified again by the answer checker. A
    Generation of G * copies rows per problem (as ``slipped_generation``); a response with no
    box, or a problem with one distinct answer, gets empty copies."""
    rng = np.random.default_rng(seed)
    n, g = gen.correct.shape
    texts, finished = [], []
    for r in range(n * g):
        i, j = divmod(r, g)
        text = gen.texts[i][j]
        span = _last_box_span(text) if gen.finished[i, j] else None
        own = gen.answers[i][j]
        others = {(a, c) for a, c in zip(gen.answers[i], gen.correct[i]) if a and a != own}
        other_outcome = [a for a, c in sorted(others) if c != gen.correct[i, j]]
        pool = other_outcome or sorted(a for a, _ in others)
        for _ in range(copies):
            ok = span is not None and pool
            texts.append(text[:span[0]] + pool[int(rng.integers(len(pool)))] + text[span[1]:]
                         if ok else "")
            finished.append(bool(ok))
    correct = strategies.verify(texts, [e for e in examples for _ in range(g * copies)],
                                finished)
    return _copies(gen, tokenizer, prompt_len, texts, correct, np.asarray(finished))


def labelled_rows(examples: Sequence[dict], tokenizer: Tokenizer, gen: strategies.Generation,
                  prompt_len: int, problems: np.ndarray, *, slips: int = 0, swaps: int = 0,
                  rule: str = "exact", seed: int = 0) -> Labelled | None:
    """The synthetic rows train_verifier adds, of the problems where ``problems`` [N] is True:
    ``slips`` slipped copies per sample (labelled by ``exact_labels`` with ``rule``), ``swaps``
    answer swaps per sample (``orm_labels``); None when both are 0."""
    parts = []
    g = gen.correct.shape[1]
    if slips:
        made = slipped_generation(examples, tokenizer, gen, prompt_len, slips, seed)
        parts.append(jax.tree.map(lambda x: x[np.repeat(problems, g * slips)],
                                  value_training.exact_labels(examples, tokenizer, made,
                                                              prompt_len, rule)))
    if swaps:
        made = answer_swaps(examples, tokenizer, gen, prompt_len, swaps, seed + 1)
        parts.append(jax.tree.map(lambda x: x[np.repeat(problems, g * swaps)],
                                  value_training.orm_labels(made, prompt_len)))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else concat(*parts, pad_id=tokenizer.pad_id)
