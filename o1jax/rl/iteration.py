"""One RL iteration as one pure function, compiled once:

    (state, batch, key) -> (state, metrics)

rollout (KV-cache sampling) -> reward -> old/reference log-probs and values -> advantages ->
E epochs x M minibatches of optax updates in ``lax.scan`` (PureJaxRL's shape, for LLMs).

``state`` is a dict pytree: policy, ref (frozen), opt_policy, step, and for PPO value, opt_value.
``batch`` is {"tokens": [B, P], "mask": [B, P], "example_ids": [B]}.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from o1jax import sharding
from o1jax.models.transformer import Transformer, value_params_from_policy
from o1jax.optim import apply_if_finite, tree_select
from o1jax.rl import advantages as adv_lib
from o1jax.rl import losses
from o1jax.rollout.sampler import Rollout, SamplingConfig, sample
from o1jax.rollout.scoring import prefix_values, token_logprobs

ALGORITHMS = ("ppo", "grpo", "dr_grpo", "rloo", "reinforce_pp")
RewardFn = Callable[[Rollout, jax.Array], tuple[jax.Array, dict]]


@dataclasses.dataclass(frozen=True)
class RLConfig:
    algorithm: str = "ppo"          # ppo (critic + GAE) or a critic-free group baseline
    epochs: int = 1
    minibatches: int = 1
    policy_lr: float = 1e-4
    value_lr: float = 5e-4
    max_grad_norm: float = 1.0
    clip_low: float = 0.2
    clip_high: float = 0.2          # > clip_low: DAPO's clip-higher
    dual_clip: float | None = None  # e.g. 3.0
    value_clip: float | None = 0.2
    gamma: float = 1.0
    lam: float = 1.0
    whiten_advantages: bool = True  # PPO only; group methods normalise themselves
    kl_coef: float = 0.0            # 0: no reference model term at all
    kl_estimator: str = "k3"
    kl_in_reward: bool = False      # k1 penalty in the reward instead of a k3 loss term
    kl_target: float | None = None  # adaptive controller when set
    kl_horizon: float = 10000.0
    entropy_coef: float = 0.0
    critic_warmup: int = 0          # PPO: iterations that train only the critic (veRL's option;
                                    # ignored without a critic)
    loss_agg: str = "token_mean"
    skip_nonfinite: bool = True     # False: raise on a non-finite loss or gradient

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"rl.algorithm={self.algorithm!r}; known: {ALGORITHMS}")
        if self.loss_agg not in losses.AGGREGATIONS:
            raise ValueError(f"rl.loss_agg={self.loss_agg!r}; known: {losses.AGGREGATIONS}")
        if self.epochs < 1 or self.minibatches < 1:
            raise ValueError("rl.epochs and rl.minibatches must be >= 1")

    @property
    def uses_critic(self) -> bool:
        return self.algorithm == "ppo"


def make_optimizer(lr: float, max_grad_norm: float) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(max_grad_norm),
                       optax.adamw(lr, b1=0.9, b2=0.95, weight_decay=0.0))


def init_state(policy: Transformer, policy_params, cfg: RLConfig, key: jax.Array) -> dict:
    """Train state from policy params (the reference is a frozen copy; the critic starts from
    the policy backbone)."""
    state = {"policy": policy_params, "ref": jax.tree.map(jnp.copy, policy_params),
             "opt_policy": make_optimizer(cfg.policy_lr, cfg.max_grad_norm).init(policy_params),
             "step": jnp.zeros((), jnp.int32), "kl_coef": jnp.asarray(cfg.kl_coef, jnp.float32),
             "skipped_updates": jnp.zeros((), jnp.int32)}
    if cfg.uses_critic:
        value = value_params_from_policy(policy_params, key)
        state["value"] = value
        state["opt_value"] = make_optimizer(cfg.value_lr, cfg.max_grad_norm).init(value)
    return state


def _shift_right(x: jax.Array) -> jax.Array:
    """values of the state *before* each token: column t takes column t - 1."""
    return jnp.concatenate([jnp.zeros_like(x[:, :1]), x[:, :-1]], axis=1)


def rl_iteration(state: dict, batch: dict, key: jax.Array, *, policy: Transformer,
                 sampling: SamplingConfig, cfg: RLConfig, reward_fn: RewardFn
                 ) -> tuple[dict, dict]:
    """One iteration (see the module docstring). Pure; jit it with ``make_iteration``."""
    k_roll, k_update = jax.random.split(key)
    roll = rollout_stage(state, batch, k_roll, policy=policy, sampling=sampling)
    rewards, reward_metrics = reward_fn(roll, jnp.repeat(batch["example_ids"],
                                                         sampling.num_samples))
    return update_stage(state, roll, rewards, reward_metrics, k_update, policy=policy,
                        sampling=sampling, cfg=cfg)


def rollout_stage(state: dict, batch: dict, key: jax.Array, *, policy: Transformer,
                  sampling: SamplingConfig) -> Rollout:
    """G samples per prompt with the current policy."""
    return sample(policy, state["policy"], batch["tokens"], batch["mask"], key, sampling)


def update_stage(state: dict, roll: Rollout, rewards: jax.Array, reward_metrics: dict,
                 key: jax.Array, *, policy: Transformer, sampling: SamplingConfig,
                 cfg: RLConfig) -> tuple[dict, dict]:
    """Old/reference log-probs, values, advantages, then the optax updates."""
    g = sampling.num_samples
    temp = sampling.logprob_temperature
    value_model = Transformer(policy.cfg, head="value", mesh=policy.mesh)
    resp = roll.response_mask

    # ---- old / reference log-probs, values, advantages (no gradients here)
    old_logp = roll.logprobs
    use_ref = cfg.kl_coef > 0 or cfg.kl_target is not None
    ref_logp = (token_logprobs(policy, state["ref"], roll.tokens, roll.mask, temp)[0]
                if use_ref else old_logp)
    kl_tok = jnp.where(resp, losses.kl_estimate(old_logp, ref_logp, "k1"), 0.0)
    kl_pen = state["kl_coef"] * kl_tok if (use_ref and cfg.kl_in_reward) else None
    if cfg.uses_critic:
        old_values = _shift_right(prefix_values(value_model, state["value"], roll.tokens,
                                                roll.mask))
        old_values = jnp.where(resp, old_values, 0.0)
        tok_r = adv_lib.token_rewards(rewards, resp, kl_pen)
        advantages, returns = adv_lib.gae(tok_r, old_values, resp, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = adv_lib.whiten(advantages, resp)
    else:
        seq_r = rewards - (jnp.sum(kl_pen, axis=1) if kl_pen is not None else 0.0)
        advantages = adv_lib.broadcast_to_tokens(
            adv_lib.group_advantages(seq_r, g, cfg.algorithm), resp)
        old_values = returns = jnp.zeros_like(old_logp)

    data = {"tokens": roll.tokens, "mask": roll.mask, "resp": resp, "old_logp": old_logp,
            "ref_logp": ref_logp, "adv": advantages, "old_values": old_values,
            "returns": returns}
    opt_p = make_optimizer(cfg.policy_lr, cfg.max_grad_norm)
    opt_v = make_optimizer(cfg.value_lr, cfg.max_grad_norm)
    kl_coef = state["kl_coef"]

    def policy_loss(params, mb):
        logp, entropy = token_logprobs(policy, params, mb["tokens"], mb["mask"], temp)
        loss, stats = losses.ppo_policy_loss(logp, mb["old_logp"], mb["adv"], mb["resp"],
                                             cfg.clip_low, cfg.clip_high, cfg.dual_clip,
                                             cfg.loss_agg)
        ent = losses.entropy_bonus(entropy, mb["resp"], cfg.loss_agg)
        stats["entropy"] = ent
        if use_ref and not cfg.kl_in_reward:
            kl = losses.aggregate(losses.kl_estimate(logp, mb["ref_logp"], cfg.kl_estimator),
                                  mb["resp"], cfg.loss_agg)
            loss = loss + kl_coef * kl
        stats["ratio_mismatch"] = losses.aggregate(jnp.abs(logp - mb["old_logp"]), mb["resp"])
        return loss - cfg.entropy_coef * ent, stats

    def value_loss(params, mb):
        v = _shift_right(prefix_values(value_model, params, mb["tokens"], mb["mask"]))
        return losses.value_loss(v, mb["old_values"], mb["returns"], mb["resp"], cfg.value_clip,
                                 cfg.loss_agg)

    train_policy = state["step"] >= (cfg.critic_warmup if cfg.uses_critic else 0)

    def minibatch_step(carry, mb):
        (pl, stats), grads = jax.value_and_grad(policy_loss, has_aux=True)(carry["policy"], mb)
        new_p, new_opt, ok = apply_if_finite(carry["policy"], carry["opt_policy"], grads, opt_p,
                                             pl)
        carry["policy"] = tree_select(train_policy, new_p, carry["policy"])
        carry["opt_policy"] = tree_select(train_policy, new_opt, carry["opt_policy"])
        out = dict(stats, policy_loss=pl, grad_norm=optax.tree.norm(grads))
        if cfg.uses_critic:
            vl, vgrads = jax.value_and_grad(value_loss)(carry["value"], mb)
            carry["value"], carry["opt_value"], vok = apply_if_finite(
                carry["value"], carry["opt_value"], vgrads, opt_v, vl)
            ok = ok & vok
            out["value_loss"] = vl
        carry["skipped_updates"] = carry["skipped_updates"] + (~ok).astype(jnp.int32)
        return carry, out

    r = roll.tokens.shape[0]
    m = cfg.minibatches
    if r % m:
        raise ValueError(f"{r} rollout rows are not divisible into {m} minibatches")

    def epoch(carry, ekey):
        perm = jax.random.permutation(ekey, r)
        mbs = jax.tree.map(lambda x: x[perm].reshape((m, r // m) + x.shape[1:]), data)
        return jax.lax.scan(minibatch_step, carry, mbs)

    trainable = {k: state[k] for k in ("policy", "opt_policy", "value", "opt_value",
                                       "skipped_updates") if k in state}
    trainable, upd = jax.lax.scan(epoch, trainable, jax.random.split(key, cfg.epochs))
    new_state = dict(state, **trainable, step=state["step"] + 1)

    # ---- metrics
    lengths = roll.lengths.astype(jnp.float32)
    groups = rewards.reshape(-1, g)
    observed_kl = adv_lib.masked_mean(kl_tok, resp)
    if cfg.kl_target is not None:
        new_state["kl_coef"] = losses.adaptive_kl_coef(kl_coef, observed_kl, cfg.kl_target,
                                                       cfg.kl_horizon, r)
    metrics = {
        "reward_mean": jnp.mean(rewards), "kl": observed_kl, "kl_coef": kl_coef,
        "response_length_mean": jnp.mean(lengths), "response_length_max": jnp.max(lengths),
        "truncation_rate": 1.0 - jnp.mean(roll.finished.astype(jnp.float32)),
        "constant_reward_groups": jnp.mean((jnp.max(groups, 1) == jnp.min(groups, 1))
                                           .astype(jnp.float32)),
        "generated_tokens": jnp.sum(lengths),
        "skipped_updates": new_state["skipped_updates"] - state["skipped_updates"],
        "first_minibatch_logprob_mismatch": upd["ratio_mismatch"][0, 0],
        **{k: jnp.mean(v) for k, v in upd.items() if k != "ratio_mismatch"},
        **reward_metrics,
    }
    if cfg.uses_critic:
        resid = adv_lib.masked_mean(jnp.square(returns - old_values), resp)
        var = adv_lib.masked_mean(jnp.square(returns - adv_lib.masked_mean(returns, resp)), resp)
        # undefined when the returns do not vary (e.g. every reward equal): reported as 0
        metrics["explained_variance"] = jnp.where(var > 1e-6, 1.0 - resid / jnp.maximum(var, 1e-6),
                                                  0.0)
    return new_state, metrics


def state_axes(state: dict, policy: Transformer) -> Any:
    """Logical axes for every leaf of the train state (optimizer moments mirror params)."""
    p_axes = policy.param_axes()
    out = {"policy": p_axes, "ref": p_axes, "step": (), "kl_coef": (), "skipped_updates": (),
           "opt_policy": _mirror(state["opt_policy"], p_axes)}
    if "value" in state:
        v_axes = Transformer(policy.cfg, head="value").param_axes()
        out["value"] = v_axes
        out["opt_value"] = _mirror(state["opt_value"], v_axes)
    return out


def _mirror(opt_state, axes):
    """Axes for an optax state: subtrees shaped like the params get the params' axes, every
    other leaf (step counts) is replicated."""
    param_structure = jax.tree.structure(jax.tree.map(lambda a: 0, axes, is_leaf=sharding.is_axes))

    def rec(node):
        if isinstance(node, dict) and jax.tree.structure(node) == param_structure:
            return axes
        if isinstance(node, tuple) and hasattr(node, "_fields"):
            return type(node)(*[rec(c) for c in node])
        if isinstance(node, (tuple, list)):
            return type(node)(rec(c) for c in node)
        if isinstance(node, dict):
            return {k: rec(v) for k, v in node.items()}
        return ()
    return rec(opt_state)


def make_iteration(policy: Transformer, sampling: SamplingConfig, cfg: RLConfig,
                   reward_fn: RewardFn, example_state: dict | None = None):
    """``rl_iteration`` compiled: state donated; with ``policy.mesh`` and ``example_state``,
    explicit in/out shardings (state by the logical rules, the batch over the data axes)."""
    fn = functools.partial(rl_iteration, policy=policy, sampling=sampling, cfg=cfg,
                           reward_fn=reward_fn)
    mesh = policy.mesh
    if mesh is None or example_state is None:
        return jax.jit(fn, donate_argnums=(0,))
    shapes = jax.eval_shape(lambda s: s, example_state)
    st_shard = sharding.tree_shardings(mesh, state_axes(example_state, policy), shapes)
    batch = {"tokens": sharding.batch_sharding(mesh, 2), "mask": sharding.batch_sharding(mesh, 2),
             "example_ids": sharding.batch_sharding(mesh, 1)}
    jitted = jax.jit(fn, in_shardings=(st_shard, batch, sharding.replicated(mesh)),
                     out_shardings=(st_shard, sharding.replicated(mesh)), donate_argnums=(0,))
    jitted.state_shardings = st_shard  # place the initial state with these: one compilation
    return jitted
