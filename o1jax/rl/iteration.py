"""One RL iteration as one pure function, compiled once:

    (state, batch, key) -> (state, metrics, results)

Its phases are named pure functions with typed inputs and outputs. The collect phase is the
caller's: PPO/GRPO's is ``rl_collect`` (rollout + reward), self-play's proposes, referees,
solves and rewards (``o1jax.selfplay.iteration``). Everything after it is this module's, the
same for every kind of run:

    collect  (RLState, batch, key)   -> Collected   the rows to learn from (Experience), the
                                                    collect phase's metrics and host results
    targets  (RLState, Experience)   -> Targets     old and reference log-probs, KL (a loss
                                                    term, or a penalty in the rewards), critic
                                                    values, advantages, returns (no gradients)
    update   (RLState, Targets)      -> RLState     o1jax/rl/update.py: E epochs x M minibatches
                                                    of optax steps in lax.scan
    metrics                          -> dict        KL, the update's statistics

Padding-free (``rl.length_buckets`` > 1): scoring and the update run on micro-batches of rows of
similar length, each over only the columns that hold its tokens (the prompt and the shortest
response-length bucket that holds its longest response); the losses are those of the padded
batch.

PPO/GRPO's ``batch`` is {"tokens": [B, P], "mask": [B, P], "example_ids": [B]} (+ "images":
[B, S, S, 3] uint8 or ``Patches`` for a vision policy, one image per prompt); rows R = B * G.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from o1jax import sharding
from o1jax.models import patches
from o1jax.models.transformer import Transformer
from o1jax.rl import advantages as adv_lib
from o1jax.rl import dapo
from o1jax.rl import losses
from o1jax.rl.config import RLConfig
from o1jax.rl.logprobs import old_logprobs, router_mismatch
from o1jax.rl.state import (RLState, critic_model, critic_params, policy_params,
                            sampling_params, state_shardings)
from o1jax.rl.update import Targets, shift_right, update, update_metrics
from o1jax.rollout.decoding import SamplingConfig
from o1jax.rollout.sampler import Rollout, sample
from o1jax.rollout.tools import ToolCalls
from o1jax.rollout.scoring import map_micro_batches, prefix_values

RewardFn = Callable[[Rollout, jax.Array], tuple[jax.Array, dict]]


class Scored(NamedTuple):
    """rewards: [R] f32 per rollout row; metrics: {name: scalar} from the reward function."""
    rewards: jax.Array
    metrics: dict


class Experience(NamedTuple):
    """The rows an iteration learns from, as its collect phase hands them over.

    roll:       [R, T] rows; ``response_mask`` holds the tokens that train (a row that must not
                train, e.g. one self-play's gate removes, has none)
    rewards:    [R] f32 sequence rewards
    groups:     how the rows are baselined (``advantages.Group``s; static)
    prompt_len: columns before the first response token of any row (static; padding-free
                buckets start there)
    images:     [R, S, S, 3] uint8, each row's image (a vision policy), or None
    widths:     the widths of parts of ``roll`` narrower than it (self-play's solver rows,
                whose prompts are shorter than the proposer's), kept as padding-free columns
                so that those rows are not padded to the widest (static)
    """
    roll: Rollout
    rewards: jax.Array
    groups: tuple[adv_lib.Group, ...]
    prompt_len: int
    images: jax.Array | None = None
    widths: tuple[int, ...] = ()


class Collected(NamedTuple):
    """A collect phase's output: the experience, its metrics {name: scalar}, and results
    {name: array} the host reads after the iteration (empty for PPO/GRPO)."""
    experience: Experience
    metrics: dict
    results: dict


Collect = Callable[[RLState, dict, jax.Array], Collected]


def rollout(state: RLState, batch: dict, key: jax.Array, *, policy: Transformer,
            cfg: RLConfig, sampling: SamplingConfig) -> Rollout:
    """G samples per prompt from the current policy (each prompt's image, if any, encoded once
    in the prefill; LoRA's adapters merged into the base once)."""
    return sample(policy, sampling_params(state, cfg), batch["tokens"], batch["mask"], key,
                  sampling, batch.get("images"))


def reward(roll: Rollout, batch: dict, reward_fn: RewardFn, group_size: int) -> Scored:
    """The reward of every row; row i answers prompt i // G."""
    return Scored(*reward_fn(roll, jnp.repeat(batch["example_ids"], group_size)))


def rollout_metrics(roll: Rollout, scored: Scored, group_size: int) -> dict:
    """Scalars of a rollout of G = ``group_size`` samples per prompt and its rewards: reward,
    lengths, truncation, the share of groups whose rewards are all equal (no GRPO signal)."""
    lengths = roll.lengths.astype(jnp.float32)
    groups = scored.rewards.reshape(-1, group_size)
    return {"reward_mean": jnp.mean(scored.rewards),
            "response_length_mean": jnp.mean(lengths), "response_length_max": jnp.max(lengths),
            "truncation_rate": 1.0 - jnp.mean(roll.finished.astype(jnp.float32)),
            "constant_reward_groups": jnp.mean((jnp.max(groups, 1) == jnp.min(groups, 1))
                                               .astype(jnp.float32)),
            "generated_tokens": jnp.sum(lengths), **scored.metrics, **tool_metrics(roll)}


def tool_metrics(roll: Rollout) -> dict:
    """With tools: calls per response and the share of responses that call at least once."""
    if roll.tool_calls is None:
        return {}
    calls = roll.tool_calls.astype(jnp.float32)
    return {"tools/calls_mean": jnp.mean(calls), "tools/share": jnp.mean(calls > 0)}


def rl_collect(state: RLState, batch: dict, key: jax.Array, *, policy: Transformer,
               cfg: RLConfig, sampling: SamplingConfig, reward_fn: RewardFn) -> Collected:
    """PPO/GRPO's collect phase: rollout -> reward -> DAPO's shaping (``o1jax.rl.dapo``: the
    batch's groups from ``rl.oversample`` x as many sampled, the over-long penalty); every row
    baselined in its prompt's group of G."""
    g = sampling.num_samples
    roll = rollout(state, batch, key, policy=policy, cfg=cfg, sampling=sampling)
    scored = reward(roll, batch, reward_fn, g)
    images = batch.get("images")
    if images is not None:      # row i answers prompt i // G
        images = jax.tree.map(lambda a: jnp.repeat(a, g, axis=0), images)
    metrics = rollout_metrics(roll, scored, g)   # over every sampled row
    roll, rewards, images, shaped = dapo.shape_experience(roll, scored.rewards, images, cfg, g)
    exp = Experience(roll, rewards, (adv_lib.Group(cfg.rows, g, cfg.algorithm),),
                     batch["tokens"].shape[1], images)
    return Collected(exp, {**metrics, **shaped}, {})


def targets(state: RLState, exp: Experience, *, policy: Transformer, cfg: RLConfig,
            temperature: float, columns: tuple[int, ...] = ()) -> tuple[Targets, dict]:
    """Old and reference log-probs, the KL to the reference (a k1 penalty in the rewards with
    ``rl.kl_in_reward``), critic values, advantages (the experience's groups) and returns; and
    the rollout/training log-prob mismatch. ``columns``: padding-free scoring
    (``scoring.map_micro_batches``)."""
    roll, images = exp.roll, exp.images
    resp = roll.response_mask
    experts = roll.experts if cfg.routing_replay else None
    if cfg.routing_replay and roll.experts is None:
        raise ValueError("rl.routing_replay needs a mixture-of-experts policy whose rollout "
                         "records its routing (model.num_experts > 0)")
    old_logp, ref_logp, is_weights, mismatch = old_logprobs(
        state, roll.tokens, roll.mask, resp, roll.logprobs, policy=policy, cfg=cfg,
        temperature=temperature, columns=columns, images=images, experts=experts)
    if roll.experts is not None:      # how often the trainer would route otherwise
        mismatch = dict(mismatch, router_mismatch=router_mismatch(
            policy, policy_params(state, cfg), roll.tokens, roll.mask, resp, roll.experts,
            cfg.micro_batch))
    extra = [] if images is None else [images]
    kl = jnp.where(resp, losses.kl_estimate(old_logp, ref_logp, "k1"), 0.0)
    kl_pen = state.kl_coef * kl if (cfg.uses_reference and cfg.kl_in_reward) else None
    if cfg.uses_critic:
        values = map_micro_batches(
            lambda t, m, *im: prefix_values(critic_model(policy), critic_params(state, cfg), t, m,
                                            *im),
            cfg.micro_batch, roll.tokens, roll.mask, *extra, columns=columns)
        old_values = jnp.where(resp, shift_right(values), 0.0)
        tok_r = adv_lib.token_rewards(exp.rewards, resp, kl_pen)
        advantages, returns = adv_lib.gae(tok_r, old_values, resp, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = adv_lib.whiten(advantages, resp)
    else:
        seq_r = exp.rewards - (jnp.sum(kl_pen, axis=1) if kl_pen is not None else 0.0)
        advantages = adv_lib.broadcast_to_tokens(
            adv_lib.grouped_advantages(seq_r, exp.groups), resp)
        old_values = returns = jnp.zeros_like(old_logp)
    return Targets(roll.tokens, roll.mask, resp, old_logp, ref_logp, advantages, old_values,
                   returns, kl, is_weights, images, experts), mismatch


def learn_metrics(before: RLState, after: RLState, tg: Targets, stats: dict, mismatch: dict,
                  cfg: RLConfig) -> dict:
    """Scalars of the learning phases: KL, the update's statistics, the critic's fit."""
    out = {"kl": adv_lib.masked_mean(tg.kl, tg.resp), "kl_coef": before.kl_coef,
           "skipped_updates": after.skipped_updates - before.skipped_updates,
           **update_metrics(stats, mismatch)}
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


def learn(state: RLState, exp: Experience, key: jax.Array, *, policy: Transformer,
          cfg: RLConfig, temperature: float) -> tuple[RLState, dict]:
    """targets -> update -> metrics; padding-free over the experience's ``prompt_len`` columns
    and ``bucket_lengths`` response columns (and its ``widths``) when ``cfg.length_buckets`` >
    1."""
    width = exp.roll.tokens.shape[1]
    columns = tuple(exp.prompt_len + n for n in
                    bucket_lengths(width - exp.prompt_len, cfg.length_buckets))
    if len(columns) > 1:
        columns = tuple(sorted(set(columns) | {w for w in exp.widths if w < width}))
    tg, mismatch = targets(state, exp, policy=policy, cfg=cfg, temperature=temperature,
                           columns=columns)
    new_state, stats = update(state, tg, key, policy=policy, cfg=cfg, temperature=temperature,
                              columns=columns)
    return new_state, learn_metrics(state, new_state, tg, stats, mismatch, cfg)


def iteration(state: RLState, batch: dict, key: jax.Array, *, collect: Collect,
              policy: Transformer, cfg: RLConfig) -> tuple[RLState, dict, dict]:
    """collect -> learn (targets -> update -> metrics). Pure; ``compile_iteration`` jits it."""
    k_collect, k_update = jax.random.split(key)
    col = collect(state, batch, k_collect)
    new_state, metrics = learn(state, col.experience, k_update, policy=policy, cfg=cfg,
                               temperature=cfg.sampling().logprob_temperature)
    return new_state, {**col.metrics, **metrics}, col.results


def compile_iteration(collect: Collect, policy: Transformer, cfg: RLConfig,
                      batch_shardings: Callable[[Mesh], dict]):
    """``(step_fn, state_shardings)``: ``iteration`` over ``collect`` jitted with the state
    donated. With ``policy.mesh``, explicit shardings (state by the logical rules, the batch as
    ``batch_shardings(mesh)`` says, metrics and results replicated) and ``state_shardings`` to
    place the initial state with (one compilation); without a mesh, ``state_shardings`` is
    None."""
    fn = functools.partial(iteration, collect=collect, policy=policy, cfg=cfg)
    mesh: Mesh | None = policy.mesh
    if mesh is None:
        return jax.jit(fn, donate_argnums=(0,)), None
    st = state_shardings(mesh, policy, cfg)
    rep = sharding.replicated(mesh)
    return jax.jit(fn, in_shardings=(st, batch_shardings(mesh), rep),
                   out_shardings=(st, rep, rep), donate_argnums=(0,)), st


def rl_batch_shardings(mesh: Mesh, vision: bool = False, native: bool = False) -> dict:
    """PPO/GRPO's batch over the data axes (``images`` for a vision policy: ``Patches`` for
    images at their own sizes, ``native``)."""
    batch = {"tokens": sharding.batch_sharding(mesh, 2), "mask": sharding.batch_sharding(mesh, 2),
             "example_ids": sharding.batch_sharding(mesh, 1)}
    if vision:
        batch["images"] = patches.batch_shardings(mesh, native)
    return batch


def make_iteration(policy: Transformer, cfg: RLConfig, reward_fn: RewardFn,
                   stop_ids=(), pad_id: int = 0, tools: ToolCalls | None = None):
    """PPO/GRPO's iteration (``rl_collect``, sampling as ``cfg.sampling(stop_ids, pad_id,
    tools)`` says), compiled by ``compile_iteration``: ``(step_fn, state_shardings)``,
    step_fn(state, batch, key) -> (state, metrics, results = {})."""
    collect = functools.partial(rl_collect, policy=policy, cfg=cfg,
                                sampling=cfg.sampling(stop_ids, pad_id, tools),
                                reward_fn=reward_fn)
    return compile_iteration(collect, policy, cfg, functools.partial(
        rl_batch_shardings, vision=bool(policy.cfg.vision),
        native=bool(policy.cfg.vision and policy.cfg.vision.native)))
