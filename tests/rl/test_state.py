"""The typed RL state: optional parts present only when used, shardings derived from the
parameters' logical axes (checked leaf by leaf against the parameter at the same path)."""

import jax
import numpy as np
import pytest

from o1jax import sharding
from o1jax.models import Transformer, preset
from o1jax.rl.config import RLConfig
from o1jax.rl.state import init_state, state_shardings


def _policy(mesh=None):
    return Transformer(preset("tiny", vocab_size=64, max_seq_len=32), mesh=mesh)


@pytest.mark.parametrize("algorithm, kl_coef, critic, ref", [
    ("ppo", 0.1, True, True), ("ppo", 0.0, True, False), ("grpo", 0.0, False, False),
    ("grpo", 0.05, False, True)])
def test_optional_parts_exist_only_when_used(algorithm, kl_coef, critic, ref):
    cfg = RLConfig(algorithm=algorithm, kl_coef=kl_coef)
    params = _policy().init(jax.random.key(0))
    s = init_state(params, cfg, jax.random.key(1))
    assert (s.critic is not None, s.critic_opt is not None, s.ref is not None) == \
        (critic, critic, ref)
    if ref:  # a frozen copy, not the same buffers
        np.testing.assert_array_equal(s.ref["embed"], params["embed"])
        assert s.ref["embed"] is not params["embed"]
    if critic:  # the policy backbone with a value head
        np.testing.assert_array_equal(s.critic["layers"]["wq"], params["layers"]["wq"])
        assert s.critic["value_head"]["w"].shape == (params["final_norm"].shape[0],)


def _param_specs(model, mesh):
    """{path tuple: spec} straight from the logical axes, one rule application per parameter."""
    out = {}
    shapes = model.param_shapes()
    for path, axes in jax.tree_util.tree_flatten_with_path(model.param_axes(),
                                                           is_leaf=sharding.is_axes)[0]:
        keys = tuple(p.key for p in path)
        leaf = shapes
        for k in keys:
            leaf = leaf[k]
        out[keys] = sharding.logical_to_spec(axes, leaf.shape, mesh)
    return out


def test_shardings_follow_the_parameters_logical_axes():
    mesh = sharding.make_mesh((2, 2, 2))
    policy = _policy(mesh)
    cfg = RLConfig(algorithm="ppo", kl_coef=0.1)
    sh = state_shardings(mesh, policy, cfg)
    pol = _param_specs(policy, mesh)
    val = _param_specs(Transformer(policy.cfg, head="value"), mesh)
    assert any(s != jax.sharding.PartitionSpec() for s in pol.values())  # something is split
    checked = 0
    for field, specs in (("policy", pol), ("ref", pol), ("critic", val),
                         ("policy_opt", pol), ("critic_opt", val)):
        for path, s in jax.tree_util.tree_flatten_with_path(getattr(sh, field))[0]:
            keys = tuple(p.key for p in path if isinstance(p, jax.tree_util.DictKey))
            if keys in specs:   # a parameter, or an optimizer moment of one
                assert s.spec == specs[keys], (field, keys)
                checked += 1
            else:               # step counts of the optimizer
                assert s.spec == jax.sharding.PartitionSpec(), (field, path)
    # policy + ref + its two adam moments; critic + its two adam moments
    assert checked == 4 * len(pol) + 3 * len(val)
    for leaf in (sh.kl_coef, sh.step, sh.skipped_updates):
        assert leaf.spec == jax.sharding.PartitionSpec()
    state = jax.device_put(init_state(policy.init(jax.random.key(0)), cfg, jax.random.key(1)),
                           sh)
    mu = state.policy_opt[1][0].mu["layers"]["wq"]
    assert mu.sharding.spec == pol[("layers", "wq")] and len(mu.sharding.device_set) == 8
