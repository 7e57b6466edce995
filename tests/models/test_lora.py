"""LoRA adapters: a fresh adapter changes nothing, a trained one adds scale * (x A) B to each
adapted projection (checked against that formula on the projection itself and in a forward pass
written out by hand), gradients reach only the adapters, and they shard by the weights' names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o1jax import sharding
from o1jax.models import Transformer, positions_from_mask, preset
from o1jax.models import lora

CFG = lora.LoraConfig(rank=4, alpha=8.0)


def _model_and_params():
    model = Transformer(preset("tiny"))
    return model, model.init(jax.random.key(0))


def _trained(adapters, key=1):
    """Adapters with B made nonzero, as after some training."""
    leaves, tree = jax.tree.flatten(adapters)
    keys = jax.random.split(jax.random.key(key), len(leaves))
    return jax.tree.unflatten(tree, [x + 0.05 * jax.random.normal(k, x.shape, x.dtype)
                                     for x, k in zip(leaves, keys)])


def _logits(model, params):
    tokens = jax.random.randint(jax.random.key(2), (2, 9), 0, 512)
    mask = jnp.ones((2, 9), bool).at[0, :3].set(False)
    out, _ = jax.jit(model.apply)(params, tokens, positions_from_mask(mask), mask)
    return np.asarray(out)[np.asarray(mask)]


def test_a_fresh_adapter_leaves_the_model_unchanged():
    model, params = _model_and_params()
    adapters = lora.init(jax.random.key(5), params, CFG)
    assert all(float(jnp.abs(ab["b"]).max()) == 0 for ab in adapters["layers"].values())
    np.testing.assert_array_equal(_logits(model, lora.merge(params, adapters, CFG)),
                                  _logits(model, params))


def test_each_projection_adds_the_scaled_low_rank_product():
    _, params = _model_and_params()
    adapters = _trained(lora.init(jax.random.key(5), params, CFG))
    merged = jax.jit(lora.merge, static_argnums=2)(params, adapters, CFG)
    for name in lora.INPUT_AXES:
        _check_projection(name, params, adapters, merged)


def _check_projection(name, params, adapters, merged):
    w, w2 = np.asarray(params["layers"][name]), np.asarray(merged["layers"][name])
    a = np.asarray(adapters["layers"][name]["a"], np.float64)
    b = np.asarray(adapters["layers"][name]["b"], np.float64)
    n_in = lora.INPUT_AXES[name]
    x = np.random.default_rng(0).normal(size=w.shape[1:1 + n_in])
    for layer in range(w.shape[0]):
        # y = x W' against y = x W + scale * (x A) B, with x contracted over the input axes
        xa = np.tensordot(x, a[layer], axes=n_in)                     # [r]
        want = np.tensordot(x, w[layer], axes=n_in) + CFG.scale * np.tensordot(xa, b[layer], 1)
        np.testing.assert_allclose(np.tensordot(x, w2[layer], axes=n_in), want, rtol=1e-4,
                                   atol=1e-5)


@pytest.mark.parametrize("targets", [lora.ATTENTION + lora.MLP, ("wo", "w_down")])
def test_attached_adapters_run_the_merged_model_scanned_and_unrolled(targets):
    """The training forward's low-rank paths (``attach``) equal the merged weights' forward
    (W + A B, checked by hand above), over the layer scan and unrolled."""
    from o1jax.models.layouts import unstack_layers
    cfg = lora.LoraConfig(rank=4, alpha=8.0, targets=targets)
    model, params = _model_and_params()
    adapters = _trained(lora.init(jax.random.key(5), params, cfg))
    merged = _logits(model, lora.merge(params, adapters, cfg))
    assert np.abs(merged - _logits(model, params)).max() > 1e-3   # the adapters matter
    attached = lora.attach(params, adapters, cfg)
    np.testing.assert_allclose(_logits(model, attached), merged, atol=2e-5, rtol=2e-5)
    unrolled = dict(attached, layers=tuple(
        dict(layer, lora=jax.tree.map(lambda x, i=i: x[i], attached["layers"]["lora"]))
        for i, layer in enumerate(unstack_layers(params)["layers"])))
    np.testing.assert_allclose(_logits(model, unrolled), merged, atol=2e-5, rtol=2e-5)


def test_gradients_reach_only_the_adapters_and_match_finite_differences():
    model, params = _model_and_params()
    adapters = _trained(lora.init(jax.random.key(5), params, CFG))
    tokens = jax.random.randint(jax.random.key(3), (2, 8), 0, 512)
    mask = jnp.ones((2, 8), bool)

    def loss(adapters):
        out, _ = model.apply(lora.attach(params, adapters, CFG), tokens,
                             positions_from_mask(mask), mask)
        return jnp.mean(jax.nn.log_softmax(out.astype(jnp.float32))[..., 7])

    grads = jax.jit(jax.grad(loss))(adapters)
    assert jax.tree.structure(grads) == jax.tree.structure(adapters)   # nothing of the base
    g = grads["layers"]["wv"]["a"]
    i = (1, 3, 2)
    eps = 1e-2

    def bumped(step):
        wv = dict(adapters["layers"]["wv"], a=adapters["layers"]["wv"]["a"].at[i].add(step))
        return jax.jit(loss)(dict(adapters, layers=dict(adapters["layers"], wv=wv)))

    fd = (bumped(eps) - bumped(-eps)) / (2 * eps)
    np.testing.assert_allclose(float(g[i]), float(fd), rtol=2e-2, atol=1e-5)


def test_adapters_shard_by_the_weights_names():
    model, params = _model_and_params()
    axes = lora.adapter_axes(model.param_axes(), lora.LoraConfig(rank=2, targets=("wo", "w_up")))
    assert axes == {"layers": {
        "wo": {"a": ("layers", "heads", "head_dim", "lora_rank"),
               "b": ("layers", "lora_rank", "embed")},
        "w_up": {"a": ("layers", "embed", "lora_rank"), "b": ("layers", "lora_rank", "mlp")}}}
    shapes = jax.eval_shape(lambda: lora.init(jax.random.key(0), params,
                                              lora.LoraConfig(rank=2, targets=("wo", "w_up"))))
    shards = sharding.tree_shardings(sharding.make_mesh((1, -1, 1)), axes, shapes)
    assert jax.tree.structure(shards) == jax.tree.structure(shapes)   # every name has a rule


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="LoRA targets"):
        lora.LoraConfig(targets=("embed",))
    with pytest.raises(ValueError, match="rank"):
        lora.LoraConfig(rank=0)
