"""The compiled RL iteration: PPO and GRPO learn a toy task; sharding changes nothing; a
non-finite update is skipped."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o1jax import sharding
from o1jax.models import Transformer, preset
from o1jax.rl.config import RLConfig
from o1jax.rl.iteration import make_iteration
from o1jax.rl.state import init_state

V, P = 16, 6
TARGET = 5


def toy_reward(roll, example_ids):
    """1 when the first response token is TARGET (a random policy hits it 1/16 of the time)."""
    r = (roll.tokens[:, P] == TARGET).astype(jnp.float32)
    return r, {"accuracy": jnp.mean(r)}


def _setup(algorithm, mesh=None, **kw):
    policy = Transformer(preset("tiny", vocab_size=V, max_seq_len=32), mesh=mesh)
    params = policy.init(jax.random.key(0))
    args = dict(algorithm=algorithm, policy_lr=3e-3, value_lr=3e-3, epochs=2, minibatches=2,
                batch_prompts=8, group_size=8, max_new_tokens=3)
    args.update(kw)
    cfg = RLConfig(**args)
    state = init_state(params, cfg, jax.random.key(1))
    it, shardings = make_iteration(policy, cfg, toy_reward, stop_ids=(0,))
    if mesh is not None:
        state = jax.device_put(state, shardings)
    return state, it


def _batch(i):
    toks = np.random.RandomState(i).randint(1, V, (8, P)).astype(np.int32)
    return {"tokens": toks, "mask": np.ones_like(toks, bool), "example_ids": np.arange(8)}


@pytest.mark.parametrize("algorithm", ["ppo", "grpo"])
def test_rl_raises_reward_on_a_toy_task(algorithm):
    state, it = _setup(algorithm)
    rewards = []
    for i in range(25):
        state, m = it(state, _batch(i), jax.random.fold_in(jax.random.key(2), i))
        rewards.append(float(m["reward_mean"]))
    assert np.mean(rewards[:3]) < 0.3
    assert np.mean(rewards[-3:]) > 0.8, rewards
    assert int(state.step) == 25 and float(m["skipped_updates"]) == 0


@pytest.mark.parametrize("algorithm, shape", [("ppo", (2, 2, 2)), ("grpo", (8, 1, 1)),
                                               ("ppo", (1, 2, 4))])
def test_sharded_iteration_equals_single_device(algorithm, shape):
    single, it1 = _setup(algorithm)
    mesh = sharding.make_mesh(shape)
    sharded, it8 = _setup(algorithm, mesh=mesh)
    for i in range(2):
        key = jax.random.fold_in(jax.random.key(2), i)
        single, m1 = it1(single, _batch(i), key)
        sharded, m8 = it8(sharded, _batch(i), key)
        for k in m1:
            np.testing.assert_allclose(float(m8[k]), float(m1[k]), rtol=2e-3, atol=2e-4,
                                       err_msg=k)
    wq = sharded.policy["layers"]["wq"]
    assert len(wq.sharding.device_set) == 8
    np.testing.assert_allclose(np.asarray(wq), np.asarray(single.policy["layers"]["wq"]),
                               atol=1e-4)


@pytest.mark.parametrize("algorithm", ["ppo", "grpo"])
def test_critic_warmup_freezes_the_policy_only_with_a_critic(algorithm):
    state, it = _setup(algorithm, critic_warmup=2)
    embed = np.asarray(state.policy["embed"]).copy()
    value = np.asarray(state.critic["embed"]).copy() if algorithm == "ppo" else None
    moved = []
    for i in range(3):
        state, _ = it(state, _batch(i), jax.random.key(i))
        moved.append(not np.array_equal(np.asarray(state.policy["embed"]), embed))
        embed = np.asarray(state.policy["embed"]).copy()
    # PPO: two critic-only iterations, then the policy moves; GRPO has no critic to warm up
    assert moved == ([False, False, True] if algorithm == "ppo" else [True, True, True])
    if value is not None:
        assert not np.array_equal(np.asarray(state.critic["embed"]), value)


def test_nonfinite_update_is_skipped():
    policy = Transformer(preset("tiny", vocab_size=V, max_seq_len=32))
    params = policy.init(jax.random.key(0))
    cfg = RLConfig(algorithm="grpo", batch_prompts=2, group_size=4, max_new_tokens=3)

    def nan_reward(roll, ids):
        r = jnp.where(jnp.arange(roll.tokens.shape[0]) == 0, jnp.nan, 1.0)
        return r, {}

    state = init_state(params, cfg, jax.random.key(1))
    before = np.asarray(state.policy["embed"]).copy()
    it, _ = make_iteration(policy, cfg, nan_reward)
    state, m = it(state, _batch(0) | {"tokens": _batch(0)["tokens"][:2],
                                       "mask": _batch(0)["mask"][:2],
                                       "example_ids": np.arange(2)}, jax.random.key(0))
    assert float(m["skipped_updates"]) == 1.0
    np.testing.assert_array_equal(np.asarray(state.policy["embed"]), before)
    assert np.all(np.isfinite(np.asarray(state.policy["embed"])))

