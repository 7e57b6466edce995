"""Each loss's gradient against central finite differences (float64), plus behaviour checks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o1jax.rl import losses as L



@pytest.fixture(autouse=True)
def float64():
    """Finite differences need float64; scoped to this module's tests."""
    with jax.enable_x64(True):
        yield


def _fd_check(fn, x, eps=1e-6, atol=1e-6):
    """Compares jax.grad(fn)(x) with central differences, entry by entry."""
    x = np.asarray(x, np.float64)
    g = np.asarray(jax.grad(fn)(jnp.asarray(x)))
    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[idx] = eps
        num[idx] = (float(fn(jnp.asarray(x + d))) - float(fn(jnp.asarray(x - d)))) / (2 * eps)
    np.testing.assert_allclose(g, num, atol=atol, rtol=1e-4)
    return g


def _case(seed=0, r=3, t=5):
    rng = np.random.RandomState(seed)
    mask = rng.rand(r, t) > 0.3
    mask[:, 0] = True
    return (rng.randn(r, t) * 0.3, rng.randn(r, t) * 0.3, rng.randn(r, t), mask)


@pytest.mark.parametrize("agg", L.AGGREGATIONS)
@pytest.mark.parametrize("dual", [None, 3.0])
def test_ppo_policy_loss_gradient(agg, dual):
    logp, old, adv, mask = _case()
    fn = lambda lp: L.ppo_policy_loss(lp, old, adv, mask, 0.2, 0.28, dual, agg)[0]  # noqa: E731
    g = _fd_check(fn, logp)
    assert np.all(g[~mask] == 0)


def test_ppo_clipping_zeroes_gradient_outside_the_trust_region():
    old = np.zeros((1, 2))
    logp = np.array([[0.5, -0.5]])   # ratios e^0.5 = 1.65 and e^-0.5 = 0.61
    adv = np.array([[1.0, -1.0]])    # both clipped: gain beyond the region is not rewarded
    g = jax.grad(lambda lp: L.ppo_policy_loss(lp, old, adv, np.ones((1, 2)))[0])(logp)
    np.testing.assert_allclose(np.asarray(g), 0.0)
    loss, stats = L.ppo_policy_loss(logp, old, adv, np.ones((1, 2)))
    assert float(stats["clip_frac"]) == 1.0


def test_dual_clip_bounds_negative_advantage_loss():
    loss, _ = L.ppo_policy_loss(np.array([[3.0]]), np.zeros((1, 1)), np.array([[-1.0]]),
                                np.ones((1, 1)), dual_clip=3.0)
    assert float(loss) == pytest.approx(3.0)   # e^3 = 20 would be the unbounded loss
    loss, _ = L.ppo_policy_loss(np.array([[3.0]]), np.zeros((1, 1)), np.array([[-1.0]]),
                                np.ones((1, 1)))
    assert float(loss) == pytest.approx(np.exp(3.0))


@pytest.mark.parametrize("clip", [None, 0.2])
def test_value_loss_gradient(clip):
    v, old_v, ret, mask = _case(1)
    _fd_check(lambda x: L.value_loss(x, old_v, ret, mask, clip), v)


@pytest.mark.parametrize("kind", ["k1", "k2", "k3"])
def test_kl_estimators_gradient_and_unbiasedness(kind):
    logp, ref, _, mask = _case(2)
    _fd_check(lambda x: L.aggregate(L.kl_estimate(x, ref, kind), mask), logp)
    # sampled from p, k1 and k3 average to KL(p || q)
    rng = np.random.RandomState(0)
    p = np.array([0.5, 0.3, 0.2])
    q = np.array([0.2, 0.5, 0.3])
    s = rng.choice(3, 200_000, p=p)
    est = np.asarray(L.kl_estimate(np.log(p[s]), np.log(q[s]), kind)).mean()
    exact = float(np.sum(p * np.log(p / q)))
    if kind in ("k1", "k3"):
        assert abs(est - exact) < 0.01
    assert float(L.kl_estimate(np.array(-3.0), np.array(-3.0), kind)) == 0.0


def test_k3_is_finite_for_extreme_ratios():
    v = L.kl_estimate(np.array([0.0, -200.0]), np.array([-200.0, 0.0]), "k3")
    assert np.all(np.isfinite(np.asarray(v)))


def test_entropy_aggregate_gradient():
    ent, _, _, mask = _case(3)
    _fd_check(lambda x: L.aggregate(x, mask, "seq_mean_token_mean"), ent)


def test_aggregation_modes_by_hand():
    loss = np.array([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = np.array([[1, 1, 1], [1, 0, 0]], bool)
    assert float(L.aggregate(loss, mask, "token_mean")) == pytest.approx(10 / 4)
    assert float(L.aggregate(loss, mask, "seq_mean_token_sum")) == pytest.approx((6 + 4) / 2)
    assert float(L.aggregate(loss, mask, "seq_mean_token_mean")) == pytest.approx((2 + 4) / 2)
    with pytest.raises(ValueError, match="unknown loss aggregation"):
        L.aggregate(loss, mask, "sum")


def test_adaptive_kl_controller_moves_toward_target():
    assert float(L.adaptive_kl_coef(0.1, 0.2, 0.1, 100.0, 10)) > 0.1
    assert float(L.adaptive_kl_coef(0.1, 0.05, 0.1, 100.0, 10)) < 0.1


def _gspo_reference(logp, old_logp, adv, mask, clip_low, clip_high):
    """GSPO's objective (Zheng et al. 2025, eq. 5-7) in plain Python: per sequence the ratio
    s_i = exp(mean over its tokens of log pi - log pi_old), loss_i = -min(s_i A_i,
    clip(s_i, 1 - eps_low, 1 + eps_high) A_i), averaged over sequences."""
    total = 0.0
    for i in range(len(logp)):
        toks = [t for t in range(len(logp[i])) if mask[i][t]]
        s = math.exp(sum(logp[i][t] - old_logp[i][t] for t in toks) / len(toks))
        a = adv[i]
        total += -min(s * a, min(max(s, 1 - clip_low), 1 + clip_high) * a)
    return total / len(logp)


def test_gspo_sequence_ratio_matches_the_papers_formula_and_equals_grpo_on_policy():
    rng = np.random.default_rng(0)
    r, t = 5, 7
    old = rng.normal(-2.0, 0.5, (r, t))
    logp = old + rng.normal(0, 0.3, (r, t))
    mask = np.ones((r, t), bool)
    mask[1, 4:] = False
    mask[3, :2] = False
    adv = rng.normal(0, 1, r)
    tok_adv = np.repeat(adv[:, None], t, 1)
    loss, _ = L.ppo_policy_loss(jnp.asarray(logp), jnp.asarray(old), jnp.asarray(tok_adv),
                                     jnp.asarray(mask), 0.1, 0.15, agg="seq_mean_token_mean",
                                     importance_level="sequence")
    want = _gspo_reference(logp.tolist(), old.tolist(), adv.tolist(), mask.tolist(), 0.1, 0.15)
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)

    def seq(lp):
        return L.ppo_policy_loss(lp, jnp.asarray(old), jnp.asarray(tok_adv),
                                      jnp.asarray(mask), 0.1, 0.15, agg="seq_mean_token_mean",
                                      importance_level="sequence")[0]
    grad = np.asarray(jax.grad(seq)(jnp.asarray(logp)))
    i, j, eps = 2, 3, 1e-3
    bumped = [logp.copy(), logp.copy()]
    bumped[0][i, j] += eps
    bumped[1][i, j] -= eps
    fd = (_gspo_reference(bumped[0].tolist(), old.tolist(), adv.tolist(), mask.tolist(), 0.1,
                          0.15) -
          _gspo_reference(bumped[1].tolist(), old.tolist(), adv.tolist(), mask.tolist(), 0.1,
                          0.15)) / (2 * eps)
    np.testing.assert_allclose(grad[i, j], fd, rtol=1e-3, atol=1e-7)
    assert np.all(grad[~mask] == 0)

    # on-policy the ratio is 1 and GSPO's loss and gradient are GRPO's
    def at(level):
        return jax.value_and_grad(lambda lp: L.ppo_policy_loss(
            lp, jnp.asarray(old), jnp.asarray(tok_adv), jnp.asarray(mask),
            agg="seq_mean_token_mean", importance_level=level)[0])(jnp.asarray(old))
    (l_seq, g_seq), (l_tok, g_tok) = at("sequence"), at("token")
    np.testing.assert_allclose(float(l_seq), float(l_tok), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g_seq), np.asarray(g_tok), atol=1e-7)
