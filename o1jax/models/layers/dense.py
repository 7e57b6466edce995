"""Dense projections as one 2-D matmul."""

from __future__ import annotations

import math

import jax


def dense(x: jax.Array, w: jax.Array, in_dims: int = 1) -> jax.Array:
    """Contracts the last ``in_dims`` axes of x with the first ``in_dims`` axes of w:
    x [..., K1.., Kn], w [K1.., Kn, O1.., Om] -> [..., O1.., Om], as one [N, K] x [K, O] matmul.

    The same product as ``jnp.einsum``, but XLA's CPU backend runs the backward pass of a
    matmul whose rows are split over batch and time (the weight gradient contracts both) about
    1.5x slower than the flattened one (benchmarks/peer_tunix.py's profile: the SwiGLU
    gradient 187 -> 121 ms)."""
    lead, out = x.shape[:x.ndim - in_dims], w.shape[in_dims:]
    k = math.prod(w.shape[:in_dims])
    return (x.reshape(-1, k) @ w.reshape(k, -1)).reshape(lead + out)
