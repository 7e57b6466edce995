"""The log-probs PPO's ratio compares: the old ones (the sampler's, or recomputed by a training
forward pass), the reference's, truncated importance weights against the sampler's, and the
rollout/training mismatch logged every iteration.

In bf16 the sampler's log-probs (f32 decode attention, one token at a time) and the trainer's
(bf16, whole sequences) differ, so with the sampler's the ratio starts away from 1.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from o1jax.models.transformer import Transformer
from o1jax.rl import losses
from o1jax.rl.config import RLConfig
from o1jax.rl.state import RLState, policy_params, reference_params
from o1jax.models.transformer import positions_from_mask
from o1jax.rollout.scoring import map_micro_batches, token_logprobs

MISMATCH_THRESHOLD = 0.01   # nats: a token's log-prob "differs" beyond this


def logprob_mismatch(logp: jax.Array, other: jax.Array, mask: jax.Array,
                     totals: tuple | None = None) -> dict:
    """|logp - other| over the masked tokens: mean, max and the fraction over 0.01 nats (mean
    and fraction over ``totals`` when given one micro-batch of a minibatch)."""
    delta = jnp.where(mask, jnp.abs(logp - other), 0.0)
    return {"mismatch_mean": losses.aggregate(delta, mask, totals=totals),
            "mismatch_frac": losses.aggregate((delta > MISMATCH_THRESHOLD).astype(jnp.float32),
                                              mask, totals=totals),
            "mismatch_max": jnp.max(delta)}


def score_logprobs(policy: Transformer, params, tokens: jax.Array, mask: jax.Array, *,
                   cfg: RLConfig, temperature: float, columns: tuple[int, ...] = (),
                   images: jax.Array | None = None, experts: jax.Array | None = None
                   ) -> jax.Array:
    """Training-forward log-probs [R, T] of every row, as many rows at a time as the update's
    forward pass takes (``cfg.micro_batch``, else a minibatch): the same shapes give the same
    numerics, so recomputed old log-probs match the update's first forward pass exactly
    (padding-free, with ``columns``, the trimmed shapes can differ from the update's)."""
    extra = {k: v for k, v in (("images", images), ("experts", experts)) if v is not None}
    return map_micro_batches(
        lambda t, m, ex: token_logprobs(policy, params, t, m, temperature, cfg.vocab_chunk,
                                        **ex)[0],
        cfg.micro_batch or tokens.shape[0] // cfg.minibatches, tokens, mask, extra,
        columns=columns)


def router_mismatch(policy: Transformer, params, tokens: jax.Array, mask: jax.Array,
                    resp: jax.Array, experts: jax.Array, micro_batch: int) -> jax.Array:
    """The share of (token, layer) pairs whose set of experts the trainer's forward pass picks
    differently from the sampler's record ``experts`` [R, T, L, k], over the tokens whose
    routing the response's log-probs read (each response token's predecessor)."""
    def differs(t, m, e):
        own = policy.hidden(params, t, positions_from_mask(m), m, with_experts=True)[2]["experts"]
        same = jnp.all(jnp.sort(own, axis=-1) == jnp.sort(e, axis=-1), axis=-1)   # [r, T, L]
        return jnp.mean(1.0 - same.astype(jnp.float32), axis=-1)
    per_token = map_micro_batches(differs, micro_batch or tokens.shape[0], tokens, mask,
                                  experts)
    used = jnp.concatenate([resp[:, 1:], jnp.zeros_like(resp[:, :1])], axis=1)
    return jnp.sum(jnp.where(used, per_token, 0.0)) / jnp.maximum(jnp.sum(used), 1)


def old_logprobs(state: RLState, tokens: jax.Array, mask: jax.Array, resp: jax.Array,
                 rollout_logp: jax.Array, *, policy: Transformer, cfg: RLConfig,
                 temperature: float, columns: tuple[int, ...] = (),
                 images: jax.Array | None = None, experts: jax.Array | None = None
                 ) -> tuple[jax.Array, jax.Array, jax.Array, dict]:
    """(old, reference, importance weights, mismatch). The old log-probs are the sampler's, or
    with ``cfg.recomputes_old_logprobs`` the training forward pass's on the same parameters, so
    the first minibatch's ratio starts at 1 whatever the sampler's numerics (veRL's default);
    mismatch = ``logprob_mismatch`` of the two over the whole batch (empty when not
    recomputed). With ``cfg.tis_cap`` each token is weighted min(pi_old / pi_rollout, cap).
    ``columns``: padding-free scoring (``scoring.map_micro_batches``); ``images`` [R, S, S, 3]:
    each row's image (a vision policy); ``experts`` [R, T, L, k]: the sampler's routing, which
    the policy's scoring replays (the reference routes by itself)."""
    score = functools.partial(score_logprobs, policy, tokens=tokens, mask=mask, cfg=cfg,
                              temperature=temperature, columns=columns, images=images)
    old, mismatch = rollout_logp, {}
    if cfg.recomputes_old_logprobs(policy.cfg.compute_dtype):
        old = jnp.where(resp, score(policy_params(state, cfg), experts=experts), 0.0)
        mismatch = logprob_mismatch(old, rollout_logp, resp)
    ref = score(reference_params(state)) if cfg.uses_reference else old
    weights = jnp.ones_like(old)
    if cfg.tis_cap is not None:
        log_w = jnp.clip(old - rollout_logp, -losses.LOG_RATIO_CLAMP, losses.LOG_RATIO_CLAMP)
        weights = jnp.where(resp, jnp.minimum(jnp.exp(log_w), cfg.tis_cap), 0.0)
    return old, ref, weights, mismatch


MISMATCH_STATS = ("mismatch_mean", "mismatch_frac", "mismatch_max", "ratio_dev_max")


def logged_mismatch(stats: dict, mismatch: dict) -> dict:
    """``logprob_mismatch_{mean,max,frac}``: over the whole batch when the old log-probs were
    recomputed (``mismatch`` from ``old_logprobs``), else measured at the first minibatch of
    the update (``stats``, [E, M] each: the training forward on the sampling parameters against
    the sampler's); ``first_ratio_max_dev`` = max |ratio - 1| there (0 when the old log-probs
    are the trainer's); and a mixture of experts' ``router_mismatch`` (``router_mismatch``)."""
    first = {k: stats[k][0, 0] for k in MISMATCH_STATS}
    source = mismatch if "mismatch_mean" in mismatch else first
    out = {"logprob_mismatch_mean": source["mismatch_mean"],
           "logprob_mismatch_max": source["mismatch_max"],
           "logprob_mismatch_frac": source["mismatch_frac"],
           "first_ratio_max_dev": first["ratio_dev_max"]}
    if "router_mismatch" in mismatch:
        out["router_mismatch"] = mismatch["router_mismatch"]
    return out
