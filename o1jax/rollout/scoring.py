"""Scoring sampled sequences: per-token log-probs and per-prefix values, in one forward pass or
in micro-batches, with the vocabulary whole or in chunks (never [B, T, V] f32 at once)."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from o1jax.models.patches import Patches
from o1jax.models.transformer import Params, Transformer, positions_from_mask


def token_logprobs(policy: Transformer, params: Params, tokens: jax.Array, mask: jax.Array,
                   temperature: float = 1.0, vocab_chunk: int = 0,
                   images: jax.Array | None = None, experts: jax.Array | None = None,
                   with_balance: bool = False) -> tuple:
    """log p(tokens[:, t] | tokens[:, :t]) under softmax(logits / temperature), and the entropy
    of that distribution, both [B, T] f32, aligned with ``tokens`` (column 0 is 0).

    Same convention as ``Rollout.logprobs``, so a fresh policy reproduces them exactly. With
    ``vocab_chunk`` = C > 0 the logits are made C vocabulary entries at a time (an online
    log-sum-exp, rematerialised in the backward pass): peak memory [B, T, C] f32, not [B, T, V].
    ``images`` [B, S, S, 3] uint8: each row's image, read at its placeholder tokens.
    ``experts`` [B, T, L, k] int32: a mixture of experts routes as these say (routing replay);
    ``with_balance``: also its load-balancing loss (a scalar, averaged over layers).
    """
    x, _, routing = policy.hidden(params, tokens, positions_from_mask(mask), mask,
                                  **_image_embeds(policy, params, images), experts=experts,
                                  with_experts=True)
    x, targets = x[:, :-1], tokens[:, 1:]
    if vocab_chunk:
        taken, entropy = _chunked_logprobs(x, policy.unembedding(params), targets, temperature,
                                           vocab_chunk)
    else:
        logp = jax.nn.log_softmax(policy.head_out(params, x) / temperature, axis=-1)
        taken = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
        entropy = -jnp.sum(jnp.exp(logp) * logp, axis=-1)
    pad = jnp.zeros_like(taken[:, :1])
    out = jnp.concatenate([pad, taken], 1), jnp.concatenate([pad, entropy], 1)
    if with_balance:
        return out + (routing["balance_loss"] if routing else jnp.zeros((), jnp.float32),)
    return out


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


def _image_embeds(model: Transformer, params: Params, images: jax.Array | None) -> dict:
    """``image_inputs`` (image tokens and grid) for a vision model's rows, else nothing (so any
    model with the text-only signature scores text)."""
    return {} if images is None else model.image_inputs(params, images)


def prefix_values(value_model: Transformer, params: Params, tokens: jax.Array,
                  mask: jax.Array, images: jax.Array | None = None) -> jax.Array:
    """V(tokens[:, :t+1]) for every prefix in one forward pass: [B, T] f32.

    The value at column t scores the state after token t (the prefix that ends there), which is
    what GAE and test-time search need; padding columns are zeroed.
    """
    values, _ = value_model.apply(params, tokens, positions_from_mask(mask), mask,
                                  **_image_embeds(value_model, params, images))
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


def row_ends(mask: jax.Array) -> jax.Array:
    """[R] int32: one past the last real column of each row of a [R, T] mask (0 when empty)."""
    cols = jnp.arange(1, mask.shape[1] + 1, dtype=jnp.int32)
    return jnp.max(jnp.where(mask.astype(bool), cols, 0), axis=1)


def length_grouped(ends: jax.Array, size: int) -> jax.Array:
    """A row permutation [R] after which ``split_micro_batches(x[perm], size)`` gives micro-batch
    j the j-th ``size`` rows in order of ``ends`` (the shortest rows together), so each
    micro-batch can be trimmed to its own longest row."""
    k = ends.shape[0] // size
    return jnp.argsort(ends).reshape(k, size).T.reshape(-1)


def _per_column(x: jax.Array) -> bool:
    """A leaf with a value per column: [rows, T], or a routing [rows, T, L, k] int32 (images,
    [rows, S, S, 3] uint8 or ``Patches``, are per row)."""
    return x.ndim == 2 or (x.ndim == 4 and x.dtype == jnp.int32)


def on_columns(fn: Callable, columns: tuple[int, ...], ends: jax.Array, *args):
    """``fn(*args)`` with every per-column leaf of ``args`` (``_per_column``; other leaves, e.g.
    images, pass whole) cut to its first c columns, c
    the shortest of ``columns`` (ascending, the last T) that holds every row's end (``ends``,
    [rows]): one ``lax.switch`` branch per length, so one compiled program serves them all, and
    ``fn``'s outputs must have the same shapes for every c. Columns past a row's last real token
    are padding and attention is causal, so the real columns' results are those over all T."""
    def cut(c: int):
        return lambda *a: fn(*jax.tree.map(
            lambda x: x[:, :c] if not isinstance(x, Patches) and _per_column(x) else x, a,
            is_leaf=lambda x: isinstance(x, Patches)))
    bucket = jnp.searchsorted(jnp.asarray(columns), jnp.max(ends))   # first length >= it
    return jax.lax.switch(bucket, [cut(c) for c in columns], *args)


def map_micro_batches(fn: Callable, size: int, *args, columns: tuple[int, ...] = ()):
    """``fn(*args)`` over the rows of ``args`` ``size`` rows at a time (``lax.map``), results
    reassembled in row order; ``size`` 0 or all rows: one call. With ``columns`` (padding-free;
    ``args[1]`` is the [R, T] mask, ``fn`` returns [rows, T, ...] leaves) the rows are grouped by
    length and each call runs over the shortest of ``columns`` that holds its rows
    (``on_columns``), its outputs zero-padded back to T columns."""
    rows = jax.tree.leaves(args)[0].shape[0]
    size = size if size and size < rows else rows
    if rows % size:
        raise ValueError(f"micro-batch of {size} rows does not divide the {rows} rows")
    if len(columns) <= 1:
        if size == rows:
            return fn(*args)
        return merge_micro_batches(jax.lax.map(lambda a: fn(*a), split_micro_batches(args, size)))
    width = args[1].shape[1]

    def padded(*a):
        return jax.tree.map(
            lambda y: jnp.pad(y, [(0, 0), (0, width - y.shape[1])] + [(0, 0)] * (y.ndim - 2)),
            fn(*a))
    ends = row_ends(args[1])
    perm = length_grouped(ends, size)
    parts = split_micro_batches((ends[perm],) + jax.tree.map(lambda x: x[perm], args), size)
    out = merge_micro_batches(jax.lax.map(lambda a: on_columns(padded, columns, *a), parts))
    inverse = jnp.argsort(perm)
    return jax.tree.map(lambda y: y[inverse], out)
