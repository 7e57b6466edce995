"""The one optimizer factory gives the optax chains each stage used before it existed, update for
update, and the non-finite-skipping step leaves the state alone on a NaN."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from o1jax.optim import apply_if_finite, make_optimizer, warmup_cosine


def _run(opt, steps=4):
    params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.ones(4)}
    state = opt.init(params)
    for i in range(steps):
        grads = jax.tree.map(lambda p: jnp.sin(p * (i + 1)) * 3.0, params)
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params


@pytest.mark.parametrize("ours, theirs", [
    # RL: policy and critic
    (lambda: make_optimizer(1e-2, 0.5),
     lambda: optax.chain(optax.clip_by_global_norm(0.5),
                         optax.adamw(1e-2, b1=0.9, b2=0.95, weight_decay=0.0))),
    # SFT: warmup then cosine decay to a tenth
    (lambda: make_optimizer(warmup_cosine(1e-2, 10, 2)),
     lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(
         optax.warmup_cosine_decay_schedule(0.0, 1e-2, 2, 10, end_value=1e-3),
         b1=0.9, b2=0.95, weight_decay=0.0))),
    # value models (train_verifier): plain Adam
    (lambda: make_optimizer(1e-2, 1.0, b2=0.999, weight_decay=None),
     lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)))])
def test_factory_matches_each_stages_chain(ours, theirs):
    for a, b in zip(jax.tree.leaves(_run(ours())), jax.tree.leaves(_run(theirs()))):
        np.testing.assert_array_equal(a, b)


def test_warmup_cosine_schedule():
    s = warmup_cosine(1.0, 10, 2)
    assert float(s(0)) == 0.0 and float(s(2)) == pytest.approx(1.0)
    assert float(s(10)) == pytest.approx(0.1)


def test_non_finite_gradient_skips_the_step():
    opt = make_optimizer(1e-1)
    params = {"w": jnp.ones(3)}
    state = opt.init(params)
    new, new_state, ok = apply_if_finite(params, state, {"w": jnp.array([1.0, jnp.nan, 0.0])},
                                         opt, jnp.float32(1.0))
    assert not bool(ok)
    np.testing.assert_array_equal(new["w"], params["w"])
