"""Synthetic slips for process verifiers: copies of the policy's own written searches, cut after
one line whose digit was changed, labelled by the task's replay like the samples themselves.

On Countdown written as a search the policy's commonest error is a slip (a wrong sum, check
value or copied state; docs/results.md), and a verifier must see many to learn to tell one; the
samples hold few. A copy keeps a sampled response up to a move line before its first invalid
line, changes one digit of that line to another and ends after it (unfinished, so its outcome is
0): its step ends before the slip keep their labels, the slip's own is the replay's. The text
after a slip is cut rather than kept because the kept lines would follow from the right value,
a tell that the policy's own slips (whose next lines follow from the wrong one) never show.
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np

from o1jax.search import strategies
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
    texts, prompts = [], []
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
        for _ in range(copies):
            texts.append(slip_line(text, *moves[int(rng.integers(len(moves)))], rng)
                         if moves else "")
        prompt = gen.tokens[r, :prompt_len][gen.mask[r, :prompt_len]]
        prompts += [prompt.tolist()] * copies
    tokens, mask = strategies.rows_of(
        prompts, [tokenizer.encode(t, add_special_tokens=False) for t in texts], prompt_len,
        tokenizer.pad_id)
    k = g * copies
    grouped = [texts[i * k:(i + 1) * k] for i in range(n)]
    zeros = np.zeros((n, k))
    return strategies.Generation(grouped, [[None] * k for _ in range(n)], tokens, mask, zeros,
                                 zeros.astype(bool), np.asarray(mask[:, prompt_len:].sum(
                                     axis=1)).reshape(n, k), gen.prompt_lengths, 0.0, 0.0)


def concat(a: Labelled, b: Labelled, pad_id: int) -> Labelled:
    """The rows of ``a`` then ``b`` (text rows, no images), right-padded to one width."""
    width = max(a.tokens.shape[1], b.tokens.shape[1])
    pad = lambda x, value: np.pad(x, ((0, 0), (0, width - x.shape[1])),  # noqa: E731
                                  constant_values=value)
    return Labelled(*(np.concatenate([pad(x, v), pad(y, v)]) for x, y, v in zip(
        a[:4], b[:4], (pad_id, False, 0.0, 0.0))))
