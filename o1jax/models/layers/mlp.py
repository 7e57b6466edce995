"""SwiGLU feed-forward block."""

import jax
import jax.numpy as jnp

from o1jax import sharding


def swiglu(x: jax.Array, w_gate: jax.Array, w_up: jax.Array, w_down: jax.Array,
           mesh=None) -> jax.Array:
    """down(silu(x @ gate) * (x @ up)). x: [B, T, D]; w_gate, w_up: [D, F]; w_down: [F, D]."""
    dt = x.dtype
    h = jax.nn.silu(x @ w_gate.astype(dt)) * (x @ w_up.astype(dt))
    h = sharding.constrain(h, mesh, ("act_batch", "act_length", "act_mlp"))
    return h @ w_down.astype(dt)
