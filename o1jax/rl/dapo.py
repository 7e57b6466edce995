"""DAPO's batch shaping (Yu et al. 2025), as pure functions inside the compiled iteration.

Dynamic sampling: roll out ``factor`` x more prompts than the batch needs, rank the groups by
whether their G rewards differ (a group whose rewards are all equal has zero GRPO advantage and
teaches nothing), and keep the first B: informative groups first, in their sampled order, then
the uninformative ones with a zero loss mask when too few informative groups exist.

Over-long shaping: a length penalty that is 0 up to ``max_tokens - window`` tokens, falls
linearly to -1 over the last ``window`` tokens of the budget, and is -1 past it (the paper's
soft over-long punishment); and the option to mask truncated responses out of the loss.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from o1jax.rollout.sampler import Rollout


class GroupChoice(NamedTuple):
    """groups [B] int32: which of the P sampled groups fill the batch; keep [B] bool: the group
    trains (False: a filler whose rows carry no loss); informative [] int32: informative
    groups among the P sampled."""
    groups: jax.Array
    keep: jax.Array
    informative: jax.Array


def choose_groups(rewards: jax.Array, batch: int, tol: float = 1e-6) -> GroupChoice:
    """Chooses ``batch`` of the P groups of ``rewards`` [P, G]: informative groups (rewards
    not all within ``tol``) in their order first, then the rest, masked."""
    spread = jnp.max(rewards, axis=1) - jnp.min(rewards, axis=1)
    informative = spread > tol
    p = rewards.shape[0]
    # a stable sort on (not informative): informative groups keep their order ahead of the rest
    order = jnp.argsort(jnp.where(informative, 0, 1) * p + jnp.arange(p))
    groups = order[:batch].astype(jnp.int32)
    return GroupChoice(groups, informative[groups], jnp.sum(informative).astype(jnp.int32))


def overlong_penalty(lengths: jax.Array, max_tokens: int, window: int) -> jax.Array:
    """DAPO's soft over-long punishment [R] f32 of responses of ``lengths`` [R] tokens: 0 up to
    ``max_tokens - window``, then linear down to -1 at ``max_tokens``, -1 beyond."""
    if not 0 < window <= max_tokens:
        raise ValueError(f"the over-long window must be in 1..{max_tokens} tokens, got {window}")
    start = max_tokens - window
    over = (lengths.astype(jnp.float32) - start) / window
    return -jnp.clip(over, 0.0, 1.0)


def truncation_mask(finished: jax.Array, response_mask: jax.Array) -> jax.Array:
    """The response mask [R, T] with the rows that did not finish (truncated at the budget)
    masked out of the loss: DAPO's over-long filtering."""
    return response_mask & finished[:, None]


def shape_experience(roll: Rollout, rewards: jax.Array, images: jax.Array | None, cfg,
                     group_size: int) -> tuple[Rollout, jax.Array, jax.Array | None, dict]:
    """DAPO's shaping of a collected rollout of P = ``cfg.sampled_prompts`` groups of G rows
    (``cfg``: an RLConfig): dynamic sampling keeps ``cfg.batch_prompts`` groups, informative by
    the reward function's rewards (the fillers' rows carry no loss); the over-long penalty is
    added to the rewards after; ``cfg.mask_truncated`` takes truncated rows out of the loss.
    Returns the B * G rows (rollout, rewards [B * G], images) and the metrics."""
    metrics = {}
    p, b = cfg.sampled_prompts, cfg.batch_prompts
    if p > b:
        choice = choose_groups(rewards.reshape(p, group_size), b)
        rows = (choice.groups[:, None] * group_size + jnp.arange(group_size)).reshape(-1)
        n = rewards.shape[0]
        roll = jax.tree.map(lambda x: x[rows] if x.ndim and x.shape[0] == n else x, roll)
        rewards = rewards[rows]
        images = jax.tree.map(lambda a: a[rows], images)
        keep = jnp.repeat(choice.keep, group_size)
        roll = roll._replace(response_mask=roll.response_mask & keep[:, None])
        trained = jnp.sum(choice.keep)
        metrics.update({"dynamic/informative_groups": choice.informative,
                        "dynamic/effective_batch": trained,
                        "dynamic/filler_groups": b - trained,
                        "dynamic/dropped_share": 1.0 - trained / p,
                        "dynamic/rollout_cost": jnp.float32(p / b)})
    if cfg.overlong_window:
        penalty = overlong_penalty(roll.lengths, cfg.max_new_tokens, cfg.overlong_window)
        rewards = rewards + cfg.overlong_coef * penalty
        metrics["overlong_penalty_mean"] = jnp.mean(penalty)
    if cfg.mask_truncated:
        roll = roll._replace(response_mask=truncation_mask(roll.finished, roll.response_mask))
        metrics["masked_truncated"] = 1.0 - jnp.mean(roll.finished.astype(jnp.float32))
    return roll, rewards, images, metrics
