"""The LoRA path of a projection, run beside the frozen weight: y + (x A) B, never W + A B."""

import jax
import jax.numpy as jnp


def plus_low_rank(y: jax.Array, x: jax.Array, adapters: dict | None, name: str,
                  input_axes: int = 1) -> jax.Array:
    """``y`` (x through the weight ``name``) plus x A B where ``adapters`` holds
    ``name``: {"a": [*in, r], "b": [r, *out]} (B already scaled by alpha / r, see
    ``o1jax.models.lora.attach``); ``y`` unchanged when it holds none. x: [B, T, *in] with
    ``input_axes`` input axes. Two thin matmuls: the backward never forms the weight's [in, out]
    gradient, only the adapters'."""
    ab = (adapters or {}).get(name)
    if ab is None:
        return y
    xa = jnp.tensordot(x, ab["a"].astype(x.dtype), axes=input_axes)
    return y + jnp.tensordot(xa, ab["b"].astype(x.dtype), axes=1)
