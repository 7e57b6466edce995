"""Scoring sampled sequences in one forward pass: per-token log-probs and per-prefix values."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from o1jax.models.transformer import Params, Transformer, positions_from_mask


def token_logprobs(policy: Transformer, params: Params, tokens: jax.Array, mask: jax.Array,
                   temperature: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """log p(tokens[:, t] | tokens[:, :t]) under softmax(logits / temperature), and the entropy
    of that distribution, both [B, T] f32, aligned with ``tokens`` (column 0 is 0).

    Same convention as ``Rollout.logprobs``, so a fresh policy reproduces them exactly.
    """
    logits, _ = policy.apply(params, tokens, positions_from_mask(mask), mask)
    logp = jax.nn.log_softmax(logits[:, :-1] / temperature, axis=-1)
    taken = jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
    entropy = -jnp.sum(jnp.exp(logp) * logp, axis=-1)
    pad = jnp.zeros_like(taken[:, :1])
    return jnp.concatenate([pad, taken], 1), jnp.concatenate([pad, entropy], 1)


def prefix_values(value_model: Transformer, params: Params, tokens: jax.Array,
                  mask: jax.Array) -> jax.Array:
    """V(tokens[:, :t+1]) for every prefix in one forward pass: [B, T] f32.

    The value at column t scores the state after token t (the prefix that ends there), which is
    what GAE and test-time search need; padding columns are zeroed.
    """
    values, _ = value_model.apply(params, tokens, positions_from_mask(mask), mask)
    return jnp.where(mask.astype(bool), values, 0.0)
