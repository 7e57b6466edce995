"""Old log-probs: recomputed by the training forward pass, truncated importance weights against
the sampler's, and their mismatch."""

import jax
import jax.numpy as jnp
import numpy as np

from o1jax.models import Transformer, preset
from o1jax.rl.config import RLConfig
from o1jax.rl.logprobs import logprob_mismatch, old_logprobs
from o1jax.rl.state import init_state
from o1jax.rollout import token_logprobs

V = 16


def test_truncated_importance_weights_are_capped_ratios():
    policy = Transformer(preset("tiny", vocab_size=V, max_seq_len=32))
    params = policy.init(jax.random.key(0))
    cfg = RLConfig(algorithm="grpo", group_size=2, tis_cap=1.5)
    state = init_state(params, cfg, jax.random.key(1))
    tokens = jnp.asarray(np.random.RandomState(0).randint(1, V, (4, 8)), jnp.int32)
    mask = jnp.ones((4, 8), bool)
    resp = mask.at[:, :4].set(False)
    exact = token_logprobs(policy, params, tokens, mask)[0]
    shift = jnp.asarray(np.random.RandomState(1).uniform(-1, 1, (4, 8)), jnp.float32)
    old, ref, w, mismatch = old_logprobs(state, tokens, mask, resp, exact + shift,
                                         policy=policy, cfg=cfg, temperature=1.0)
    expect = np.where(resp, np.minimum(np.exp(-np.asarray(shift)), 1.5), 0.0)
    np.testing.assert_allclose(w, expect, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(old, np.where(resp, exact, 0.0), atol=1e-6)
    np.testing.assert_allclose(mismatch["mismatch_max"], np.abs(shift)[np.asarray(resp)].max(),
                               rtol=1e-5)


def test_mismatch_against_a_python_loop():
    rs = np.random.RandomState(2)
    a, b = rs.normal(size=(3, 5)), rs.normal(size=(3, 5)) * 0.01
    mask = rs.rand(3, 5) > 0.3
    m = logprob_mismatch(jnp.asarray(a), jnp.asarray(a + b), jnp.asarray(mask))
    deltas = [abs(b[i, j]) for i in range(3) for j in range(5) if mask[i, j]]
    np.testing.assert_allclose(m["mismatch_mean"], sum(deltas) / len(deltas), rtol=1e-5)
    np.testing.assert_allclose(m["mismatch_max"], max(deltas), rtol=1e-5)
    np.testing.assert_allclose(m["mismatch_frac"], sum(d > 0.01 for d in deltas) / len(deltas),
                               rtol=1e-6)
