"""The optimizers of every stage (SFT, RL, value models) from one factory, and the optax update
they share, skipped when the loss or a gradient is not finite."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def make_optimizer(lr: float | optax.Schedule, max_grad_norm: float = 1.0, *, b1: float = 0.9,
                   b2: float = 0.95, weight_decay: float | None = 0.0
                   ) -> optax.GradientTransformation:
    """Gradients clipped to global norm ``max_grad_norm``, then AdamW with learning rate (or
    schedule) ``lr`` and ``weight_decay`` (None: plain Adam, no decay term in the chain)."""
    adam = (optax.adam(lr, b1=b1, b2=b2) if weight_decay is None else
            optax.adamw(lr, b1=b1, b2=b2, weight_decay=weight_decay))
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), adam)


def warmup_cosine(lr: float, steps: int, warmup: int) -> optax.Schedule:
    """Linear warmup from 0 to ``lr`` over ``warmup`` steps, then cosine decay to ``lr / 10``
    at ``steps``."""
    return optax.warmup_cosine_decay_schedule(0.0, lr, max(1, warmup), max(steps, warmup + 1),
                                              end_value=lr * 0.1)


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
