"""Advantages against plain Python references on random inputs."""

import numpy as np
import pytest

from o1jax.rl import advantages as A


def _random_rows(seed, r=6, t=9):
    rng = np.random.RandomState(seed)
    rewards = rng.randn(r, t).astype(np.float32)
    values = rng.randn(r, t).astype(np.float32)
    mask = np.zeros((r, t), bool)
    for i in range(r):
        start = rng.randint(0, 4)
        mask[i, start:start + rng.randint(1, t - start + 1)] = True
    mask[0, 5] = False if mask[0].sum() > 2 else mask[0, 5]  # a gap inside a row
    return rewards, values, mask


def gae_reference(rewards, values, mask, gamma, lam):
    adv = np.zeros_like(rewards)
    for i in range(rewards.shape[0]):
        cols = [t for t in range(rewards.shape[1]) if mask[i, t]]
        next_v, next_a = 0.0, 0.0
        for t in reversed(cols):
            delta = rewards[i, t] + gamma * next_v - values[i, t]
            next_a = delta + gamma * lam * next_a
            adv[i, t] = next_a
            next_v = values[i, t]
    return adv


@pytest.mark.parametrize("gamma, lam", [(1.0, 1.0), (0.99, 0.95), (0.9, 0.0), (1.0, 0.5)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gae_matches_python_loop(gamma, lam, seed):
    rewards, values, mask = _random_rows(seed)
    adv, ret = A.gae(rewards, values, mask, gamma, lam)
    ref = gae_reference(rewards, values, mask, gamma, lam)
    np.testing.assert_allclose(np.asarray(adv), ref, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ret), (ref + values) * mask, atol=1e-5)


def test_gae_gamma_lambda_one_is_reward_to_go_minus_value():
    rewards, values, mask = _random_rows(5)
    adv, _ = A.gae(rewards, values, mask, 1.0, 1.0)
    for i in range(rewards.shape[0]):
        for t in np.flatnonzero(mask[i]):
            togo = rewards[i][mask[i]][list(np.flatnonzero(mask[i])).index(t):].sum()
            assert abs(float(adv[i, t]) - (togo - values[i, t])) < 1e-4


def test_token_rewards_put_outcome_on_last_token():
    mask = np.array([[0, 1, 1, 1, 0], [1, 1, 0, 0, 0]], bool)
    r = np.asarray(A.token_rewards(np.array([2.0, -1.0]), mask))
    np.testing.assert_array_equal(r, [[0, 0, 0, 2, 0], [0, -1, 0, 0, 0]])


def group_reference(rewards, g, method):
    out = []
    for grp in rewards.reshape(-1, g):
        for j, x in enumerate(grp):
            if method == "grpo":
                out.append((x - grp.mean()) / (grp.std() + 1e-6))
            elif method == "dr_grpo":
                out.append(x - grp.mean())
            elif method == "rloo":
                out.append(x - (grp.sum() - x) / (g - 1))
    if method == "reinforce_pp":
        return (rewards - rewards.mean()) / (rewards.std() + 1e-6)
    return np.array(out)


@pytest.mark.parametrize("method", ["grpo", "dr_grpo", "rloo", "reinforce_pp"])
def test_group_baselines_match_python(method):
    rng = np.random.RandomState(0)
    rewards = rng.randint(0, 2, 32).astype(np.float32) + 0.1 * rng.randn(32).astype(np.float32)
    got = np.asarray(A.group_advantages(rewards, 4, method))
    np.testing.assert_allclose(got, group_reference(rewards.astype(np.float64), 4, method),
                               atol=1e-4)


def test_constant_groups_carry_no_signal():
    got = A.group_advantages(np.array([1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0]), 4, "grpo")
    np.testing.assert_allclose(np.asarray(got)[:4], 0.0)
    assert np.abs(np.asarray(got)[4:]).min() > 0.9


def test_whiten():
    rng = np.random.RandomState(1)
    x = rng.randn(4, 6).astype(np.float32) * 3 + 2
    mask = rng.rand(4, 6) > 0.3
    w = np.asarray(A.whiten(x, mask))
    assert abs(w[mask].mean()) < 1e-5 and abs(w[mask].std() - 1) < 1e-3
    assert np.all(w[~mask] == 0)


def test_bad_group_args():
    with pytest.raises(ValueError, match="groups of 3"):
        A.group_advantages(np.zeros(8), 3)
    with pytest.raises(ValueError, match="unknown advantage"):
        A.group_advantages(np.zeros(8), 4, "ppo2")


def test_whiten_does_not_amplify_a_batch_without_signal():
    x = np.full((2, 4), 0.5, np.float32) + 1e-6 * np.arange(8, dtype=np.float32).reshape(2, 4)
    w = np.asarray(A.whiten(x, np.ones((2, 4), bool)))
    assert np.abs(w).max() < 1e-3
