"""One solution looked at from inside: each token's value under a value model, each step's
Monte-Carlo importance (Thought Anchors: K continuations resampled before and after the step),
attention maps of chosen layers and heads, and for a vision policy the answer tokens' attention
to the image as a heat map over it. ``python -m o1jax.trace`` is its CLI."""

from __future__ import annotations

import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from o1jax.data.prompts import PromptFormat, pad_prompts, prompt_ids, stack_images
from o1jax.models.layers.attention import attention_probs, project_qkv
from o1jax.models.layers.norm import rms_norm
from o1jax.models.layers.rope import inverse_frequencies, rope_angles
from o1jax.models.layouts import unstack_layers
from o1jax.models.transformer import Params, Transformer, positions_from_mask
from o1jax.models.patches import Patches
from o1jax.models.vision import place_image_tokens
from o1jax.models.vision_config import VisionConfig
from o1jax.rewards.answers import all_boxed
from o1jax.rewards.api import verify_batch
from o1jax.rollout.decoding import SamplingConfig
from o1jax.rollout.sampler import make_sampler
from o1jax.rollout.scoring import prefix_values
from o1jax.search import value_models
from o1jax.search.steps import step_end_ids, step_ends


class Trace(NamedTuple):
    """tokens: the response's token strings; values: [n] or None; steps: the response's lines
    (each with its last token index); before / after: fraction of K continuations correct from
    the prefix before / after each step; attention: {"layer/head": [T, T]} over prompt +
    response, with ``labels`` the token strings of both. answer_tokens: indices into ``tokens``
    of the final answer (``answer_span`` "boxed": the content of the last \\boxed{}; "response":
    every token, when there is none). A vision policy's trace also has image_attention
    [len(answer_tokens), N]: the attention weight of each answer token's query (the position
    whose output is that token) on each of the N image tokens, mean over the chosen layers and
    heads (a row sums to at most 1); and image_heat [Gh, Gw] (the image's patches per column
    and per row): the mean over the answer tokens, each patch holding its image token's weight
    (``image_heat``). A solution of a search task also has ``search``: its lines replayed
    (``traces.search.search_lines``)."""
    problem: str
    answer: str
    response: str
    correct: bool
    tokens: list[str]
    values: list[float] | None
    steps: list[str]
    before: list[float]
    after: list[float]
    labels: list[str]
    attention: dict
    answer_tokens: list[int]
    answer_span: str
    image_attention: list[list[float]] | None = None
    image_heat: list[list[float]] | None = None
    search: list[dict] | None = None

    @property
    def importance(self) -> list[float]:
        return [a - b for a, b in zip(self.after, self.before)]


def attention_maps(model: Transformer, params: Params, tokens: jax.Array, mask: jax.Array,
                   layers: list[int], images: jax.Array | None = None) -> jax.Array:
    """Attention weights [len(layers), B, H, T, T] of a forward pass over ``tokens``, the
    model's own layer code run one layer at a time (weights taken at the chosen layers).
    ``images`` [B, S, S, 3] uint8 or ``Patches`` (a vision model): each row's image, read at
    its placeholders, with the rotary positions (M-RoPE's too) ``Transformer.hidden`` gives
    it."""
    c = model.cfg
    mask = mask.astype(bool)
    t = tokens.shape[1]
    inv = inverse_frequencies(c.head_dim, c.rope_theta,
                              dict(c.rope_scaling) if c.rope_scaling else None)
    extra = {} if images is None else model.image_inputs(params, images)
    positions = model.rope_positions(tokens, positions_from_mask(mask), mask, images is not None,
                                     extra.get("image_grid"))
    rope = rope_angles(positions, inv, c.mrope_section)
    key_mask = mask[:, None, :] & jnp.tril(jnp.ones((t, t), bool))[None]
    x = jnp.take(params["embed"], tokens, axis=0).astype(c.compute_dtype)
    if images is not None:
        x = place_image_tokens(x, tokens, c.image_token_id, extra["image_embeds"])
    out = []
    for i, p in enumerate(unstack_layers(params)["layers"]):
        if i in layers:
            q, k, _ = project_qkv(rms_norm(x, p["attn_norm"], c.rms_norm_eps), p, rope,
                                  c.num_heads, norm_eps=c.rms_norm_eps)
            out.append(attention_probs(q, k, key_mask))
        x = model._layer(x, p, rope, key_mask)[0]
    return jnp.stack(out)


def answer_token_span(tokens: list[str]) -> tuple[list[int], str]:
    """Indices of the response tokens (their strings, in order) that write the final answer:
    those overlapping the content of the last closed, non-empty \\boxed{} (or \\fbox{}), and
    "boxed"; else every index, and "response"."""
    text = "".join(tokens)
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    boxed = [(s, c) for s, c in zip(starts, all_boxed(text)) if c]
    if not boxed:
        return list(range(len(tokens))), "response"
    begin, content = boxed[-1]
    end = begin + len(content)
    offsets = np.cumsum([0] + [len(t) for t in tokens])
    return [i for i in range(len(tokens)) if offsets[i] < end and offsets[i + 1] > begin], \
        "boxed"


def image_heat(cfg: VisionConfig, weights: np.ndarray, grid: tuple[int, int] | None = None
               ) -> np.ndarray:
    """Weights [N] of the image tokens on the patch grid: [Gh, Gw] (``grid``: the image's
    patches per column and per row; default the square image_size / patch_size), each patch
    holding the weight of the image token its merge window became (the encoder reads M x M
    merge windows row-major, window k becoming image token k)."""
    gh, gw = grid or (cfg.grid, cfg.grid)
    m = cfg.merge_size
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    return np.asarray(weights, np.float32)[(rows // m) * (gw // m) + cols // m]


def continuation_rates(policy: Transformer, params: Params, prefixes: list[list[int]],
                       prompt_len: int, answer: str, tokenizer, k: int, max_new: int,
                       temperature: float, key: jax.Array, length: int,
                       images: np.ndarray | None = None) -> list[float]:
    """Fraction of ``k`` sampled continuations of each prefix (prompt + the first steps of a
    solution) whose answer is correct: one sampler call per prefix, key ``fold_in(key, j)``,
    every prefix left-padded to ``length``; a truncated continuation counts as wrong.
    ``images`` [1, S, S, 3] uint8: the prompt's image (a vision policy)."""
    sampler = make_sampler(policy, SamplingConfig(
        max_new_tokens=max_new, temperature=temperature, num_samples=k,
        stop_ids=tokenizer.stop_ids, pad_id=tokenizer.pad_id), gather=True)
    rates = []
    for j, prefix in enumerate(prefixes):
        toks, mask = pad_prompts([prefix], tokenizer.pad_id, length)
        roll = sampler(params, toks, mask, jax.random.fold_in(key, j), images)
        head = tokenizer.decode(prefix[prompt_len:])
        texts = [head + tokenizer.decode(row[resp.astype(bool)].tolist()[:-1])
                 for row, resp in zip(roll.tokens, roll.response_mask)]
        ok = verify_batch(texts, [answer] * k)
        rates.append(float(np.mean([bool(f) and c for f, c in zip(roll.finished, ok)])))
    return rates


def trace(policy: Transformer, params: Params, tokenizer, problem: str, answer: str,
          fmt: PromptFormat, value: tuple | None = None, k: int = 8, max_new: int = 96,
          temperature: float = 1.0, greedy: bool = True, layers=(0,), heads=(0,),
          seed: int = 0, solution: str | None = None, image: np.ndarray | None = None) -> Trace:
    """The trace of the policy's solution to ``problem`` (see the module docstring), or of a
    given ``solution`` text. ``value``: (value model, its params[, "logit" for a pairwise-trained
    one, read through a sigmoid]). ``image`` [S, S, 3] uint8: what a vision policy sees with the
    problem, at its own size for a policy that reads images so (every forward pass reads it:
    the solution, the continuations, the value model's and the attention maps' passes)."""
    if (image is None) != (policy.cfg.vision is None):
        raise ValueError("the run's policy reads an image with each problem: give --image PATH "
                         "or --example K" if image is None else "--image: the run's policy "
                         "reads no images (a text-only model): leave --image out")
    images = stack_images([{"image": np.asarray(image, np.uint8)}], fmt) if image is not None \
        else None
    prompt = prompt_ids({"question": problem, "image": image}, tokenizer, fmt)
    room = policy.cfg.max_seq_len - len(prompt)
    if room < 2:
        raise ValueError(f"the problem's prompt is {len(prompt)} tokens; the model reads at most "
                         f"{policy.cfg.max_seq_len}: shorten the problem")
    max_new = min(max_new, room)
    key = jax.random.key(seed)
    solve = make_sampler(policy, SamplingConfig(
        max_new_tokens=max_new, greedy=greedy, temperature=temperature,
        stop_ids=tokenizer.stop_ids, pad_id=tokenizer.pad_id), gather=True)
    if solution is None:
        toks, mask = pad_prompts([prompt], tokenizer.pad_id)
        roll = solve(params, toks, mask, key, images)
        resp = roll.tokens[0][roll.response_mask[0].astype(bool)].tolist()
        finished = bool(roll.finished[0])
    else:
        resp, finished = tokenizer.encode(solution, False) + [tokenizer.stop_ids[0]], True
        if len(prompt) + len(resp) > policy.cfg.max_seq_len:
            raise ValueError(f"problem and solution are {len(prompt) + len(resp)} tokens; the "
                             f"model reads at most {policy.cfg.max_seq_len}")
    body = resp[:-1] if finished and resp else resp
    response = tokenizer.decode(body)
    correct = finished and verify_batch([response], [answer])[0]
    seq = prompt + resp
    seq_arr = jnp.asarray([seq], jnp.int32)
    seq_mask = jnp.ones_like(seq_arr, bool)

    values = None
    if value is not None:
        v = np.asarray(prefix_values(value[0], value[1], seq_arr, seq_mask, images)[0])
        if value[2:] == ("logit",):     # a pairwise-trained model's scores are logits
            v = value_models.squash("logit", v)
        values = [float(x) for x in v[len(prompt):len(prompt) + len(body)]]

    ends = step_ends(body, set(step_end_ids(tokenizer)))
    steps = [tokenizer.decode(body[(ends[i - 1] + 1 if i else 0):e + 1]).strip("\n")
             for i, e in enumerate(ends)]
    # the prefix before step j: the prompt and the steps before it; after the last step the
    # solution is complete, and its own correctness is the rate
    prefixes = [prompt + body[:(ends[j - 1] + 1 if j else 0)] for j in range(len(ends))]
    before = []
    if ends:
        length = len(prefixes[-1])
        before = continuation_rates(policy, params, prefixes, len(prompt), answer, tokenizer,
                                    k, min(max_new, policy.cfg.max_seq_len - length),
                                    temperature, jax.random.fold_in(key, 1), length, images)
    after = before[1:] + [float(correct)] if ends else []

    maps = np.asarray(attention_maps(policy, params, seq_arr, seq_mask, list(layers),
                                     images))[:, 0][:, list(heads)]      # [layers, heads, T, T]
    attention = {f"{l}/{h}": maps[i, j].tolist()
                 for i, l in enumerate(layers) for j, h in enumerate(heads)}
    tokens = [tokenizer.decode([t]) for t in body]
    labels = [tokenizer.decode([t]) for t in seq]
    answer_tokens, answer_span = answer_token_span(tokens)
    image_attention = heat = None
    if image is not None:
        # the image tokens are the prompt's placeholders; the query at position p produces
        # token p + 1, so answer token i is produced at len(prompt) + i - 1
        keys = [p for p, t in enumerate(prompt) if t == policy.cfg.image_token_id]
        for k, p in enumerate(keys):
            labels[p] = f"<image {k}>"
        queries = [len(prompt) + i - 1 for i in answer_tokens]
        weights = maps.mean(axis=(0, 1))[np.ix_(queries, keys)]        # [answers, N]
        image_attention = weights.tolist()
        grid = tuple(images.grid[0]) if isinstance(images, Patches) else None
        heat = image_heat(policy.cfg.vision, weights.mean(axis=0), grid).tolist() \
            if queries else None
    return Trace(problem, answer, response, bool(correct), tokens, values, steps, before, after,
                 labels, attention, answer_tokens, answer_span, image_attention, heat)
