"""PPO-family losses as small pure functions over [R, T] token arrays, all masked.

Aggregation modes (how a [R, T] per-token loss becomes a scalar):
  token_mean                   sum over all response tokens / number of response tokens
  seq_mean_token_sum           mean over rows of the per-row token sum (Dr. GRPO)
  seq_mean_token_mean          mean over rows of the per-row token mean (original GRPO)

Every loss takes ``totals`` = (response tokens, rows) of the whole minibatch when it is given one
micro-batch of it: the micro-batches' losses (and gradients) then sum to the minibatch's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

AGGREGATIONS = ("token_mean", "seq_mean_token_sum", "seq_mean_token_mean")
LOG_RATIO_CLAMP = 20.0  # exp(20) ~ 5e8: k3 stays finite (veRL clamps the same way)


def totals_of(mask: jax.Array) -> tuple[jax.Array, int]:
    """(response tokens, rows) of a [R, T] mask: the denominators of ``aggregate``."""
    return jnp.sum(mask.astype(jnp.float32)), mask.shape[0]


def aggregate(loss: jax.Array, mask: jax.Array, mode: str = "token_mean",
              totals: tuple | None = None) -> jax.Array:
    mask = mask.astype(loss.dtype)
    tokens, rows = totals if totals is not None else totals_of(mask)
    if mode == "token_mean":
        return jnp.sum(loss * mask) / jnp.maximum(tokens, 1.0)
    per_row = jnp.sum(loss * mask, axis=1)
    if mode == "seq_mean_token_sum":
        return jnp.sum(per_row) / rows
    if mode == "seq_mean_token_mean":
        return jnp.sum(per_row / jnp.maximum(jnp.sum(mask, axis=1), 1.0)) / rows
    raise ValueError(f"unknown loss aggregation {mode!r}; known: {AGGREGATIONS}")


def ppo_policy_loss(logp: jax.Array, old_logp: jax.Array, advantages: jax.Array,
                    mask: jax.Array, clip_low: float = 0.2, clip_high: float = 0.2,
                    dual_clip: float | None = None, agg: str = "token_mean",
                    is_weights: jax.Array | None = None, totals: tuple | None = None,
                    importance_level: str = "token") -> tuple[jax.Array, dict]:
    """Clipped surrogate: -min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A).

    ``clip_high`` > ``clip_low`` is DAPO's clip-higher. ``dual_clip`` = c (> 1) also bounds the
    loss of negative-advantage tokens by -c * A. ``is_weights`` [R, T] (no gradient) multiply
    each token's loss: truncated importance sampling against the rollout engine's log-probs.
    ``importance_level`` "sequence" is GSPO's (Zheng et al. 2025): every token of a row takes
    the row's length-normalised ratio exp(mean_t log(pi / pi_old)), clipped as one, so a
    token's gradient is the sequence ratio's (TRL's ``importance_sampling_level``; GSPO's own
    clip ranges are about 1e-3, not 0.2). Returns the loss and {clip_frac, approx_kl}.
    """
    log_ratio = jnp.clip(logp - old_logp, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    kl_terms = 0.5 * jnp.square(log_ratio)
    if importance_level == "sequence":
        m = mask.astype(log_ratio.dtype)
        seq = jnp.sum(log_ratio * m, axis=1, keepdims=True) / jnp.maximum(
            jnp.sum(m, axis=1, keepdims=True), 1.0)
        log_ratio = jnp.broadcast_to(seq, log_ratio.shape)
    elif importance_level != "token":
        raise ValueError(f"importance_level must be token or sequence, got {importance_level!r}")
    ratio = jnp.exp(log_ratio)
    surr1 = ratio * advantages
    surr2 = jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high) * advantages
    loss = -jnp.minimum(surr1, surr2)
    if dual_clip is not None:
        loss = jnp.where(advantages < 0, jnp.minimum(loss, -dual_clip * advantages), loss)
    if is_weights is not None:
        loss = jax.lax.stop_gradient(is_weights) * loss
    clipped = (surr2 < surr1).astype(jnp.float32)
    stats = {"clip_frac": aggregate(clipped, mask, totals=totals),
             "approx_kl": aggregate(kl_terms, mask, totals=totals)}
    return aggregate(loss, mask, agg, totals), stats


def value_loss(values: jax.Array, old_values: jax.Array, returns: jax.Array, mask: jax.Array,
               clip: float | None = 0.2, agg: str = "token_mean",
               totals: tuple | None = None) -> jax.Array:
    """0.5 * max((V - R)^2, (clip(V, V_old +- clip) - R)^2), or unclipped when clip is None."""
    err = jnp.square(values - returns)
    if clip is not None:
        clipped = old_values + jnp.clip(values - old_values, -clip, clip)
        err = jnp.maximum(err, jnp.square(clipped - returns))
    return 0.5 * aggregate(err, mask, agg, totals)


def kl_estimate(logp: jax.Array, ref_logp: jax.Array, kind: str = "k3") -> jax.Array:
    """Per-token estimate of KL(pi || pi_ref) from samples of pi (Schulman's k1, k2, k3)."""
    log_ratio = jnp.clip(ref_logp - logp, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)  # log(ref / pi)
    if kind == "k1":
        return -log_ratio
    if kind == "k2":
        return 0.5 * jnp.square(log_ratio)
    if kind == "k3":
        return jnp.exp(log_ratio) - 1.0 - log_ratio
    raise ValueError(f"unknown KL estimator {kind!r}; use k1, k2 or k3")


def adaptive_kl_coef(coef: jax.Array, observed_kl: jax.Array, target: float, horizon: float,
                     batch_rows: int) -> jax.Array:
    """Ziegler et al.'s proportional controller:
    coef *= 1 + clip(kl / target - 1, +-0.2) * n / H."""
    error = jnp.clip(observed_kl / target - 1.0, -0.2, 0.2)
    return coef * (1.0 + error * batch_rows / horizon)
