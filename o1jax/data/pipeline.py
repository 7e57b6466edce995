"""Input pipeline: a random-access TFDS data source -> seeded, resumable, per-process batches of
left-padded prompt tokens.

The position is two integers (epoch, index into that epoch's permutation), saved in checkpoints
with ``state()`` and restored with ``restore()``; the permutation of an epoch is a pure function
of (seed, epoch), so a restored pipeline yields exactly the batches it would have.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jinja2.sandbox
import numpy as np

from o1jax.rollout.sampler import pad_prompts
from o1jax.tokenizer import Tokenizer

PLAIN_TEMPLATE = "{question}\n"


def decode_example(ex: dict) -> dict:
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in ex.items()}


def render_prompt(question: str, tokenizer: Tokenizer, template: str = PLAIN_TEMPLATE,
                  use_chat_template: bool | None = None, system: str | None = None) -> str:
    """The prompt text for a question: a format string with ``{question}``, or that text as
    the user's message in the tokenizer's own chat template (rendered in a Jinja sandbox, with
    the generation prompt appended). ``use_chat_template`` None: as the tokenizer says
    (``tokenizer.use_chat_template``, set from ``data.use_chat_template``)."""
    if use_chat_template is None:
        use_chat_template = tokenizer.use_chat_template
    if not use_chat_template:
        return template.format(question=question)
    if not tokenizer.chat_template:
        raise ValueError("use_chat_template=True but the tokenizer has no chat_template")
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": template.format(question=question).strip()}]
    return env.from_string(tokenizer.chat_template).render(
        messages=messages, add_generation_prompt=True, bos_token=tokenizer.bos_token or "",
        eos_token=tokenizer.eos_token or "")


def prompt_ids(example: dict, tokenizer: Tokenizer, template: str = PLAIN_TEMPLATE,
               use_chat_template: bool | None = None, image_tokens: int = 0,
               add_special_tokens: bool = True) -> list[int]:
    """An example's prompt token ids; with ``image_tokens`` = N (a vision policy), N image
    placeholders where the image's tokens go: in place of the tokenizer's image token where the
    rendered prompt (template or question) holds one, else right after the
    beginning-of-sequence token."""
    ids = tokenizer.encode(render_prompt(example["question"], tokenizer, template,
                                         use_chat_template),
                           add_special_tokens=add_special_tokens)
    if not image_tokens:
        return ids
    if tokenizer.image_id is None:
        raise ValueError("a vision model needs a tokenizer with an image placeholder token")
    if "image" not in example:
        raise ValueError(f"the model reads images but example {example['question'][:40]!r} "
                         "has none: use a visual task (count, chart, pixel_sum, image_qa)")
    marks = ids.count(tokenizer.image_id)
    if marks > 1:
        raise ValueError(f"prompt {example['question'][:40]!r} holds {marks} image tokens "
                         f"({tokenizer.image_token}); one image per prompt, marked once")
    if marks:
        k = ids.index(tokenizer.image_id)
        return ids[:k] + [tokenizer.image_id] * image_tokens + ids[k + 1:]
    k = 1 if ids and tokenizer.bos_token and ids[0] == tokenizer.token_id(tokenizer.bos_token) \
        else 0
    return ids[:k] + [tokenizer.image_id] * image_tokens + ids[k:]


def truncate_prompt(ids: list[int], length: int, image_id: int | None = None) -> list[int]:
    """The prompt cut to ``length`` tokens by dropping its earliest text tokens (the question
    is asked last); the first token (beginning of sequence) and the image placeholders
    (``image_id``) of a vision prompt always stay."""
    if len(ids) <= length:
        return ids
    if image_id is None:
        return ids[len(ids) - length:]
    keep = 1 + sum(t == image_id for t in ids[1:])
    if keep >= length:
        raise ValueError(f"a prompt of {keep} image and special tokens does not fit in "
                         f"data.max_prompt_len={length}: raise it")
    drop = len(ids) - length
    out = ids[:1]
    for t in ids[1:]:
        if drop and t != image_id:
            drop -= 1
            continue
        out.append(t)
    return out


@dataclasses.dataclass
class Batch:
    """One process's share of a global batch. tokens, mask: [b, P]; indices: [b] dataset rows;
    images: [b, S, S, 3] uint8 (a vision policy's prompts) or None."""
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
                 max_prompt_len: int, seed: int = 0, template: str = PLAIN_TEMPLATE,
                 use_chat_template: bool | None = None, process_index: int = 0,
                 process_count: int = 1, add_special_tokens: bool = True,
                 image_tokens: int = 0):
        if global_batch % process_count:
            raise ValueError(f"global batch {global_batch} is not divisible by the "
                             f"{process_count} processes")
        if len(source) < global_batch:
            raise ValueError(f"dataset has {len(source)} examples, fewer than one batch "
                             f"({global_batch})")
        self.source, self.tokenizer = source, tokenizer
        self.global_batch, self.max_prompt_len = global_batch, max_prompt_len
        self.seed, self.template, self.use_chat_template = seed, template, use_chat_template
        self.process_index, self.process_count = process_index, process_count
        self.add_special_tokens = add_special_tokens
        self.image_tokens = image_tokens    # placeholders per prompt (a vision policy), or 0
        self.epoch, self.index = 0, 0
        self._perm_epoch, self._perm = -1, None
        self.truncated_prompts = 0  # prompts cut to their last max_prompt_len tokens

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
        prompts = [prompt_ids(ex, self.tokenizer, self.template, self.use_chat_template,
                              self.image_tokens, self.add_special_tokens) for ex in examples]
        too_long = [i for i, p in enumerate(prompts) if len(p) > self.max_prompt_len]
        if too_long:  # keep the end (where the question is asked) and count it
            self.truncated_prompts += len(too_long)
            prompts = [truncate_prompt(p, self.max_prompt_len,
                                       self.tokenizer.image_id if self.image_tokens else None)
                       for p in prompts]
        return pad_prompts(prompts, self.tokenizer.pad_id, self.max_prompt_len)

    def next_examples(self) -> tuple[np.ndarray, list[dict]]:
        """This process's dataset rows of the next global batch, and the decoded examples."""
        rows = self.next_indices()
        per = self.global_batch // self.process_count
        mine = rows[self.process_index * per:(self.process_index + 1) * per]
        return mine, [decode_example(self.source[int(i)]) for i in mine]

    def next_batch(self) -> Batch:
        mine, examples = self.next_examples()
        tokens, mask = self.encode(examples)
        images = np.stack([ex["image"] for ex in examples]) if self.image_tokens else None
        return Batch(tokens=tokens, mask=mask, indices=mine.astype(np.int64), examples=examples,
                     images=images)
