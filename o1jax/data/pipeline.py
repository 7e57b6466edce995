"""Input pipeline: a random-access TFDS data source -> seeded, resumable, per-process batches of
left-padded prompt tokens.

The position is two integers (epoch, index into that epoch's permutation), saved in checkpoints
with ``state()`` and restored with ``restore()``; the permutation of an epoch is a pure function
of (seed, epoch), so a restored pipeline yields exactly the batches it would have.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from o1jax.data.prompts import PromptFormat, fit, pad_prompts, prompt_ids, stack_images
from o1jax.tokenizer import Tokenizer


def decode_example(ex: dict) -> dict:
    """A data source's example: text fields as str, an image stored flat in its own shape."""
    ex = {k: v.decode() if isinstance(v, bytes) else v for k, v in ex.items()}
    if "image_shape" in ex:
        ex["image"] = np.asarray(ex["image"]).reshape(tuple(ex.pop("image_shape")))
    return ex


@dataclasses.dataclass
class Batch:
    """One process's share of a global batch. tokens, mask: [b, P]; indices: [b] dataset rows;
    images: [b, S, S, 3] uint8 or ``Patches`` (a vision policy's prompts) or None."""
    tokens: np.ndarray
    mask: np.ndarray
    indices: np.ndarray
    examples: list[dict]
    images: np.ndarray | None = None


class PromptPipeline:
    """Seeded, resumable batches of prompts from a random-access source (``len`` and ``[i]``).

    Each process reads only its own ``global_batch // process_count`` rows of every batch.
    """

    def __init__(self, source: Any, tokenizer: Tokenizer, global_batch: int,
                 fmt: PromptFormat, seed: int = 0, process_index: int = 0,
                 process_count: int = 1):
        if global_batch % process_count:
            raise ValueError(f"global batch {global_batch} is not divisible by the "
                             f"{process_count} processes")
        if len(source) < global_batch:
            raise ValueError(f"dataset has {len(source)} examples, fewer than one batch "
                             f"({global_batch})")
        if fmt.max_prompt_len is None:
            raise ValueError("a prompt pipeline needs the format's max_prompt_len")
        self.source, self.tokenizer, self.fmt = source, tokenizer, fmt
        self.global_batch, self.seed = global_batch, seed
        self.process_index, self.process_count = process_index, process_count
        self.epoch, self.index = 0, 0
        self._perm_epoch, self._perm = -1, None
        self.truncated_prompts = 0  # prompts cut to fmt.max_prompt_len tokens

    # ---- position
    def state(self) -> dict:
        return {"epoch": self.epoch, "index": self.index, "seed": self.seed}

    def restore(self, state: dict) -> None:
        if int(state["seed"]) != self.seed:
            raise ValueError(f"checkpointed pipeline seed {state['seed']} != config seed "
                             f"{self.seed}")
        self.epoch, self.index = int(state["epoch"]), int(state["index"])

    def _permutation(self) -> np.ndarray:
        if self._perm_epoch != self.epoch:
            rng = np.random.default_rng([self.seed, self.epoch])
            self._perm, self._perm_epoch = rng.permutation(len(self.source)), self.epoch
        return self._perm

    # ---- batches
    def next_indices(self) -> np.ndarray:
        """Dataset rows of the next global batch (every process computes the same ones);
        an epoch's incomplete last batch is dropped."""
        if self.index + self.global_batch > len(self.source):
            self.epoch, self.index = self.epoch + 1, 0
        rows = self._permutation()[self.index:self.index + self.global_batch]
        self.index += self.global_batch
        return rows

    def encode(self, examples: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
        """Left-padded tokens, mask [b, max_prompt_len] of the examples' prompts; a prompt
        that is too long is cut (``prompts.truncate_prompt``) and counted."""
        prompts = [prompt_ids(ex, self.tokenizer, self.fmt) for ex in examples]
        self.truncated_prompts += sum(len(p) > self.fmt.max_prompt_len for p in prompts)
        return pad_prompts([fit(p, self.tokenizer, self.fmt) for p in prompts],
                           self.tokenizer.pad_id, self.fmt.max_prompt_len)

    def next_examples(self) -> tuple[np.ndarray, list[dict]]:
        """This process's dataset rows of the next global batch, and the decoded examples."""
        rows = self.next_indices()
        per = self.global_batch // self.process_count
        mine = rows[self.process_index * per:(self.process_index + 1) * per]
        return mine, [decode_example(self.source[int(i)]) for i in mine]

    def next_batch(self) -> Batch:
        mine, examples = self.next_examples()
        tokens, mask = self.encode(examples)
        images = stack_images(examples, self.fmt, largest=self.process_count > 1)
        return Batch(tokens=tokens, mask=mask, indices=mine.astype(np.int64), examples=examples,
                     images=images)
