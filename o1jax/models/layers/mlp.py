"""SwiGLU feed-forward block."""

import jax
import jax.numpy as jnp

from o1jax import sharding


def swiglu(x: jax.Array, p: dict, mesh=None) -> jax.Array:
    """down(silu(x @ gate) * (x @ up)). x: [B, T, D]; p holds w_gate, w_up: [D, F] and
    w_down: [F, D], or the fused decode layout w_gate_up: [D, 2, F] (one matmul for both);
    optionally the biases b_gate, b_up: [F] and b_down: [D] (Qwen2.5-VL's vision MLP)."""
    dt = x.dtype
    if "w_gate_up" in p:
        gate_up = jnp.einsum("btd,dcf->btcf", x, p["w_gate_up"].astype(dt))
        gate, up = gate_up[:, :, 0], gate_up[:, :, 1]
    else:
        gate, up = x @ p["w_gate"].astype(dt), x @ p["w_up"].astype(dt)
    if "b_gate" in p:
        gate, up = gate + p["b_gate"].astype(dt), up + p["b_up"].astype(dt)
    h = sharding.constrain(jax.nn.silu(gate) * up, mesh, ("act_batch", "act_length", "act_mlp"))
    out = h @ p["w_down"].astype(dt)
    return out + p["b_down"].astype(dt) if "b_down" in p else out
