"""prefill and decode_step, the pieces search and self-play reuse, against a full forward pass
without a cache (an independent computation of the same logits)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from o1jax.models import Transformer, positions_from_mask, preset
from o1jax.rollout import SamplingConfig, decode_params, decode_step, pad_prompts, prefill
from o1jax.rollout.decoding import _last_positive, inverse_cdf_sample, repeat_cache

PROMPTS = [[257, 49, 50, 43], [257, 55], [257, 104, 105, 32, 116]]


def _model():
    model = Transformer(preset("tiny", vocab_size=320, max_seq_len=64))
    return model, model.init(jax.random.key(0))


def _full_logits(model, params, tokens, mask):
    """Next-token log-probs after the last column of each row, from one uncached forward."""
    logits, _ = model.apply(params, tokens, positions_from_mask(mask), mask)
    return jax.nn.log_softmax(logits[:, -1], axis=-1)


def test_prefill_then_decode_steps_match_an_uncached_forward():
    model, params = _model()
    tokens, mask = pad_prompts(PROMPTS, pad_id=0)
    fast = decode_params(model, params)
    cfg = SamplingConfig(max_new_tokens=8, temperature=1.0)
    cache, logits = jax.jit(functools.partial(prefill, model, length=tokens.shape[1] + 6))(
        fast, tokens, mask)
    np.testing.assert_allclose(jax.nn.log_softmax(logits, -1),
                               _full_logits(model, params, tokens, mask), atol=2e-5)
    step = jax.jit(functools.partial(decode_step, model, cfg=cfg))
    seq, seq_mask = tokens, mask
    rng = np.random.RandomState(0)
    for i in range(6):
        fed = rng.randint(1, 256, size=len(PROMPTS)).astype(np.int32)  # any tokens, e.g. a search's
        cache, logp, tok = step(fast, cache, jnp.asarray(fed), jax.random.key(i))
        seq = np.concatenate([seq, fed[:, None]], axis=1)
        seq_mask = np.concatenate([seq_mask, np.ones((len(PROMPTS), 1), bool)], axis=1)
        np.testing.assert_allclose(logp, _full_logits(model, params, seq, seq_mask), atol=3e-5)
        assert tok.shape == (len(PROMPTS),) and tok.dtype == jnp.int32
    assert int(cache["index"]) == tokens.shape[1] + 6
    np.testing.assert_array_equal(cache["positions"], mask.sum(1) + 6)


def test_decode_step_greedy_takes_the_argmax_and_temperature_scales():
    model, params = _model()
    tokens, mask = pad_prompts(PROMPTS, pad_id=0)
    cache, _ = prefill(model, params, tokens, mask, tokens.shape[1] + 2)
    last = jnp.asarray([65, 66, 67], jnp.int32)
    _, logp, tok = decode_step(model, params, cache, last, jax.random.key(0),
                               SamplingConfig(max_new_tokens=1, greedy=True))
    np.testing.assert_array_equal(tok, np.argmax(logp, axis=-1))
    _, hot, _ = decode_step(model, params, cache, last, jax.random.key(0),
                            SamplingConfig(max_new_tokens=1, temperature=0.5))
    np.testing.assert_allclose(hot, jax.nn.log_softmax(2.0 * logp, -1), atol=1e-5)


def test_repeated_cache_branches_independently():
    """A node expanded into G children: each copy of the cache continues with its own token and
    matches the uncached forward of its own sequence."""
    model, params = _model()
    tokens, mask = pad_prompts(PROMPTS[:2], pad_id=0)
    cache, _ = prefill(model, params, tokens, mask, tokens.shape[1] + 1)
    cache = repeat_cache(model, cache, 3)
    fed = jnp.asarray([10, 20, 30, 40, 50, 60], jnp.int32)
    _, logp, _ = decode_step(model, params, cache, fed, jax.random.key(0),
                             SamplingConfig(max_new_tokens=1))
    seq = np.concatenate([np.repeat(tokens, 3, 0), np.asarray(fed)[:, None]], 1)
    seq_mask = np.concatenate([np.repeat(mask, 3, 0), np.ones((6, 1), bool)], 1)
    np.testing.assert_allclose(logp, _full_logits(model, params, seq, seq_mask), atol=2e-5)


def test_inverse_cdf_sampling_takes_the_entry_a_plain_loop_takes():
    """One uniform draw per row: the two-level inverse CDF picks the entry a plain Python walk
    over the cumulative mass picks (the first whose cumulative sum exceeds u * total, never one
    of zero mass), with zero-mass blocks, a last block cut short and rows with one entry."""
    rng = np.random.default_rng(0)
    probs = rng.random((64, 300)).astype(np.float32) * (rng.random((64, 300)) < 0.3)
    probs[:8, 128:] = 0.0                         # mass in the first block only
    probs[8:16, :256] = 0.0                       # mass in the cut-short last block only
    probs[16:24] = 0.0
    probs[16:24, rng.integers(0, 300, 8)] = 1.0   # one entry (any of them) per row
    probs[np.arange(24, 64), rng.integers(0, 300, 40)] += 0.5   # no row without mass
    key = jax.random.key(3)
    got = np.asarray(inverse_cdf_sample(jnp.asarray(probs), key))
    u = np.asarray(jax.random.uniform(key, (64, 1)))[:, 0]
    for row, (p, draw) in enumerate(zip(probs.astype(np.float64), u)):
        target, total, want = draw * p.sum(), 0.0, None
        for i, mass in enumerate(p):
            total += mass
            if mass > 0 and total > target:
                want = i
                break
        want = int(np.flatnonzero(p)[-1]) if want is None else want
        assert p[got[row]] > 0, row
        # rounding of f32 sums against f64 may move a draw on a boundary by one entry
        assert got[row] == want or abs(np.cumsum(p)[want] - target) < 1e-4 * p.sum(), row


def test_last_positive_entry_against_a_loop():
    """The guard that keeps rounding off zero-mass entries: the last index holding mass, the
    last index of a row with none."""
    x = np.random.default_rng(1).random((200, 37)) * (np.random.default_rng(2).random((200, 37))
                                                      < np.linspace(0, 0.5, 200)[:, None])
    got = np.asarray(_last_positive(jnp.asarray(x, jnp.float32)))
    for row, values in zip(got, x):
        want = max((i for i, v in enumerate(values) if v > 0), default=len(values) - 1)
        assert row == want
    assert (x == 0).all(axis=1).any()              # rows with no mass are among them
