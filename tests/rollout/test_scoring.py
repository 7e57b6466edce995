"""Scoring: every prefix's value in one pass equals scoring each prefix on its own; log-probs
over vocabulary chunks and micro-batches (padding-free ones too) equal the whole computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o1jax.models import Transformer, positions_from_mask, preset, value_params_from_policy
from o1jax.rollout import prefix_values, token_logprobs
from o1jax.rollout.scoring import (length_grouped, map_micro_batches, merge_micro_batches,
                                   row_ends, split_micro_batches)


def test_prefix_values_equal_one_forward_per_prefix():
    cfg = preset("tiny")
    params = value_params_from_policy(Transformer(cfg).init(jax.random.key(0)), jax.random.key(1))
    value = Transformer(cfg, head="value")
    tokens = jax.random.randint(jax.random.key(2), (2, 9), 0, cfg.vocab_size)
    mask = jnp.ones((2, 9), bool).at[1, :3].set(False)
    all_at_once = np.asarray(prefix_values(value, params, tokens, mask))
    for t in range(9):
        m = mask[:, :t + 1]
        v, _ = value.apply(params, tokens[:, :t + 1], positions_from_mask(m), m)
        for row in range(2):
            if mask[row, t]:
                np.testing.assert_allclose(all_at_once[row, t], v[row, -1], atol=1e-5)
            else:
                assert all_at_once[row, t] == 0


def test_token_logprobs_against_a_python_loop():
    cfg = preset("tiny", vocab_size=40)
    model = Transformer(cfg)
    params = model.init(jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(2), (1, 7), 0, 40)
    mask = jnp.ones((1, 7))
    lp, ent = token_logprobs(model, params, tokens, mask, temperature=2.0)
    for t in range(1, 7):
        logits, _ = model.apply(params, tokens[:, :t], jnp.arange(t)[None], jnp.ones((1, t)))
        z = np.asarray(logits[0, -1], np.float64) / 2.0
        p = np.exp(z - z.max())
        p /= p.sum()
        np.testing.assert_allclose(lp[0, t], np.log(p[int(tokens[0, t])]), atol=1e-5)
        np.testing.assert_allclose(ent[0, t], -(p * np.log(p)).sum(), atol=1e-5)


def _policy_and_batch(vocab=40, rows=4, length=9, dtype="float32"):
    model = Transformer(preset("tiny", vocab_size=vocab, dtype=dtype))
    params = model.init(jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(2), (rows, length), 0, vocab)
    mask = jnp.ones((rows, length), bool).at[1, :3].set(False)
    return model, params, tokens, mask


@pytest.mark.parametrize("chunk", [1, 7, 16, 40])   # 7: the last chunk is padded
def test_vocab_chunked_logprobs_and_gradients_equal_the_whole_vocabulary(chunk):
    model, params, tokens, mask = _policy_and_batch()

    def loss(p, c):
        lp, ent = token_logprobs(model, p, tokens, mask, 0.7, vocab_chunk=c)
        return jnp.sum(lp * jnp.arange(lp.size).reshape(lp.shape) / lp.size) + jnp.sum(ent), (
            lp, ent)
    (_, (lp, ent)), g = jax.value_and_grad(loss, has_aux=True)(params, 0)
    (_, (lpc, entc)), gc = jax.value_and_grad(loss, has_aux=True)(params, chunk)
    np.testing.assert_allclose(lpc, lp, atol=2e-6)
    np.testing.assert_allclose(entc, ent, atol=2e-6)
    for a, b in zip(jax.tree.leaves(gc), jax.tree.leaves(g)):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4)


def test_a_vocab_chunk_above_the_vocabulary_is_an_error():
    model, params, tokens, mask = _policy_and_batch()
    with pytest.raises(ValueError, match="vocab_chunk=41 must be in \\[1, 40\\]"):
        token_logprobs(model, params, tokens, mask, vocab_chunk=41)


def test_micro_batches_keep_row_order_and_equal_one_pass():
    model, params, tokens, mask = _policy_and_batch(rows=8)
    full = token_logprobs(model, params, tokens, mask)[0]
    fn = lambda t, m: token_logprobs(model, params, t, m)[0]  # noqa: E731
    for size in (1, 2, 4):
        np.testing.assert_allclose(map_micro_batches(fn, size, tokens, mask), full, atol=1e-6)
    x = jnp.arange(12).reshape(6, 2)
    np.testing.assert_array_equal(merge_micro_batches(split_micro_batches(x, 2)), x)
    with pytest.raises(ValueError, match="micro-batch of 3 rows does not divide the 8 rows"):
        map_micro_batches(fn, 3, tokens, mask)


def test_length_grouped_micro_batches_hold_rows_of_similar_length():
    mask = np.zeros((8, 10), bool)
    lengths = [7, 2, 9, 4, 10, 1, 5, 3]
    for row, n in enumerate(lengths):
        mask[row, 3 - min(n, 3):3 + max(n - 3, 0)] = True    # left-padded prompt, then response
    ends = np.asarray(row_ends(jnp.asarray(mask)))
    expected = [max(np.nonzero(m)[0]) + 1 for m in mask]        # plain loop
    np.testing.assert_array_equal(ends, expected)
    perm = np.asarray(length_grouped(jnp.asarray(ends), 2))
    assert sorted(perm) == list(range(8))
    groups = np.asarray(split_micro_batches(jnp.asarray(ends)[perm], 2))
    np.testing.assert_array_equal(groups, np.sort(ends).reshape(4, 2))


def test_padding_free_micro_batches_equal_one_pass_on_real_tokens():
    """Rows of very different lengths scored 2 at a time, each pair over the shortest of 4
    column counts that holds it: the real tokens' log-probs equal one padded pass; the columns
    past each row's end come back as zeros."""
    model, params, tokens, mask = _policy_and_batch(rows=8)
    width = tokens.shape[1]
    ends = np.random.RandomState(0).randint(2, width + 1, 8)
    mask = jnp.asarray(np.arange(width)[None] < ends[:, None])
    full = np.asarray(token_logprobs(model, params, tokens, mask)[0])
    fn = lambda t, m: token_logprobs(model, params, t, m)[0]  # noqa: E731
    columns = tuple(-(-width * (i + 1) // 4) for i in range(4))
    trimmed = 0
    for size in (2, 8):
        got = np.asarray(jax.jit(lambda t, m: map_micro_batches(fn, size, t, m, columns=columns))(
            tokens, mask))
        np.testing.assert_allclose(np.where(mask, got, 0), np.where(mask, full, 0), atol=1e-6)
        order = np.argsort(ends, kind="stable")
        for group in order.reshape(-1, size):       # rows computed together, by length
            bucket = min(c for c in columns if c >= ends[group].max())
            assert np.all(got[group, bucket:] == 0) and np.all(got[group, 1:bucket] != 0)
            trimmed += bucket < width
    assert trimmed >= 2


def test_vocab_chunks_cut_the_peak_memory_of_the_update():
    """small25m with a 32k vocabulary, 8 rows x 256 tokens, rematerialised layers (as every
    real-hardware config runs): the compiled gradient of the log-prob loss needs at least 4x
    less temporary memory with 1k-entry vocabulary chunks (measured: 1108 MB -> 228 MB)."""
    model = Transformer(preset("small25m", vocab_size=32768, remat=True))
    params = model.param_shapes()
    tokens = jax.ShapeDtypeStruct((8, 256), jnp.int32)
    mask = jax.ShapeDtypeStruct((8, 256), bool)

    def peak(chunk):
        def loss(p, t, m):
            lp, ent = token_logprobs(model, p, t, m, vocab_chunk=chunk)
            return jnp.mean(lp) + 0.01 * jnp.mean(ent)
        compiled = jax.jit(jax.grad(loss)).lower(params, tokens, mask).compile()
        return compiled.memory_analysis().temp_size_in_bytes
    whole, chunked = peak(0), peak(1024)
    assert whole >= 4 * chunked, (whole, chunked)
