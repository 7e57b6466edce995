"""Scoring sampled sequences: per-token log-probs and per-prefix values, in one forward pass or
in micro-batches, with the vocabulary whole or in chunks (never [B, T, V] f32 at once)."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from o1jax.models.transformer import Params, Transformer, positions_from_mask


def token_logprobs(policy: Transformer, params: Params, tokens: jax.Array, mask: jax.Array,
                   temperature: float = 1.0, vocab_chunk: int = 0
                   ) -> tuple[jax.Array, jax.Array]:
    """log p(tokens[:, t] | tokens[:, :t]) under softmax(logits / temperature), and the entropy
    of that distribution, both [B, T] f32, aligned with ``tokens`` (column 0 is 0).

    Same convention as ``Rollout.logprobs``, so a fresh policy reproduces them exactly. With
    ``vocab_chunk`` = C > 0 the logits are made C vocabulary entries at a time (an online
    log-sum-exp, rematerialised in the backward pass): peak memory [B, T, C] f32, not [B, T, V].
    """
    x, _ = policy.hidden(params, tokens, positions_from_mask(mask), mask)
    x, targets = x[:, :-1], tokens[:, 1:]
    if vocab_chunk:
        taken, entropy = _chunked_logprobs(x, policy.unembedding(params), targets, temperature,
                                           vocab_chunk)
    else:
        logp = jax.nn.log_softmax(policy.head_out(params, x) / temperature, axis=-1)
        taken = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
        entropy = -jnp.sum(jnp.exp(logp) * logp, axis=-1)
    pad = jnp.zeros_like(taken[:, :1])
    return jnp.concatenate([pad, taken], 1), jnp.concatenate([pad, entropy], 1)


def _chunked_logprobs(x: jax.Array, w: jax.Array, targets: jax.Array, temperature: float,
                      chunk: int) -> tuple[jax.Array, jax.Array]:
    """(log p(targets), entropy), [B, T] f32, from hidden states x [B, T, D] and the
    unembedding w [D, V], C columns of w at a time."""
    d, v = w.shape
    if not 0 < chunk <= v:
        raise ValueError(f"vocab_chunk={chunk} must be in [1, {v}] (the vocabulary size)")
    n = -(-v // chunk)
    w = jnp.pad(w, ((0, 0), (0, n * chunk - v))).reshape(d, n, chunk).transpose(1, 0, 2)
    lowest = jnp.finfo(jnp.float32).min

    @jax.checkpoint  # the backward pass remakes each chunk's logits instead of storing them
    def add_chunk(carry, xs):
        m, s, t, taken = carry          # running max, sum exp, sum exp * logit, target logit
        wc, start = xs
        cols = start + jnp.arange(chunk)
        logits = (x @ wc.astype(x.dtype)).astype(jnp.float32) / temperature
        logits = jnp.where(cols < v, logits, lowest)
        m_new = jnp.maximum(m, jnp.max(logits, axis=-1))
        scale = jnp.exp(m - m_new)
        e = jnp.exp(logits - m_new[..., None])
        s = s * scale + jnp.sum(e, axis=-1)
        t = t * scale + jnp.sum(e * logits, axis=-1)   # padding columns have e = 0
        taken = taken + jnp.sum(jnp.where(cols == targets[..., None], logits, 0.0), axis=-1)
        return (m_new, s, t, taken), None

    zeros = jnp.zeros(targets.shape, jnp.float32)
    (m, s, t, taken), _ = jax.lax.scan(add_chunk, (zeros + lowest, zeros, zeros, zeros),
                                       (w, jnp.arange(n) * chunk))
    lse = m + jnp.log(s)
    return taken - lse, lse - t / s


def prefix_values(value_model: Transformer, params: Params, tokens: jax.Array,
                  mask: jax.Array) -> jax.Array:
    """V(tokens[:, :t+1]) for every prefix in one forward pass: [B, T] f32.

    The value at column t scores the state after token t (the prefix that ends there), which is
    what GAE and test-time search need; padding columns are zeroed.
    """
    values, _ = value_model.apply(params, tokens, positions_from_mask(mask), mask)
    return jnp.where(mask.astype(bool), values, 0.0)


def split_micro_batches(tree, size: int):
    """Every leaf [R, ...] -> [R / size, size, ...]: micro-batch j holds rows j, j + k, j + 2k,
    ... (k = R / size), so rows sharded in contiguous blocks over the data axes stay on their
    devices and each micro-batch spans all of them."""
    def split(x):
        k = x.shape[0] // size
        return jnp.swapaxes(x.reshape((size, k) + x.shape[1:]), 0, 1)
    return jax.tree.map(split, tree)


def merge_micro_batches(tree):
    """The inverse of ``split_micro_batches``: [k, size, ...] -> [k * size, ...] in row order."""
    return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1).reshape((-1,) + x.shape[2:]), tree)


def map_micro_batches(fn: Callable, size: int, *args):
    """``fn(*args)`` over the rows of ``args`` ``size`` rows at a time (``lax.map``), results
    reassembled in row order; ``size`` 0 or all rows: one call."""
    rows = jax.tree.leaves(args)[0].shape[0]
    if not size or size >= rows:
        return fn(*args)
    if rows % size:
        raise ValueError(f"micro-batch of {size} rows does not divide the {rows} rows")
    return merge_micro_batches(jax.lax.map(lambda a: fn(*a), split_micro_batches(args, size)))
