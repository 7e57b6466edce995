"""The RL train state: a typed pytree, its optimizers, and shardings derived from the logical
axes of the parameters (o1jax/sharding.py's rules), never listed by hand."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import Mesh

from o1jax import sharding
from o1jax.models.layouts import value_params_from_policy
from o1jax.models.transformer import Params, Transformer
from o1jax.optim import make_optimizer
from o1jax.rl.config import RLConfig


class RLState(struct.PyTreeNode):
    """policy / critic parameters with their optax states; ``critic`` and ``critic_opt`` are None
    without a critic (group baselines), ``ref`` (the frozen reference policy) is None without a
    KL term. Scalars: the KL coefficient (adaptive with ``kl_target``), iterations done, and
    updates skipped because a loss or gradient was not finite."""
    policy: Params
    policy_opt: Any
    critic: Params | None
    critic_opt: Any
    ref: Params | None
    kl_coef: jax.Array
    step: jax.Array
    skipped_updates: jax.Array


def optimizers(cfg: RLConfig) -> tuple[optax.GradientTransformation,
                                       optax.GradientTransformation]:
    """(policy optimizer, critic optimizer)."""
    return (make_optimizer(cfg.policy_lr, cfg.max_grad_norm),
            make_optimizer(cfg.value_lr, cfg.max_grad_norm))


def critic_model(policy: Transformer) -> Transformer:
    """The value model: the policy's backbone shapes with a scalar head."""
    return Transformer(policy.cfg, head="value", mesh=policy.mesh)


def init_state(policy_params: Params, cfg: RLConfig, key: jax.Array) -> RLState:
    """Train state from policy params: the reference is a frozen copy, the critic starts from the
    policy backbone with a fresh head drawn from ``key``."""
    opt_p, opt_v = optimizers(cfg)
    critic = value_params_from_policy(policy_params, key) if cfg.uses_critic else None
    return RLState(
        policy=policy_params, policy_opt=opt_p.init(policy_params),
        critic=critic, critic_opt=opt_v.init(critic) if cfg.uses_critic else None,
        ref=jax.tree.map(jnp.copy, policy_params) if cfg.uses_reference else None,
        kl_coef=jnp.asarray(cfg.kl_coef, jnp.float32), step=jnp.zeros((), jnp.int32),
        skipped_updates=jnp.zeros((), jnp.int32))


def state_shardings(mesh: Mesh, policy: Transformer, cfg: RLConfig) -> RLState:
    """NamedShardings of every leaf of ``init_state``'s result: parameters by their logical
    axes, optimizer moments like the parameters they follow (``optax.tree_map_params``), every
    other leaf replicated."""
    rep = sharding.replicated(mesh)
    opt_p, opt_v = optimizers(cfg)
    shapes = jax.eval_shape(lambda p: init_state(p, cfg, jax.random.key(0)),
                            policy.param_shapes())

    def like_params(opt, opt_state, params_sharding):
        return optax.tree_map_params(opt, lambda _, s: s, opt_state, params_sharding,
                                     transform_non_params=lambda _: rep)
    p = policy.shardings()
    v = critic_model(policy).shardings() if cfg.uses_critic else None
    return RLState(
        policy=p, policy_opt=like_params(opt_p, shapes.policy_opt, p),
        critic=v, critic_opt=like_params(opt_v, shapes.critic_opt, v) if cfg.uses_critic else None,
        ref=p if cfg.uses_reference else None, kl_coef=rep, step=rep, skipped_updates=rep)
