"""The decode loop scanned over layers (a stacked cache) against the unrolled one: the same
tokens and log-probs, and a program that does not grow with depth."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from o1jax.models import Transformer, positions_from_mask, preset
from o1jax.rollout import SamplingConfig, decode_params, decode_step, pad_prompts, prefill
from o1jax.rollout.decoding import repeat_cache
from o1jax.rollout.sampler import make_sampler, sample

PROMPTS = [[257, 49, 50, 43], [257, 55], [257, 104, 105, 32, 116]]
UNROLLED, SCANNED = 10 ** 9, 1     # scan_decode_from of each form


def _model(scan_decode_from: int, **kw) -> Transformer:
    return Transformer(preset("tiny", vocab_size=320, max_seq_len=64,
                              scan_decode_from=scan_decode_from, **kw))


def test_scanned_sampling_matches_unrolled():
    tokens, mask = pad_prompts(PROMPTS, pad_id=0)
    params = _model(UNROLLED).init(jax.random.key(0))
    for cfg in (SamplingConfig(max_new_tokens=12, greedy=True),
                SamplingConfig(max_new_tokens=12, num_samples=2)):
        unrolled, scanned = (make_sampler(_model(f), cfg)(params, tokens, mask, jax.random.key(1))
                             for f in (UNROLLED, SCANNED))
        np.testing.assert_array_equal(scanned.tokens, unrolled.tokens)
        np.testing.assert_allclose(scanned.logprobs, unrolled.logprobs, atol=1e-5)


def test_stacked_cache_prefill_branch_and_decode_match_an_uncached_forward():
    model = _model(SCANNED, qkv_bias=True)      # the fused biases too
    params = model.init(jax.random.key(0))
    tokens, mask = pad_prompts(PROMPTS[:2], pad_id=0)
    cache, _ = prefill(model, decode_params(model, params), tokens, mask, tokens.shape[1] + 1)
    assert cache["k"].shape == (model.cfg.num_layers, 2, model.cfg.num_kv_heads,
                                model.cfg.head_dim, tokens.shape[1] + 1)
    cache = repeat_cache(model, cache, 3)
    fed = jnp.asarray([10, 20, 30, 40, 50, 60], jnp.int32)
    _, logp, _ = decode_step(model, decode_params(model, params), cache, fed, jax.random.key(0),
                             SamplingConfig(max_new_tokens=1))
    seq = np.concatenate([np.repeat(tokens, 3, 0), np.asarray(fed)[:, None]], 1)
    seq_mask = np.concatenate([np.repeat(mask, 3, 0), np.ones((6, 1), bool)], 1)
    logits, _ = model.apply(params, seq, positions_from_mask(seq_mask), seq_mask)
    np.testing.assert_allclose(logp, jax.nn.log_softmax(logits[:, -1], -1), atol=2e-5)


def _sampler_text_length(depth: int, scan_decode_from: int) -> int:
    model = _model(scan_decode_from, num_layers=depth)
    fn = functools.partial(sample, model, cfg=SamplingConfig(max_new_tokens=4))
    tokens = jax.ShapeDtypeStruct((2, 8), jnp.int32)
    return len(jax.jit(fn).lower(model.param_shapes(), tokens, tokens, jax.random.key(0))
               .as_text())


def test_scanned_sampler_program_does_not_grow_with_depth():
    scanned = [_sampler_text_length(d, SCANNED) for d in (2, 8)]
    unrolled = [_sampler_text_length(d, UNROLLED) for d in (2, 8)]
    assert scanned[1] < 1.1 * scanned[0]
    assert unrolled[1] > 2 * unrolled[0]        # what the scan saves
