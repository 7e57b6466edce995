"""One RL iteration as one pure function, compiled once:

    (state, batch, key) -> (state, metrics)

It reads as its stages, each a named pure function with typed inputs and outputs:

    rollout  (RLState, batch)        -> Rollout   G samples per prompt, KV-cache decoding
    reward   (Rollout, batch)        -> Scored    verifier reward per row (host callback)
    targets  (RLState, Rollout, Scored) -> Targets  reference log-probs, KL, values,
                                                  advantages, returns (no gradients)
    update   (RLState, Targets)      -> RLState   E epochs x M minibatches of optax in lax.scan,
                                                  gradients accumulated over micro-batches
    metrics                          -> dict      scalars for the log

Padding-free (``rl.length_buckets`` > 1): scoring and the update run on micro-batches of rows of
similar length, each over only the columns that hold its tokens (the prompt and the shortest
response-length bucket that holds its longest response); the losses are those of the padded
batch.

``batch`` is {"tokens": [B, P], "mask": [B, P], "example_ids": [B]} (+ "images": [B, S, S, 3]
uint8 for a vision policy, one image per prompt); rows R = B * G.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from o1jax import sharding
from o1jax.models.transformer import Transformer
from o1jax.optim import apply_if_finite, tree_select
from o1jax.rl import advantages as adv_lib
from o1jax.rl import losses
from o1jax.rl.config import RLConfig
from o1jax.rl.logprobs import MISMATCH_STATS, logged_mismatch, logprob_mismatch, old_logprobs
from o1jax.rl.state import RLState, critic_model, optimizers, state_shardings
from o1jax.rollout.decoding import SamplingConfig
from o1jax.rollout.sampler import Rollout, sample
from o1jax.rollout.scoring import (length_grouped, map_micro_batches, prefix_values, row_ends,
                                   on_columns, split_micro_batches, token_logprobs)

RewardFn = Callable[[Rollout, jax.Array], tuple[jax.Array, dict]]


class Scored(NamedTuple):
    """rewards: [R] f32 per rollout row; metrics: {name: scalar} from the reward function."""
    rewards: jax.Array
    metrics: dict


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


def rollout(state: RLState, batch: dict, key: jax.Array, *, policy: Transformer,
            sampling: SamplingConfig) -> Rollout:
    """G samples per prompt from the current policy (each prompt's image, if any, encoded once
    in the prefill)."""
    return sample(policy, state.policy, batch["tokens"], batch["mask"], key, sampling,
                  batch.get("images"))


def reward(roll: Rollout, batch: dict, reward_fn: RewardFn, group_size: int) -> Scored:
    """The reward of every row; row i answers prompt i // G."""
    return Scored(*reward_fn(roll, jnp.repeat(batch["example_ids"], group_size)))


def _shift_right(x: jax.Array) -> jax.Array:
    """Values of the state *before* each token: column t takes column t - 1."""
    return jnp.concatenate([jnp.zeros_like(x[:, :1]), x[:, :-1]], axis=1)


def targets(state: RLState, roll: Rollout, scored: Scored, *, policy: Transformer,
            cfg: RLConfig, temperature: float, columns: tuple[int, ...] = (),
            images: jax.Array | None = None) -> tuple[Targets, dict]:
    """Old and reference log-probs, the KL to the reference, critic values, advantages and
    returns; and the rollout/training log-prob mismatch. ``columns``: padding-free scoring
    (``scoring.map_micro_batches``); ``images`` [R, S, S, 3]: each row's image."""
    resp = roll.response_mask
    old_logp, ref_logp, is_weights, mismatch = old_logprobs(
        state, roll.tokens, roll.mask, resp, roll.logprobs, policy=policy, cfg=cfg,
        temperature=temperature, columns=columns, images=images)
    extra = [] if images is None else [images]
    kl = jnp.where(resp, losses.kl_estimate(old_logp, ref_logp, "k1"), 0.0)
    kl_pen = state.kl_coef * kl if (cfg.uses_reference and cfg.kl_in_reward) else None
    if cfg.uses_critic:
        values = map_micro_batches(
            lambda t, m, *im: prefix_values(critic_model(policy), state.critic, t, m, *im),
            cfg.micro_batch, roll.tokens, roll.mask, *extra, columns=columns)
        old_values = jnp.where(resp, _shift_right(values), 0.0)
        tok_r = adv_lib.token_rewards(scored.rewards, resp, kl_pen)
        advantages, returns = adv_lib.gae(tok_r, old_values, resp, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = adv_lib.whiten(advantages, resp)
    else:
        seq_r = scored.rewards - (jnp.sum(kl_pen, axis=1) if kl_pen is not None else 0.0)
        advantages = adv_lib.broadcast_to_tokens(
            adv_lib.group_advantages(seq_r, cfg.group_size, cfg.algorithm), resp)
        old_values = returns = jnp.zeros_like(old_logp)
    return Targets(roll.tokens, roll.mask, resp, old_logp, ref_logp, advantages, old_values,
                   returns, kl, is_weights, images), mismatch


def policy_loss(params, mb: Targets, totals: tuple, kl_coef: jax.Array, *, policy: Transformer,
                cfg: RLConfig, temperature: float) -> tuple[jax.Array, dict]:
    """Clipped surrogate (+ k-estimator KL term) - entropy bonus, and its statistics (with the
    log-prob mismatch to the old log-probs and the largest |ratio - 1|)."""
    logp, entropy = token_logprobs(policy, params, mb.tokens, mb.mask, temperature,
                                   cfg.vocab_chunk, mb.images)
    loss, stats = losses.ppo_policy_loss(logp, mb.old_logp, mb.advantages, mb.resp, cfg.clip_low,
                                         cfg.clip_high, cfg.dual_clip, cfg.loss_agg,
                                         mb.is_weights if cfg.tis_cap is not None else None,
                                         totals)
    stats["entropy"] = losses.aggregate(entropy, mb.resp, cfg.loss_agg, totals)
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
    values = _shift_right(prefix_values(critic_model(policy), params, mb.tokens, mb.mask,
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
    p_loss = functools.partial(policy_loss, kl_coef=state.kl_coef, policy=policy, cfg=cfg,
                               temperature=temperature)
    v_loss = functools.partial(critic_loss, policy=policy, cfg=cfg)
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

    # the frozen reference does not ride through the scan
    new_state, stats = jax.lax.scan(epoch, state.replace(ref=None),
                                    jax.random.split(key, cfg.epochs))
    kl_coef = state.kl_coef
    if cfg.kl_target is not None:
        kl_coef = losses.adaptive_kl_coef(kl_coef, adv_lib.masked_mean(tg.kl, tg.resp),
                                          cfg.kl_target, cfg.kl_horizon, r)
    return new_state.replace(ref=state.ref, step=state.step + 1, kl_coef=kl_coef), stats


def update_metrics(stats: dict, mismatch: dict) -> dict:
    """The update's statistics as logged: the rollout/training log-prob mismatch
    (``logprobs.logged_mismatch``) and every other statistic averaged over its E x M
    minibatches."""
    return {**logged_mismatch(stats, mismatch),
            **{k: jnp.mean(v) for k, v in stats.items() if k not in MISMATCH_STATS}}


def metrics(before: RLState, after: RLState, roll: Rollout, scored: Scored, tg: Targets,
            stats: dict, mismatch: dict, cfg: RLConfig) -> dict:
    """Scalars of one iteration: reward, KL, lengths, truncation, GRPO signal, update stats."""
    lengths = roll.lengths.astype(jnp.float32)
    groups = scored.rewards.reshape(-1, cfg.group_size)
    out = {
        "reward_mean": jnp.mean(scored.rewards), "kl": adv_lib.masked_mean(tg.kl, tg.resp),
        "kl_coef": before.kl_coef,
        "response_length_mean": jnp.mean(lengths), "response_length_max": jnp.max(lengths),
        "truncation_rate": 1.0 - jnp.mean(roll.finished.astype(jnp.float32)),
        "constant_reward_groups": jnp.mean((jnp.max(groups, 1) == jnp.min(groups, 1))
                                           .astype(jnp.float32)),
        "generated_tokens": jnp.sum(lengths),
        "skipped_updates": after.skipped_updates - before.skipped_updates,
        **update_metrics(stats, mismatch),
        **scored.metrics,
    }
    if cfg.uses_critic:
        resid = adv_lib.masked_mean(jnp.square(tg.returns - tg.old_values), tg.resp)
        mean = adv_lib.masked_mean(tg.returns, tg.resp)
        var = adv_lib.masked_mean(jnp.square(tg.returns - mean), tg.resp)
        # undefined when the returns do not vary (e.g. every reward equal): reported as 0
        out["explained_variance"] = jnp.where(var > 1e-6, 1.0 - resid / jnp.maximum(var, 1e-6),
                                              0.0)
    return out


def bucket_lengths(max_new_tokens: int, buckets: int) -> tuple[int, ...]:
    """The response lengths scoring and the update run at: ``buckets`` evenly spaced lengths
    up to ``max_new_tokens`` (the last is it)."""
    return tuple(sorted({-(-max_new_tokens * (i + 1) // buckets) for i in range(buckets)}))


def learn(state: RLState, roll: Rollout, scored: Scored, key: jax.Array, *,
          policy: Transformer, cfg: RLConfig, temperature: float, prompt_len: int,
          images: jax.Array | None = None) -> tuple[RLState, dict]:
    """targets -> update -> metrics; padding-free over the prompt's ``prompt_len`` columns and
    ``bucket_lengths`` response columns when ``cfg.length_buckets`` > 1. ``images``
    [R, S, S, 3]: each row's image (a vision policy)."""
    columns = tuple(prompt_len + n for n in
                    bucket_lengths(roll.tokens.shape[1] - prompt_len, cfg.length_buckets))
    tg, mismatch = targets(state, roll, scored, policy=policy, cfg=cfg, temperature=temperature,
                           columns=columns, images=images)
    new_state, stats = update(state, tg, key, policy=policy, cfg=cfg, temperature=temperature,
                              columns=columns)
    return new_state, metrics(state, new_state, roll, scored, tg, stats, mismatch, cfg)


def rl_iteration(state: RLState, batch: dict, key: jax.Array, *, policy: Transformer,
                 cfg: RLConfig, sampling: SamplingConfig, reward_fn: RewardFn
                 ) -> tuple[RLState, dict]:
    """rollout -> reward -> learn (targets -> update -> metrics). Pure; ``make_iteration``
    jits it."""
    k_roll, k_update = jax.random.split(key)
    roll = rollout(state, batch, k_roll, policy=policy, sampling=sampling)
    scored = reward(roll, batch, reward_fn, sampling.num_samples)
    images = batch.get("images")
    if images is not None:      # row i answers prompt i // G
        images = jnp.repeat(images, sampling.num_samples, axis=0)
    return learn(state, roll, scored, k_update, policy=policy, cfg=cfg,
                 temperature=sampling.logprob_temperature, prompt_len=batch["tokens"].shape[1],
                 images=images)


def make_iteration(policy: Transformer, cfg: RLConfig, reward_fn: RewardFn,
                   stop_ids=(), pad_id: int = 0):
    """``(step_fn, state_shardings)``: ``rl_iteration`` jitted with the state donated, sampling
    as ``cfg.sampling(stop_ids, pad_id)`` says. With
    ``policy.mesh``, explicit shardings (state by the logical rules, the batch over the data
    axes) and ``state_shardings`` to place the initial state with (one compilation); without a
    mesh, ``state_shardings`` is None."""
    fn = functools.partial(rl_iteration, policy=policy, cfg=cfg,
                           sampling=cfg.sampling(stop_ids, pad_id), reward_fn=reward_fn)
    mesh: Mesh | None = policy.mesh
    if mesh is None:
        return jax.jit(fn, donate_argnums=(0,)), None
    st = state_shardings(mesh, policy, cfg)
    batch = {"tokens": sharding.batch_sharding(mesh, 2), "mask": sharding.batch_sharding(mesh, 2),
             "example_ids": sharding.batch_sharding(mesh, 1)}
    if policy.cfg.vision:
        batch["images"] = sharding.batch_sharding(mesh, 4)
    rep = sharding.replicated(mesh)
    return jax.jit(fn, in_shardings=(st, batch, rep), out_shardings=(st, rep),
                   donate_argnums=(0,)), st
