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


def _tiny_moe(dtype="float32"):
    from o1jax.models import Transformer, preset
    cfg = preset("tiny", architecture="qwen3_moe", qk_norm=True, num_experts=4,
                 experts_per_token=2, moe_mlp_dim=32, vocab_size=64, max_seq_len=48, dtype=dtype)
    return Transformer(cfg)


def test_the_rollout_records_the_routing_the_trainer_replays():
    """A tiny MoE's sampler records each fed token's experts per layer; in f32 the trainer's
    own routing of the rollout is the same (router_mismatch 0), replaying it leaves the
    log-probs unchanged, and replaying another routing changes them (the replay is used)."""
    import numpy as np
    from o1jax.rl.logprobs import router_mismatch
    from o1jax.rollout import SamplingConfig
    from o1jax.rollout.sampler import sample
    from o1jax.rollout.scoring import token_logprobs
    model = _tiny_moe()
    params = model.init(jax.random.key(0))
    prompts = jax.random.randint(jax.random.key(1), (4, 6), 1, 64)
    mask = jnp.ones((4, 6), bool).at[1, :2].set(False)
    roll = sample(model, params, prompts, mask, jax.random.key(2),
                  SamplingConfig(max_new_tokens=8, num_samples=2))
    assert roll.experts.shape == (8, 14, 2, 2)
    resp = roll.response_mask
    assert float(router_mismatch(model, params, roll.tokens, roll.mask, resp, roll.experts,
                                 0)) == 0.0
    own, _ = token_logprobs(model, params, roll.tokens, roll.mask)
    replayed, _ = token_logprobs(model, params, roll.tokens, roll.mask,
                                 experts=roll.experts)
    np.testing.assert_allclose(np.asarray(replayed)[np.asarray(resp)],
                               np.asarray(own)[np.asarray(resp)], atol=1e-6)
    other = (roll.experts + 1) % 4
    moved, _ = token_logprobs(model, params, roll.tokens, roll.mask, experts=other)
    assert np.abs(np.asarray(moved - own)[np.asarray(resp)]).max() > 1e-3
    assert float(router_mismatch(model, params, roll.tokens, roll.mask, resp, other, 0)) == 1.0
