"""matmul_2d against float64 numpy, and SwiGLU's gradients through it against the batched form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o1jax.models.layers.dense import matmul_2d
from o1jax.models.layers.mlp import swiglu


@pytest.mark.parametrize("lead", [(5,), (3, 7), (2, 3, 4)])
def test_matmul_2d_is_the_matmul_over_the_last_axis(lead):
    rs = np.random.RandomState(0)
    x, w = rs.randn(*lead, 6), rs.randn(6, 5)
    got = matmul_2d(jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32))
    assert got.shape == lead + (5,)
    np.testing.assert_allclose(np.asarray(got), np.einsum("...d,df->...f", x, w), rtol=1e-5,
                               atol=1e-5)


def test_swiglu_gradients_equal_those_of_the_batched_matmuls():
    """The 2-D form is for speed only: the same loss and gradients as [B, T, D] @ [D, F]
    (bit for bit on this project's 2-core machines; a tolerance here, for other CPUs)."""
    rs = np.random.RandomState(1)
    b, t, d, f = 4, 9, 16, 24
    x = jnp.asarray(rs.randn(b, t, d), jnp.float32)
    p = {k: jnp.asarray(rs.randn(*s) * 0.2, jnp.float32)
         for k, s in (("w_gate", (d, f)), ("w_up", (d, f)), ("w_down", (f, d)))}

    def batched(p, x):
        gate = jnp.einsum("btd,df->btf", x, p["w_gate"])
        up = jnp.einsum("btd,df->btf", x, p["w_up"])
        return jnp.einsum("btf,fd->btd", jax.nn.silu(gate) * up, p["w_down"])

    loss = lambda fn: lambda p, x: jnp.sum(jnp.tanh(fn(p, x)))  # noqa: E731
    ours = jax.jit(jax.value_and_grad(loss(lambda p, x: swiglu(x, p)), argnums=(0, 1)))(p, x)
    ref = jax.jit(jax.value_and_grad(loss(batched), argnums=(0, 1)))(p, x)
    for a, r in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(r), rtol=1e-6, atol=1e-6)
