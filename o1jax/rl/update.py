"""The RL update: E epochs x M minibatches of optax steps in ``lax.scan`` over the iteration's
Targets, each minibatch's gradient accumulated over micro-batches (padding-free: each over the
columns its rows need), and the statistics it logs.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from o1jax.models.transformer import Transformer
from o1jax.optim import apply_if_finite, tree_select
from o1jax.rl import advantages as adv_lib
from o1jax.rl import losses
from o1jax.rl.config import RLConfig
from o1jax.rl.logprobs import MISMATCH_STATS, logged_mismatch, logprob_mismatch
from o1jax.rl.state import RLState, critic_model, critic_params, optimizers, policy_params
from o1jax.rollout.scoring import (length_grouped, on_columns, prefix_values, row_ends,
                                   split_micro_batches, token_logprobs)


class Targets(NamedTuple):
    """What the update trains on, all [R, T] (T = prompt + response columns)."""
    tokens: jax.Array       # int32
    mask: jax.Array         # bool, real tokens
    resp: jax.Array         # bool, response tokens (the actions)
    old_logp: jax.Array     # f32, log-probs of the policy that sampled (see ``old_logprobs``)
    ref_logp: jax.Array     # f32, reference log-probs (old_logp without a reference)
    advantages: jax.Array   # f32
    old_values: jax.Array   # f32, critic value of the state before each token (0 without one)
    returns: jax.Array      # f32, GAE returns (0 without a critic)
    kl: jax.Array           # f32, per-token k1 estimate of KL(policy || reference)
    is_weights: jax.Array   # f32, truncated importance weights (1 without rl.tis_cap)
    images: jax.Array | None = None   # [R, S, S, 3] uint8, each row's image (vision policies)
    experts: jax.Array | None = None  # [R, T, L, k] int32, the sampler's routing (replayed)


def shift_right(x: jax.Array) -> jax.Array:
    """Values of the state *before* each token: column t takes column t - 1."""
    return jnp.concatenate([jnp.zeros_like(x[:, :1]), x[:, :-1]], axis=1)


def policy_loss(params, mb: Targets, totals: tuple, kl_coef: jax.Array, *, policy: Transformer,
                cfg: RLConfig, temperature: float) -> tuple[jax.Array, dict]:
    """Clipped surrogate (+ k-estimator KL term) - entropy bonus (+ a mixture of experts'
    load-balancing loss x ``rl.router_aux_coef``, logged as ``router_balance_loss``), and its
    statistics (with the log-prob mismatch to the old log-probs and the largest |ratio - 1|)."""
    logp, entropy, balance = token_logprobs(policy, params, mb.tokens, mb.mask, temperature,
                                            cfg.vocab_chunk, mb.images, mb.experts,
                                            with_balance=True)
    loss, stats = losses.ppo_policy_loss(logp, mb.old_logp, mb.advantages, mb.resp, cfg.clip_low,
                                         cfg.clip_high, cfg.dual_clip, cfg.loss_agg,
                                         mb.is_weights if cfg.tis_cap is not None else None,
                                         totals, cfg.importance_level)
    stats["entropy"] = losses.aggregate(entropy, mb.resp, cfg.loss_agg, totals)
    if policy.cfg.num_experts:   # a micro-batch's share of the minibatch's rows weighs its mean
        stats["router_balance_loss"] = balance * (mb.tokens.shape[0] / totals[1])
        loss = loss + cfg.router_aux_coef * stats["router_balance_loss"]
    if cfg.uses_reference and not cfg.kl_in_reward:
        kl = losses.aggregate(losses.kl_estimate(logp, mb.ref_logp, cfg.kl_estimator), mb.resp,
                              cfg.loss_agg, totals)
        loss = loss + kl_coef * kl
    stats.update(logprob_mismatch(jax.lax.stop_gradient(logp), mb.old_logp, mb.resp, totals))
    stats["ratio_dev_max"] = jnp.max(jnp.where(
        mb.resp, jnp.abs(jnp.exp(jax.lax.stop_gradient(logp) - mb.old_logp) - 1.0), 0.0))
    return loss - cfg.entropy_coef * stats["entropy"], stats


def critic_loss(params, mb: Targets, totals: tuple, *, policy: Transformer, cfg: RLConfig
                ) -> tuple[jax.Array, dict]:
    values = shift_right(prefix_values(critic_model(policy), params, mb.tokens, mb.mask,
                                        mb.images))
    return losses.value_loss(values, mb.old_values, mb.returns, mb.resp, cfg.value_clip,
                             cfg.loss_agg, totals), {}


def accumulated_grads(loss_fn, params, mb: Targets, micro_batch: int,
                      columns: tuple[int, ...] = ()):
    """(loss, stats, grads) of ``loss_fn(params, mb, totals)`` over the minibatch, computed
    ``micro_batch`` rows at a time with the gradients summed in f32 (``totals``: the whole
    minibatch's denominators, so the sum is the minibatch's loss). With ``columns`` each
    micro-batch runs over the shortest of them that holds its rows (``scoring.on_columns``; the
    rows come grouped by length from ``update``). Statistics named ``*_max`` are maxima over
    the micro-batches, the others sums; ``update_token_fraction`` is the share of the
    minibatch's [rows, T] cells computed over."""
    totals = losses.totals_of(mb.resp)
    rows, width = mb.tokens.shape

    def grad_fn(params, part: Targets):
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, part, totals)
        cells = part.tokens.shape[0] * part.tokens.shape[1] / (rows * width)
        return loss, dict(stats, update_token_fraction=jnp.float32(cells)), grads

    def compute(params, part: Targets):
        if len(columns) <= 1:
            return grad_fn(params, part)
        return on_columns(functools.partial(grad_fn, params), columns, row_ends(part.mask), part)

    if not micro_batch or micro_batch >= rows:
        return compute(params, mb)

    def add(carry, part):
        loss, stats, grads = compute(params, part)
        return jax.tree.map(jnp.add, carry, (loss, grads)), stats

    zero = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
    (loss, grads), stats = jax.lax.scan(add, zero, split_micro_batches(mb, micro_batch))
    stats = {k: (jnp.max if k.endswith("_max") else jnp.sum)(v, axis=0) for k, v in stats.items()}
    return loss, stats, grads


def update(state: RLState, tg: Targets, key: jax.Array, *, policy: Transformer, cfg: RLConfig,
           temperature: float, columns: tuple[int, ...] = ()) -> tuple[RLState, dict]:
    """E epochs x M minibatches of optax steps (policy, then critic) in ``lax.scan``, each
    minibatch's gradient accumulated over micro-batches of ``cfg.micro_batch`` rows. A step
    with a non-finite loss or gradient leaves its model unchanged and is counted. Returns the
    new state and the per-minibatch statistics, each [E, M].

    Padding-free (``columns``, ascending lengths, the last T): each minibatch's rows are
    grouped by length into its micro-batches, and each micro-batch runs over the shortest of
    ``columns`` that holds its rows. The minibatches are the same rows either way, so the
    losses and gradients are those of the padded update (up to summation order)."""
    opt_p, opt_v = optimizers(cfg)
    # the losses take the trained parameters only (LoRA: the adapters; the frozen base is
    # closed over, so it neither rides through the scan nor gets a gradient)
    frozen = state.replace(ref=None)
    p_loss = lambda trained, mb, totals: policy_loss(  # noqa: E731
        policy_params(frozen, cfg, trained), mb, totals, state.kl_coef, policy=policy, cfg=cfg,
        temperature=temperature)
    v_loss = lambda trained, mb, totals: critic_loss(  # noqa: E731
        critic_params(frozen, cfg, trained), mb, totals, policy=policy, cfg=cfg)
    train_policy = state.step >= (cfg.critic_warmup if cfg.uses_critic else 0)

    def minibatch_step(s: RLState, mb: Targets):
        pl, stats, grads = accumulated_grads(p_loss, s.policy, mb, cfg.micro_batch, columns)
        new_p, new_opt, ok = apply_if_finite(s.policy, s.policy_opt, grads, opt_p, pl)
        s = s.replace(policy=tree_select(train_policy, new_p, s.policy),
                      policy_opt=tree_select(train_policy, new_opt, s.policy_opt))
        out = dict(stats, policy_loss=pl, grad_norm=optax.tree.norm(grads))
        if cfg.uses_critic:
            vl, _, vgrads = accumulated_grads(v_loss, s.critic, mb, cfg.micro_batch, columns)
            critic, critic_opt, vok = apply_if_finite(s.critic, s.critic_opt, vgrads, opt_v, vl)
            s = s.replace(critic=critic, critic_opt=critic_opt)
            ok = ok & vok
            out["value_loss"] = vl
        return s.replace(skipped_updates=s.skipped_updates + (~ok).astype(jnp.int32)), out

    r, m = tg.tokens.shape[0], cfg.minibatches
    if r % m:
        raise ValueError(f"{r} rollout rows are not divisible into {m} minibatches")
    micro = cfg.micro_batch if cfg.micro_batch and cfg.micro_batch < r // m else r // m
    ends = row_ends(tg.mask)

    def epoch(s, ekey):
        perm = jax.random.permutation(ekey, r).reshape(m, r // m)
        if len(columns) > 1:   # the same minibatches, their rows grouped by length
            perm = jnp.take_along_axis(
                perm, jax.vmap(functools.partial(length_grouped, size=micro))(ends[perm]), 1)
        mbs = jax.tree.map(lambda x: x[perm.reshape(-1)].reshape((m, r // m) + x.shape[1:]),
                           tg)
        return jax.lax.scan(minibatch_step, s, mbs)

    # the frozen reference and base do not ride through the scan
    new_state, stats = jax.lax.scan(epoch, state.replace(ref=None, base=None),
                                    jax.random.split(key, cfg.epochs))
    kl_coef = state.kl_coef
    if cfg.kl_target is not None:
        kl_coef = losses.adaptive_kl_coef(kl_coef, adv_lib.masked_mean(tg.kl, tg.resp),
                                          cfg.kl_target, cfg.kl_horizon, r)
    return new_state.replace(ref=state.ref, base=state.base, step=state.step + 1,
                             kl_coef=kl_coef), stats


def update_metrics(stats: dict, mismatch: dict) -> dict:
    """The update's statistics as logged: the rollout/training log-prob mismatch
    (``logprobs.logged_mismatch``) and every other statistic averaged over its E x M
    minibatches."""
    return {**logged_mismatch(stats, mismatch),
            **{k: jnp.mean(v) for k, v in stats.items() if k not in MISMATCH_STATS}}
