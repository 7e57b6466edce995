"""The blocked attention paths against today's ``attend`` over a dense [B, T, S] key mask (built
here, independently): a decode step that reads only the cache's live blocks, and attention over
long sequences in query blocks, outputs and gradients; then the model on either path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.core import jaxprs_in_params

from o1jax.models import Transformer, preset
from o1jax.models.layers import attention
from o1jax.models.layers.attention import (attend, cached_attend, causal_attention,
                                           live_blocks_attend)
from o1jax.rollout import SamplingConfig, make_sampler, pad_prompts, token_logprobs

B, H, KVH = 3, 8, 2              # grouped-query: four query heads per KV head


def _dense_mask(kv_mask, start, t):
    """[B, T, S]: query i sits at slot start + i and reads real slots up to its own."""
    s = kv_mask.shape[1]
    return kv_mask[:, None, :] & (np.arange(s)[None, :] <= start + np.arange(t)[:, None])[None]


def _qkv(t, s, dh, seed=0, b=B, h=H):
    ks = jax.random.split(jax.random.key(seed), 3)
    return (jax.random.normal(ks[0], (b, t, h, dh)), jax.random.normal(ks[1], (b, KVH, dh, s)),
            jax.random.normal(ks[2], (b, KVH, s, dh)))


def _left_padded(s, pads=(0, 5, 70)):
    """[B, S] real slots: row b's first pads[b] slots are padding (70: more than a block)."""
    return np.arange(s)[None, :] >= np.asarray(pads)[:, None]


@pytest.mark.parametrize("s,start,t", [
    (512, 63, 1), (512, 64, 1),          # the last slot of a block, the first of the next
    (700, 650, 1), (700, 699, 1),        # S not a multiple of the block: the last block overlaps
    (1000, 130, 1), (1000, 900, 1),      # a decode step early (live blocks) and late (whole cache)
    (700, 250, 9), (600, 0, 40),         # prefill chunks, the second with padding queries
])
def test_a_cached_step_reads_what_attend_reads(s, start, t):
    q, k, v = _qkv(t, s, 16)
    kv_mask = _left_padded(s)
    mask = _dense_mask(kv_mask, start, t)
    want = np.asarray(attend(q, k, v, jnp.asarray(mask)))
    has_key = mask.any(-1)           # a padding query with no key to read: never read itself
    for fn in (live_blocks_attend, cached_attend) if t == 1 else (cached_attend,):
        got = jax.jit(fn)(q, k, v, jnp.asarray(kv_mask), jnp.int32(start))
        np.testing.assert_allclose(np.asarray(got)[has_key], want[has_key], atol=1e-5, rtol=0)


def test_long_attention_in_query_blocks_matches_attend_and_its_gradients():
    t = attention.QUERY_BLOCKS_FROM + 52             # above the threshold, not a whole block
    q, k, v = _qkv(t, t, 8, seed=1, b=2, h=4)
    kv_mask = _left_padded(t, pads=(0, 300))
    blocked = causal_attention(jnp.asarray(kv_mask), 0, t, cached=False)
    assert callable(blocked)                         # no [B, T, S] mask was built
    mask = jnp.asarray(_dense_mask(kv_mask, 0, t))
    w = jax.random.normal(jax.random.key(2), q.shape)
    value_and_grads = lambda f: jax.jit(jax.value_and_grad(  # noqa: E731
        lambda q, k, v: (jnp.sum(f(q, k, v) * w), f(q, k, v)), (0, 1, 2), has_aux=True))
    (_, got), got_grads = value_and_grads(blocked)(q, k, v)
    (_, want), want_grads = value_and_grads(lambda q, k, v: attend(q, k, v, mask))(q, k, v)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    for g, r in zip(got_grads, want_grads):        # entries up to ~5: f32 sums over 2,100 keys
        np.testing.assert_allclose(g, r, atol=1e-5, rtol=1e-5)


def _today(monkeypatch):
    """Every later trace runs today's code path: one fused ``attend`` over [T, S]."""
    monkeypatch.setattr(attention, "LIVE_BLOCKS_FROM", 1 << 40)
    monkeypatch.setattr(attention, "QUERY_BLOCKS_FROM", 1 << 40)


def _aval_sizes(jaxpr):
    """Element counts of every value a jaxpr (and the jaxprs inside it) makes."""
    for eqn in jaxpr.eqns:
        yield from (int(np.prod(v.aval.shape)) for v in eqn.outvars if hasattr(v.aval, "shape"))
        for sub in jaxprs_in_params(eqn.params):
            yield from _aval_sizes(sub)


def test_long_scoring_matches_today_and_builds_no_t_by_t_array(monkeypatch):
    model = Transformer(preset("tiny", max_seq_len=4096))            # two layers: a layer scan
    params = model.init(jax.random.key(0))
    t = attention.QUERY_BLOCKS_FROM + 52
    tokens = jax.random.randint(jax.random.key(3), (1, t), 0, 512)
    mask = jnp.arange(t)[None, :] >= 40                     # left padding

    def loss(params):
        logp, _ = token_logprobs(model, params, tokens, mask)
        return jnp.sum(jnp.where(mask, logp, 0.0)), logp

    grad = jax.value_and_grad(loss, has_aux=True)
    assert max(_aval_sizes(jax.make_jaxpr(grad)(params).jaxpr)) < t * t
    (_, logp), grads = jax.jit(grad)(params)
    _today(monkeypatch)
    (_, want), want_grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    np.testing.assert_allclose(logp, want, atol=2e-5, rtol=0)
    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
        np.testing.assert_allclose(g, r, atol=1e-5, rtol=1e-4)


def test_greedy_sampling_over_a_long_cache_matches_today(monkeypatch):
    model = Transformer(preset("tiny", max_seq_len=1024))
    params = model.init(jax.random.key(0))
    tokens, mask = pad_prompts([[257, 49, 50, 43], [257, 55], [257, 104, 105, 32, 116, 104, 101,
                                                                114, 101], [257, 50]], pad_id=0)
    cfg = SamplingConfig(max_new_tokens=600, greedy=True)      # a cache of 609 slots
    assert tokens.shape[1] + cfg.max_new_tokens >= attention.LIVE_BLOCKS_FROM
    sample = lambda: make_sampler(model, cfg)(params, tokens, mask, jax.random.key(0))  # noqa
    runs = [sample()]
    monkeypatch.setattr(attention, "LIVE_SHARE", 1.0)          # every step reads live blocks
    runs.append(sample())
    _today(monkeypatch)
    old = sample()
    for new in runs:
        np.testing.assert_array_equal(new.tokens, old.tokens)
        np.testing.assert_allclose(new.logprobs, old.logprobs, atol=1e-5, rtol=0)
