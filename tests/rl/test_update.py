"""The RL update's gradient accumulation: micro-batches give the whole minibatch's loss,
statistics and gradients (and those of a direct ``jax.grad``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o1jax.models import Transformer, preset
from o1jax.rl import losses
from o1jax.rl.config import RLConfig
from o1jax.rl.update import Targets, accumulated_grads, policy_loss

V = 16


@pytest.mark.parametrize("loss_agg", ["token_mean", "seq_mean_token_sum", "seq_mean_token_mean"])
def test_accumulated_gradients_equal_the_whole_minibatch(loss_agg):
    policy = Transformer(preset("tiny", vocab_size=V, max_seq_len=32))
    params = policy.init(jax.random.key(0))
    rs = np.random.RandomState(0)
    tokens = jnp.asarray(rs.randint(1, V, (8, 10)), jnp.int32)
    mask = jnp.ones((8, 10), bool)
    resp = jnp.asarray(np.arange(10)[None] >= 4 + rs.randint(0, 5, (8, 1)))   # ragged
    f = lambda *shape: jnp.asarray(rs.normal(size=shape) * 0.1, jnp.float32)  # noqa: E731
    mb = Targets(tokens, mask, resp, f(8, 10) - 3, f(8, 10) - 3, f(8, 10), f(8, 10), f(8, 10),
                 f(8, 10), jnp.ones((8, 10)))
    cfg = RLConfig(algorithm="grpo", group_size=2, kl_coef=0.1, loss_agg=loss_agg,
                   entropy_coef=0.01)
    fn = lambda p, m, totals: policy_loss(p, m, totals, jnp.float32(0.1), policy=policy,  # noqa
                                          cfg=cfg, temperature=1.0)
    loss, stats, grads = accumulated_grads(fn, params, mb, 0)
    direct = jax.grad(lambda p: fn(p, mb, losses.totals_of(mb.resp))[0])(params)
    for micro in (1, 2, 4):
        l_m, s_m, g_m = accumulated_grads(fn, params, mb, micro)
        np.testing.assert_allclose(l_m, loss, rtol=1e-5)
        np.testing.assert_allclose(s_m["entropy"], stats["entropy"], rtol=1e-5)
        np.testing.assert_allclose(s_m["mismatch_max"], stats["mismatch_max"], rtol=1e-6)
        for a, b, c in zip(jax.tree.leaves(g_m), jax.tree.leaves(grads), jax.tree.leaves(direct)):
            np.testing.assert_allclose(a, b, atol=1e-7, rtol=1e-4)
            np.testing.assert_allclose(b, c, atol=1e-7, rtol=1e-5)


def test_a_mixture_of_experts_adds_its_weighted_balance_loss_over_micro_batches():
    """A MoE policy's loss carries rl.router_aux_coef x its load-balancing loss, logged as
    router_balance_loss, which micro-batches weigh back to the minibatch's mean."""
    policy = Transformer(preset("tiny", vocab_size=V, max_seq_len=32, architecture="qwen3_moe",
                                qk_norm=True, num_experts=4, experts_per_token=2,
                                moe_mlp_dim=32))
    params = policy.init(jax.random.key(0))
    rs = np.random.RandomState(1)
    tokens = jnp.asarray(rs.randint(1, V, (8, 10)), jnp.int32)
    mask, resp = jnp.ones((8, 10), bool), jnp.asarray(np.arange(10)[None] >= np.full((8, 1), 4))
    f = lambda *shape: jnp.asarray(rs.normal(size=shape) * 0.1, jnp.float32)  # noqa: E731
    mb = Targets(tokens, mask, resp, f(8, 10) - 3, f(8, 10) - 3, f(8, 10), f(8, 10), f(8, 10),
                 f(8, 10), jnp.ones((8, 10)))
    out = {}
    for coef in (0.0, 0.5):
        cfg = RLConfig(algorithm="grpo", group_size=2, router_aux_coef=coef)
        fn = lambda p, m, totals, cfg=cfg: policy_loss(  # noqa: E731
            p, m, totals, jnp.float32(0.0), policy=policy, cfg=cfg, temperature=1.0)
        out[coef] = accumulated_grads(fn, params, mb, 0)[:2]
    whole = float(out[0.0][1]["router_balance_loss"])
    assert 1.0 < whole < 4.0     # k = 2 when perfectly balanced
    np.testing.assert_allclose(float(out[0.5][0] - out[0.0][0]), 0.5 * whole, rtol=1e-5)
    cfg = RLConfig(algorithm="grpo", group_size=2)
    fn = lambda p, m, totals: policy_loss(p, m, totals, jnp.float32(0.0), policy=policy,  # noqa
                                          cfg=cfg, temperature=1.0)
    halves = accumulated_grads(fn, params, mb, 4)[1]["router_balance_loss"]
    first, second = (float(policy.hidden(params, tokens[i::2], jnp.cumsum(mask[i::2], 1) - 1,
                                         mask[i::2], with_experts=True)[2]["balance_loss"])
                     for i in (0, 1))
    np.testing.assert_allclose(float(halves), (first + second) / 2, rtol=1e-5)
