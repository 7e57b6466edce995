"""Optimizer steps shared by the SFT and RL stages: an optax update that is skipped when the
loss or a gradient is not finite."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def tree_all_finite(tree) -> jax.Array:
    """Scalar bool: every entry of every floating-point leaf is finite (other leaves, e.g.
    step counts, are ignored)."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves] or [jnp.bool_(True)]))


def tree_select(cond: jax.Array, new, old):
    """``new`` where the scalar ``cond`` holds, else ``old`` (same tree structure)."""
    return jax.tree.map(lambda x, y: jnp.where(cond, x, y), new, old)


def apply_if_finite(params, opt_state, grads, opt: optax.GradientTransformation,
                    loss: jax.Array):
    """(params, opt_state, ok): the optax step, or the inputs unchanged when ``loss`` or a
    gradient is not finite (ok = False)."""
    ok = jnp.isfinite(loss) & tree_all_finite(grads)
    updates, new_opt = opt.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    return tree_select(ok, new_params, params), tree_select(ok, new_opt, opt_state), ok
