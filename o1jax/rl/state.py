"""The RL train state: a typed pytree, its optimizers, the parameters each phase runs the models
on (full fine-tuning's, or LoRA's frozen base with the adapters), and shardings derived from the
logical axes of the parameters (o1jax/sharding.py's rules), never listed by hand."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import Mesh

from o1jax import sharding
from o1jax.models import layouts, lora
from o1jax.models.layouts import value_params_from_policy
from o1jax.models.transformer import Params, Transformer
from o1jax.optim import make_optimizer
from o1jax.rl.config import RLConfig


class RLState(struct.PyTreeNode):
    """The trained policy / critic parameters with their optax states; ``critic`` and
    ``critic_opt`` are None without a critic (group baselines), ``ref`` (the frozen reference
    policy) is None without a KL term. Scalars: the KL coefficient (adaptive with
    ``kl_target``), iterations done, and updates skipped because a loss or gradient was not
    finite.

    With LoRA (``rl.lora_rank``), ``base`` holds the frozen policy, ``policy`` its adapters,
    ``critic`` {"lora": the critic's own adapters of the same base, "value_head": ...}, and
    ``ref`` is None: the base is the reference. ``policy_params`` and friends give each phase
    the parameters its model runs on."""
    policy: Params
    policy_opt: Any
    critic: Params | None
    critic_opt: Any
    ref: Params | None
    kl_coef: jax.Array
    step: jax.Array
    skipped_updates: jax.Array
    base: Params | None = None


def optimizers(cfg: RLConfig) -> tuple[optax.GradientTransformation,
                                       optax.GradientTransformation]:
    """(policy optimizer, critic optimizer)."""
    return (make_optimizer(cfg.policy_lr, cfg.max_grad_norm),
            make_optimizer(cfg.value_lr, cfg.max_grad_norm))


def critic_model(policy: Transformer) -> Transformer:
    """The value model: the policy's backbone shapes with a scalar head."""
    return Transformer(policy.cfg, head="value", mesh=policy.mesh)


def policy_params(state: RLState, cfg: RLConfig, trained: Params | None = None) -> Params:
    """The policy's parameters as training's forward reads them: the trained ones (``trained``,
    default ``state.policy``), or with LoRA the frozen base with those adapters attached."""
    trained = state.policy if trained is None else trained
    return trained if state.base is None else lora.attach(state.base, trained, cfg.lora)


def sampling_params(state: RLState, cfg: RLConfig) -> Params:
    """The policy's parameters for decoding (rollout, evaluation): with LoRA the adapters
    merged into the base once (``lora.merge``), so the sampler's layouts run unchanged."""
    return state.policy if state.base is None else lora.merge(state.base, state.policy, cfg.lora)


def reference_params(state: RLState) -> Params | None:
    """The KL reference: the frozen copy, or with LoRA the base itself (no second copy)."""
    return state.ref if state.base is None else state.base


def critic_params(state: RLState, cfg: RLConfig, trained: Params | None = None) -> Params:
    """The value model's parameters: the trained ones (``trained``, default ``state.critic``),
    or with LoRA the base's backbone with the critic's adapters and its value head."""
    trained = state.critic if trained is None else trained
    if state.base is None:
        return trained
    return dict(lora.attach(layouts.backbone(state.base), trained["lora"], cfg.lora),
                value_head=trained["value_head"])


def init_state(policy_params: Params, cfg: RLConfig, key: jax.Array) -> RLState:
    """Train state from policy params: the reference is a frozen copy, the critic starts from the
    policy backbone with a fresh head drawn from ``key``. With LoRA the params become the frozen
    base, and the policy and critic fresh adapters of it (zero B: the adapted policy starts as
    the base), with keys folded from ``key``."""
    opt_p, opt_v = optimizers(cfg)
    base, lc = None, cfg.lora
    if lc is None:
        critic = value_params_from_policy(policy_params, key) if cfg.uses_critic else None
        ref = jax.tree.map(jnp.copy, policy_params) if cfg.uses_reference else None
    else:
        base, ref = policy_params, None
        policy_params = lora.init(jax.random.fold_in(key, 1), base, lc)
        critic = {"lora": lora.init(jax.random.fold_in(key, 2), base, lc),
                  "value_head": layouts.value_head(base, key)} if cfg.uses_critic else None
    return RLState(
        policy=policy_params, policy_opt=opt_p.init(policy_params),
        critic=critic, critic_opt=opt_v.init(critic) if cfg.uses_critic else None, ref=ref,
        kl_coef=jnp.asarray(cfg.kl_coef, jnp.float32), step=jnp.zeros((), jnp.int32),
        skipped_updates=jnp.zeros((), jnp.int32), base=base)


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
    p = base = policy.shardings()
    v = critic_model(policy).shardings() if cfg.uses_critic else None
    if cfg.lora is not None:
        p = sharding.tree_shardings(mesh, lora.adapter_axes(policy.param_axes(), cfg.lora),
                                    shapes.policy)
        v = {"lora": p, "value_head": v["value_head"]} if cfg.uses_critic else None
    return RLState(
        policy=p, policy_opt=like_params(opt_p, shapes.policy_opt, p),
        critic=v, critic_opt=like_params(opt_v, shapes.critic_opt, v) if cfg.uses_critic else None,
        ref=p if shapes.ref is not None else None, kl_coef=rep, step=rep, skipped_updates=rep,
        base=base if shapes.base is not None else None)
