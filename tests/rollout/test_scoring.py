"""Scoring: every prefix's value in one pass equals scoring each prefix on its own."""

import jax
import jax.numpy as jnp
import numpy as np

from o1jax.models import Transformer, positions_from_mask, preset, value_params_from_policy
from o1jax.rollout import prefix_values, token_logprobs


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
