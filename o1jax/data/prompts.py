"""The one prompt encoder: a question -> prompt text (a format string, optionally as the user's
turn of the tokenizer's chat template) -> token ids (with a vision policy's image
placeholders) -> cut to the prompt length -> left-padded rows.

``PromptFormat`` is how a run renders its prompts; ``o1jax.policy`` builds it once from the
config (or a workdir's saved config) beside the tokenizer, and every stage that encodes a
prompt (the training pipeline, SFT, self-play, evaluation, search, trace, generate) passes it
here.
"""

from __future__ import annotations

import dataclasses
from typing import Collection, Sequence

import jinja2.sandbox
import numpy as np

from o1jax.models.patches import patch_native
from o1jax.tokenizer import Tokenizer

PLAIN_TEMPLATE = "{question}\n"
IMAGE_MARK = "<image>"   # where a problem's figure goes in its text (Geometry3K's layout)


@dataclasses.dataclass(frozen=True)
class PromptFormat:
    """How a question becomes prompt tokens. ``template``: a format string with ``{question}``;
    ``use_chat_template``: that text as the user's message in the tokenizer's chat template
    (``system``: an optional system message); ``max_prompt_len``: prompts are cut to this many
    tokens (None: never cut); ``image_tokens``: a vision policy's placeholders per prompt (0: a
    text policy); ``image_patch``: (patch size P, merge size M) of a policy that reads images at
    their own sizes (``models.patches``): an [H, W, 3] image takes (H / PM) x (W / PM)
    placeholders."""
    template: str = PLAIN_TEMPLATE
    use_chat_template: bool = False
    system: str | None = None
    max_prompt_len: int | None = None
    image_tokens: int = 0
    image_patch: tuple[int, int] | tuple = ()

    @property
    def reads_images(self) -> bool:
        return bool(self.image_tokens or self.image_patch)

    def placeholders(self, image) -> int:
        """How many image placeholders a prompt with ``image`` holds."""
        if not self.image_patch:
            return self.image_tokens
        (h, w), side = np.shape(image)[:2], self.image_patch[0] * self.image_patch[1]
        return (h // side) * (w // side)


def render_prompt(question: str, tokenizer: Tokenizer, fmt: PromptFormat = PromptFormat()
                  ) -> str:
    """The prompt text for a question: the template with the question in it, or that text as
    the user's message in the tokenizer's own chat template (rendered in a Jinja sandbox, with
    the generation prompt appended). A vision policy's prompt (``fmt.reads_images``) holds the
    image once, where the text marks it (the tokenizer's placeholder or Geometry3K's literal
    ``<image>``), else first: between the tokenizer's vision markers, or as the chat template
    renders an image part of the message."""
    text = fmt.template.format(question=question)
    parts = _image_parts(text, tokenizer) if fmt.reads_images else None
    if not fmt.use_chat_template:
        if parts is None or parts[0] is None:   # unmarked: prompt_ids puts it after <s>
            return text
        return parts[0] + tokenizer.image_text + parts[1]
    if not tokenizer.chat_template:
        raise ValueError("use_chat_template=True but the tokenizer has no chat_template")
    content: str | list = text.strip()
    if parts is not None:
        before, after = parts if parts[0] is not None else ("", content)
        content = ([{"type": "text", "text": before.lstrip()}] if before.strip() else []) + [
            {"type": "image"}] + ([{"type": "text", "text": after.rstrip()}]
                                  if after.strip() else [])
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    messages = ([{"role": "system", "content": fmt.system}] if fmt.system else []) + [
        {"role": "user", "content": content}]
    try:
        out = env.from_string(tokenizer.chat_template).render(
            messages=messages, add_generation_prompt=True, bos_token=tokenizer.bos_token or "",
            eos_token=tokenizer.eos_token or "")
    except TypeError:   # a text model's template adds the message's parts to a string
        if parts is None:
            raise
        out = ""
    if parts is not None and tokenizer.image_token not in out:
        raise ValueError(f"the tokenizer's chat template renders no image placeholder "
                         f"({tokenizer.image_token}) for a message with an image part; use a "
                         "vision-language model's template or data.use_chat_template=False")
    return out


def _image_parts(text: str, tokenizer: Tokenizer) -> tuple[str | None, str]:
    """(text before, text after) the image's mark in ``text`` (the tokenizer's placeholder,
    else the literal ``<image>``), or (None, text) where nothing marks it."""
    for mark in (tokenizer.image_token, IMAGE_MARK):
        if mark and mark in text:
            before, _, after = text.partition(mark)
            return before, after
    return None, text


def prompt_ids(example: dict, tokenizer: Tokenizer, fmt: PromptFormat = PromptFormat()
               ) -> list[int]:
    """An example's whole prompt token ids (not cut); for a vision policy as many image
    placeholders as ``fmt.placeholders`` says, where ``render_prompt`` put the image, else (a
    plain prompt whose text does not mark it) right after the beginning-of-sequence token,
    between the vision markers where the tokenizer has them."""
    if fmt.reads_images and tokenizer.image_id is None:
        raise ValueError("a vision model needs a tokenizer with an image placeholder token")
    ids = tokenizer.encode(render_prompt(example["question"], tokenizer, fmt))
    if not fmt.reads_images:
        return ids
    if "image" not in example:
        raise ValueError(f"the model reads images but example {example['question'][:40]!r} "
                         "has none: use a visual task (count, chart, pixel_sum, image_qa)")
    marks = ids.count(tokenizer.image_id)
    if marks > 1:
        raise ValueError(f"prompt {example['question'][:40]!r} holds {marks} image tokens "
                         f"({tokenizer.image_token}); one image per prompt, marked once")
    image = [tokenizer.image_id] * fmt.placeholders(example["image"])
    if marks:
        k = ids.index(tokenizer.image_id)
        return ids[:k] + image + ids[k + 1:]
    start, end = ([tokenizer.token_id(m)] for m in tokenizer.vision_markers or (None, None))
    k = 1 if ids and tokenizer.bos_token and ids[0] == tokenizer.token_id(tokenizer.bos_token) \
        else 0
    if tokenizer.vision_markers:
        image = start + image + end
    return ids[:k] + image + ids[k:]


def truncate_prompt(ids: Sequence[int], length: int, keep_ids: Collection[int] = ()
                    ) -> list[int]:
    """The prompt cut to ``length`` tokens by dropping its earliest tokens after the first (the
    question is asked last): the first token (beginning of sequence) and the ``keep_ids`` (a
    vision prompt's image placeholders and markers, ``Tokenizer.vision_ids``) always stay."""
    ids = list(ids)
    if len(ids) <= length:
        return ids
    keep = 1 + sum(t in keep_ids for t in ids[1:])
    if keep >= length:
        raise ValueError(f"a prompt of {keep} image and special tokens does not fit in "
                         f"{length} prompt tokens: raise data.max_prompt_len")
    drop = len(ids) - length
    out = ids[:1]
    for t in ids[1:]:
        if drop and t not in keep_ids:
            drop -= 1
            continue
        out.append(t)
    return out


def fit(ids: Sequence[int], tokenizer: Tokenizer, fmt: PromptFormat) -> list[int]:
    """Prompt ids cut to ``fmt.max_prompt_len`` as ``truncate_prompt`` cuts (None: as given)."""
    if fmt.max_prompt_len is None:
        return list(ids)
    return truncate_prompt(ids, fmt.max_prompt_len,
                           tokenizer.vision_ids if fmt.reads_images else ())


def encode_prompt(example: dict, tokenizer: Tokenizer, fmt: PromptFormat) -> list[int]:
    """An example's prompt ids in ``fmt``, cut to its prompt length."""
    return fit(prompt_ids(example, tokenizer, fmt), tokenizer, fmt)


def pad_prompts(prompts: Sequence[Sequence[int]], pad_id: int, length: int | None = None,
                rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Left-pads token lists to ``length`` (default: the longest); with ``rows``, the last one
    is repeated up to that many rows (a short last batch keeps the compiled batch shape).
    Returns tokens, mask [B, P]."""
    if not prompts:
        raise ValueError("no prompts")
    prompts = list(prompts) + [prompts[-1]] * max(0, (rows or 0) - len(prompts))
    for i, pr in enumerate(prompts):
        if len(pr) == 0:
            raise ValueError(f"prompt {i} is empty")
    longest = max(len(pr) for pr in prompts)
    length = longest if length is None else length
    if longest > length:
        raise ValueError(f"prompt of {longest} tokens is longer than the maximum prompt length "
                         f"{length}")
    tokens = np.full((len(prompts), length), pad_id, np.int32)
    mask = np.zeros((len(prompts), length), bool)
    for i, pr in enumerate(prompts):
        tokens[i, length - len(pr):] = pr
        mask[i, length - len(pr):] = True
    return tokens, mask


def image_buckets(max_prompt_len: int) -> tuple[int, ...]:
    """The image-token capacities a batch of images at their own sizes is padded to: an eighth,
    a quarter, a half and all of the prompt length (which any prompt's image fits in), so that
    a stage compiles at most four programs."""
    return tuple(sorted({-(-max_prompt_len // d) for d in (8, 4, 2, 1)}))


def stack_images(examples: Sequence[dict], fmt: PromptFormat, largest: bool = False,
                 rows: int | None = None):
    """The images of a batch of prompts in ``fmt`` as the policy reads them: [B, S, S, 3] uint8,
    or (``fmt.image_patch``) ``Patches`` padded to the smallest of ``image_buckets`` that holds
    the largest image (``largest``: to the largest bucket, a shape every process of a
    multi-host batch agrees on without asking; without a prompt length: to the largest image);
    None for a text policy. With ``rows``, the last image is repeated up to that many rows, as
    ``pad_prompts`` repeats the last prompt."""
    if not fmt.reads_images:
        return None
    images = [ex["image"] for ex in examples]
    images += [images[-1]] * max(0, (rows or 0) - len(images))
    if not fmt.image_patch:
        return np.stack(images)
    capacity = None                   # patch_native's default: the largest image's tokens
    if fmt.max_prompt_len is not None:
        buckets, most = image_buckets(fmt.max_prompt_len), max(map(fmt.placeholders, images))
        capacity = buckets[-1] if largest else next((b for b in buckets if b >= most), most)
    return patch_native(images, *fmt.image_patch, capacity)
