"""Where a reasoning step ends: the one rule that beam search, MCTS, Math-Shepherd labels and
traces share.

A step ends at a token whose decoded text contains a newline, and a response's last token ends
its last step. The rule is on decoded text, not on the id of "\\n": a BPE vocabulary merges a
newline with the text around it (".\\n", "\\n\\n", "}\\n"), and a response written with such
tokens would otherwise never end a step.
"""

from __future__ import annotations

import functools
from typing import Collection, Sequence


@functools.lru_cache(maxsize=8)
def step_end_ids(tokenizer) -> tuple[int, ...]:
    """Ids of the tokens whose decoded text holds a newline, ascending (one pass over the
    vocabulary per tokenizer, cached): the stop ids of a sampler that writes one step."""
    return tuple(i for i in range(tokenizer.vocab_size) if "\n" in tokenizer.decode([i]))


def step_ends(response_ids: Sequence[int], end_ids: Collection[int]) -> list[int]:
    """Index in ``response_ids`` of each step's last token: every token of ``end_ids``
    (``step_end_ids``), and the response's last token ([] for an empty response)."""
    ends = [i for i, t in enumerate(response_ids) if t in end_ids]
    if len(response_ids) and (not ends or ends[-1] != len(response_ids) - 1):
        ends.append(len(response_ids) - 1)
    return ends
