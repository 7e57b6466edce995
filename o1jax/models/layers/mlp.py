"""SwiGLU feed-forward block."""

import jax
import jax.numpy as jnp

from o1jax import sharding
from o1jax.models.layers.dense import matmul_2d
from o1jax.models.layers.low_rank import plus_low_rank


def swiglu(x: jax.Array, p: dict, mesh=None) -> jax.Array:
    """down(silu(x @ gate) * (x @ up)). x: [B, T, D]; p holds w_gate, w_up: [D, F] and
    w_down: [F, D], or the fused decode layout w_gate_up: [D, 2, F] (one matmul for both);
    optionally the biases b_gate, b_up: [F] and b_down: [D] (Qwen2.5-VL's vision MLP), and
    ``p["lora"]``: LoRA adapters of the three (``low_rank.plus_low_rank``)."""
    dt = x.dtype
    if "w_gate_up" in p:
        gate_up = jnp.einsum("btd,dcf->btcf", x, p["w_gate_up"].astype(dt))
        gate, up = gate_up[:, :, 0], gate_up[:, :, 1]
    else:
        gate, up = (plus_low_rank(matmul_2d(x, p[w].astype(dt)), x, p.get("lora"), w)
                    for w in ("w_gate", "w_up"))
    if "b_gate" in p:
        gate, up = gate + p["b_gate"].astype(dt), up + p["b_up"].astype(dt)
    h = sharding.constrain(jax.nn.silu(gate) * up, mesh, ("act_batch", "act_length", "act_mlp"))
    out = plus_low_rank(matmul_2d(h, p["w_down"].astype(dt)), h, p.get("lora"), "w_down")
    return out + p["b_down"].astype(dt) if "b_down" in p else out
