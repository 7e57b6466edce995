"""Advantage estimators: token-level GAE and the group baselines (GRPO, Dr. GRPO, RLOO,
REINFORCE++). Pure jnp functions; every array of shape [R, T] is masked by the response mask.

R rows are G consecutive samples of each prompt (the rollout engine's layout).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


def masked_mean(x: jax.Array, mask: jax.Array, axis=None) -> jax.Array:
    mask = mask.astype(x.dtype)
    return jnp.sum(x * mask, axis=axis) / jnp.maximum(jnp.sum(mask, axis=axis), 1.0)


def whiten(x: jax.Array, mask: jax.Array, shift_mean: bool = True, min_std: float = 1e-2
           ) -> jax.Array:
    """(x - mean) / std over the masked entries (mean kept when ``shift_mean`` is False).

    The std is floored at ``min_std``: a batch without signal (every reward equal, advantages
    all near zero) must not have its noise blown up to unit variance."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) / jnp.maximum(jnp.sqrt(var), min_std)
    if not shift_mean:
        out = out + mean
    return jnp.where(mask.astype(bool), out, 0.0)


def token_rewards(outcome: jax.Array, response_mask: jax.Array,
                  kl_penalty: jax.Array | None = None) -> jax.Array:
    """[R, T] per-token rewards: the outcome reward [R] on each row's last response token, minus
    an optional per-token KL penalty [R, T] (the "KL in the reward" form)."""
    t = response_mask.shape[1]
    last = t - 1 - jnp.argmax(response_mask[:, ::-1], axis=1)
    r = jax.nn.one_hot(last, t, dtype=jnp.float32) * outcome[:, None]
    if kl_penalty is not None:
        r = r - kl_penalty
    return jnp.where(response_mask.astype(bool), r, 0.0)


def gae(rewards: jax.Array, values: jax.Array, mask: jax.Array, gamma: float = 1.0,
        lam: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation over the response tokens, with a reverse ``lax.scan``.

    rewards, values, mask: [R, T]. values[:, t] is V of the state *before* token t is chosen.
    Masked (padding) columns are skipped: they neither receive nor pass on advantage, so a row's
    last response token bootstraps from 0. Returns (advantages, returns = advantages + values),
    both zero outside the mask.
    """
    mask = mask.astype(jnp.float32)

    def step(carry, xs):
        next_value, next_adv = carry
        r, v, m = xs
        delta = r + gamma * next_value - v
        adv = delta + gamma * lam * next_adv
        # padding: keep the carry unchanged so it passes over gaps
        new_value = jnp.where(m > 0, v, next_value)
        new_adv = jnp.where(m > 0, adv, next_adv)
        return (new_value, new_adv), adv * m

    zeros = jnp.zeros(rewards.shape[0], jnp.float32)
    _, adv = jax.lax.scan(step, (zeros, zeros), (rewards.T, values.T, mask.T), reverse=True)
    adv = adv.T
    return adv, (adv + values) * mask


def group_advantages(rewards: jax.Array, group_size: int, method: str = "grpo",
                     eps: float = 1e-6) -> jax.Array:
    """Per-sequence advantages [R] from outcome rewards [R] of groups of ``group_size``.

    grpo:      (r - group mean) / (group std + eps)       (std with ddof=0)
    dr_grpo:   r - group mean                              (Dr. GRPO: no std, no length norm)
    rloo:      r - mean of the other G - 1 samples          (leave-one-out)
    reinforce_pp: (r - batch mean) / batch std              (REINFORCE++: global baseline)
    """
    if rewards.shape[0] % group_size:
        raise ValueError(f"{rewards.shape[0]} rows are not groups of {group_size}")
    g = rewards.reshape(-1, group_size)
    mean = jnp.mean(g, axis=1, keepdims=True)
    if method == "grpo":
        out = (g - mean) / (jnp.std(g, axis=1, keepdims=True) + eps)
    elif method == "dr_grpo":
        out = g - mean
    elif method == "rloo":
        if group_size < 2:
            raise ValueError("rloo needs group_size >= 2")
        out = g - (jnp.sum(g, axis=1, keepdims=True) - g) / (group_size - 1)
    elif method == "reinforce_pp":
        out = (g - jnp.mean(g)) / (jnp.std(g) + eps)
    else:
        raise ValueError(f"unknown advantage method {method!r}")
    return out.reshape(-1)


class Group(NamedTuple):
    """``rows`` consecutive rows baselined together in groups of ``size`` by ``method`` (a
    ``group_advantages`` method)."""
    rows: int
    size: int
    method: str


def grouped_advantages(rewards: jax.Array, groups: tuple[Group, ...]) -> jax.Array:
    """Per-sequence advantages [R] of rewards [R] whose consecutive row segments are baselined
    each by its own ``Group`` (self-play: the proposer's rows over their role, the solver's per
    problem); the segments' rows sum to R."""
    if sum(g.rows for g in groups) != rewards.shape[0]:
        raise ValueError(f"groups {groups} do not cover the {rewards.shape[0]} rows")
    if len(groups) == 1:
        return group_advantages(rewards, groups[0].size, groups[0].method)
    starts = [sum(g.rows for g in groups[:i]) for i in range(len(groups))]
    return jnp.concatenate([group_advantages(rewards[s:s + g.rows], g.size, g.method)
                            for s, g in zip(starts, groups)])


def broadcast_to_tokens(seq_adv: jax.Array, response_mask: jax.Array) -> jax.Array:
    """[R] sequence advantages -> [R, T] on the response tokens."""
    return jnp.where(response_mask.astype(bool), seq_adv[:, None], 0.0)
