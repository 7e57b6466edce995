"""Training value models (``o1jax.search.value_models``) on the policy's own samples,
labelled by the answer checker (no human labels).

* ORM (outcome): every response token of a sampled solution is labelled with whether the
  solution ended correct (Cobbe et al. 2021); the value at the last token is its score.
* PRM (process), Math-Shepherd (Wang et al. 2024): a step ends at a token with a newline
  (``o1jax.search.steps``); from the end of each step of a sampled solution K continuations
  are drawn with the policy, and the step's label is the fraction of them that end correct
  (soft) or whether any does (hard); the last token is labelled with the solution's own
  outcome. Only step-end tokens are trained.

Labels are generated batched on the rollout engine (``strategies.generate``); the value model
is trained with a masked squared error by one jitted optax step.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from o1jax.data.prompts import PromptFormat
from o1jax.models.transformer import Params, Transformer, positions_from_mask
from o1jax.optim import make_optimizer
from o1jax.rollout import SamplingConfig
from o1jax.search import steps, strategies
from o1jax.tokenizer import Tokenizer


class Labelled(NamedTuple):
    """Training rows for a value model: tokens, mask [R, T]; targets [R, T] f32 in [0, 1];
    weights [R, T] f32 (1 where a target counts)."""
    tokens: np.ndarray
    mask: np.ndarray
    targets: np.ndarray
    weights: np.ndarray


def response_span(mask: np.ndarray, prompt_len: int) -> tuple[int, int]:
    """[start, end) columns of a row's response: after the padded prompt, up to its last token."""
    real = np.flatnonzero(mask[prompt_len:])
    return prompt_len, prompt_len + (real[-1] + 1 if real.size else 0)


def orm_labels(gen: strategies.Generation, prompt_len: int) -> Labelled:
    """Every response token labelled with its solution's outcome."""
    targets = np.zeros(gen.tokens.shape, np.float32)
    weights = np.zeros(gen.tokens.shape, np.float32)
    outcome = gen.correct.reshape(-1)
    for r in range(len(gen.tokens)):
        lo, hi = response_span(gen.mask[r], prompt_len)
        targets[r, lo:hi] = outcome[r]
        weights[r, lo:hi] = 1.0
    return Labelled(gen.tokens, gen.mask, targets, weights)


def step_end_columns(tokens: np.ndarray, mask: np.ndarray, prompt_len: int, end_ids
                     ) -> list[int]:
    """Columns of a row where a step of its response ends (``steps.step_ends``; ``end_ids``:
    ``steps.step_end_ids``, as a set)."""
    lo, hi = response_span(mask, prompt_len)
    return [lo + i for i in steps.step_ends(tokens[lo:hi].tolist(), end_ids)]


def math_shepherd_labels(policy: Transformer, params: Params, examples: Sequence[dict],
                         tokenizer: Tokenizer, gen: strategies.Generation, prompt_len: int,
                         continuations: int, max_new_tokens: int, temperature: float = 1.0,
                         soft: bool = True, batch_prompts: int = 64, seed: int = 0
                         ) -> Labelled:
    """Math-Shepherd labels at the step ends of ``gen``'s responses (``examples``: their
    problems, G = gen.correct.shape[1] responses each): from every step end but the last, K =
    ``continuations`` completions are sampled (all prefixes in one batched generation, the
    prefix as the prompt) and checked against the problem's answer (the final answer is in the
    continuation: a prefix ends before the last step)."""
    g = gen.correct.shape[1]
    end_ids = set(steps.step_end_ids(tokenizer))
    targets = np.zeros(gen.tokens.shape, np.float32)
    weights = np.zeros(gen.tokens.shape, np.float32)
    prefixes, owners = [], []
    for r in range(len(gen.tokens)):
        ends = step_end_columns(gen.tokens[r], gen.mask[r], prompt_len, end_ids)
        if not ends:
            continue
        targets[r, ends[-1]] = gen.correct.reshape(-1)[r]
        weights[r, ends[-1]] = 1.0
        for c in ends[:-1]:
            real = gen.mask[r, :c + 1]
            prefixes.append(gen.tokens[r, :c + 1][real].tolist())
            owners.append((r, c))
    # prefixes bucketed by length (multiples of 16), so that a short prefix's continuation gets
    # the room a long one's would not leave; one compiled sampler per bucket
    buckets: dict[int, list[int]] = {}
    for j, p in enumerate(prefixes):
        buckets.setdefault(-(-len(p) // 16) * 16, []).append(j)
    for length, members in sorted(buckets.items()):
        length = min(length, policy.cfg.max_seq_len - 1)
        room = min(max_new_tokens, policy.cfg.max_seq_len - length)
        problems = [examples[owners[j][0] // g] for j in members]
        sampling = SamplingConfig(room, temperature, num_samples=continuations,
                                  stop_ids=tokenizer.stop_ids, pad_id=tokenizer.pad_id)
        cont = strategies.generate(policy, params, problems, tokenizer, sampling,
                                   PromptFormat(max_prompt_len=length),
                                   max(1, batch_prompts // continuations), seed + length,
                                   prompts=[prefixes[j] for j in members])
        reached = cont.correct.mean(axis=1) if soft else cont.correct.max(axis=1)
        for j, y in zip(members, reached):
            r, c = owners[j]
            targets[r, c] = y
            weights[r, c] = 1.0
    return Labelled(gen.tokens, gen.mask, targets, weights)


def value_loss(model: Transformer, params: Params, batch: Labelled) -> jax.Array:
    """Weighted mean squared error of the values against the targets."""
    values, _ = model.apply(params, batch.tokens, positions_from_mask(batch.mask), batch.mask)
    err = (values - batch.targets) ** 2 * batch.weights
    return jnp.sum(err) / jnp.maximum(jnp.sum(batch.weights), 1.0)


def train_value(model: Transformer, params: Params, data: Labelled, steps: int, lr: float,
                batch_size: int, seed: int = 0) -> tuple[Params, list[float]]:
    """``steps`` Adam steps on random minibatches of ``data``; returns (params, losses)."""
    opt = make_optimizer(lr, 1.0, b2=0.999, weight_decay=None)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt_state, batch):
        loss, grads = jax.value_and_grad(functools.partial(value_loss, model))(params, batch)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(seed)
    opt_state = opt.init(params)
    rows = len(data.tokens)
    losses = []
    for _ in range(steps):
        idx = rng.choice(rows, size=batch_size, replace=rows < batch_size)
        batch = Labelled(*(jnp.asarray(x[idx]) for x in data))
        params, opt_state, loss = step(params, opt_state, batch)
        losses.append(float(loss))
    return params, losses
