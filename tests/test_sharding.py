"""Sharding on 8 fake CPU devices: sharded forward equals single-device, params really split."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o1jax import sharding
from o1jax.models import Transformer, hf, positions_from_mask, preset

CFG = preset("tiny", num_heads=8, num_kv_heads=4, head_dim=8)


def _forward(model, params, tokens, mask):
    mesh = model.mesh
    batch = sharding.batch_sharding(mesh, 2, tokens.shape)
    out = sharding.named_sharding(mesh, ("act_batch", "act_length", "act_vocab"),
                                  tokens.shape + (model.cfg.vocab_size,))
    fn = jax.jit(lambda p, t, m: model.apply(p, t, positions_from_mask(m), m)[0],
                 in_shardings=(model.shardings(), batch, batch), out_shardings=out)
    return fn(params, tokens, mask)


def test_eight_devices_present():
    assert jax.device_count() == 8


@pytest.mark.parametrize("shape", [(8, 1, 1), (2, 2, 2), (1, 2, 4)])
def test_sharded_forward_equals_single_device(shape):
    tokens = jax.random.randint(jax.random.key(1), (8, 16), 0, CFG.vocab_size)
    mask = jnp.ones((8, 16), bool).at[3, :5].set(False)
    single = Transformer(CFG)
    params = single.init(jax.random.key(0))
    ref, _ = single.apply(params, tokens, positions_from_mask(mask), mask)

    mesh = sharding.make_mesh(shape)
    model = Transformer(CFG, mesh=mesh)
    sharded = model.init_sharded(jax.random.key(0))
    # created already sharded: the same values as the unsharded init, split across devices
    np.testing.assert_allclose(sharded["layers"]["wq"], params["layers"]["wq"], rtol=1e-6)
    data, fsdp, tensor = shape
    L, D, H, Dh, F, V = (CFG.num_layers, CFG.hidden_size, CFG.num_heads, CFG.head_dim,
                         CFG.mlp_dim, CFG.vocab_size)
    expect = {("layers", "wq"): (L, D // fsdp, H // tensor, Dh),
              ("layers", "w_down"): (L, F // tensor, D // fsdp),
              ("embed",): (V // tensor, D // fsdp)}
    for path, shard_shape in expect.items():
        arr = sharded
        for k in path:
            arr = arr[k]
        assert arr.sharding.shard_shape(arr.shape) == shard_shape
        assert {s.data.shape for s in arr.addressable_shards} == {shard_shape}
        assert len(arr.addressable_shards) == 8

    logits = _forward(model, sharded, tokens, mask)
    assert len({s.device for s in logits.addressable_shards}) == 8
    real = np.asarray(mask)
    np.testing.assert_allclose(np.asarray(logits)[real], np.asarray(ref)[real], atol=2e-5)


def test_hf_checkpoint_loads_straight_into_shards(llama_dir):
    _, ref_params = hf.load(llama_dir)
    mesh = sharding.make_mesh((2, 2, 2))
    model, params = hf.load(llama_dir, mesh=mesh)
    wq = params["layers"]["wq"]
    assert wq.sharding.shard_shape(wq.shape) == (2, 32, 2, 16)
    np.testing.assert_array_equal(np.asarray(wq), np.asarray(ref_params["layers"]["wq"]))
    tokens = jax.random.randint(jax.random.key(1), (4, 9), 0, model.cfg.vocab_size)
    mask = jnp.ones((4, 9), bool)
    ref, _ = Transformer(model.cfg).apply(ref_params, tokens, positions_from_mask(mask), mask)
    np.testing.assert_allclose(_forward(model, params, tokens, mask), ref, atol=2e-5)


def test_indivisible_axes_stay_replicated():
    mesh = sharding.make_mesh((1, 1, 8))
    # 4 KV heads cannot be split 8 ways: replicated, not an error
    assert sharding.logical_to_spec(("layers", "embed", "kv_heads", "head_dim"),
                                    (2, 64, 4, 8), mesh) == jax.sharding.PartitionSpec(
                                        None, None, None, None)
    assert sharding.logical_to_spec(("vocab", "embed"), (512, 64), mesh)[0] == "tensor"


@pytest.mark.parametrize("shape, match", [
    ((3, 1, 1), "needs 3 devices but 8"),
    ((-1, 3, 1), "does not divide the 8"),
    ((2, 2), "must have 3 entries"),
    ((-1, -1, 2), "at most one -1"),
])
def test_bad_mesh_shape(shape, match):
    with pytest.raises(ValueError, match=match):
        sharding.make_mesh(shape)


def test_mesh_fill():
    assert dict(sharding.make_mesh((-1, 2, 1)).shape) == {"data": 4, "fsdp": 2, "tensor": 1}
