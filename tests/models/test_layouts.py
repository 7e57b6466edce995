"""Decode parameter layouts: weights cast to the compute dtype once give the same numbers as the
f32 master weights cast at every use."""

import jax
import jax.numpy as jnp
import numpy as np

from o1jax.models import Transformer, positions_from_mask, preset
from o1jax.models.layouts import in_compute_dtype


def test_weights_cast_once_give_the_same_logits_bit_for_bit():
    model = Transformer(preset("tiny", dtype="bfloat16", qkv_bias=True, architecture="qwen2"))
    params = model.init(jax.random.key(0))
    params = jax.tree.map(lambda a: a + 0.01 * jax.random.normal(jax.random.key(1), a.shape),
                          params)                      # biases and norms away from 0 and 1
    cast = in_compute_dtype(params, jnp.bfloat16)
    assert all(a.dtype == jnp.bfloat16 for a in jax.tree.leaves(cast["layers"]))
    tokens = jax.random.randint(jax.random.key(2), (2, 9), 0, 512)
    mask = jnp.ones((2, 9), bool).at[0, :3].set(False)
    apply = jax.jit(lambda p: model.apply(p, tokens, positions_from_mask(mask), mask)[0])
    np.testing.assert_array_equal(np.asarray(apply(cast)), np.asarray(apply(params)))
