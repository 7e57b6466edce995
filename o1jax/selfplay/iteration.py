"""One self-play iteration as one pure function, compiled once:

    (state, batch, key) -> (state, metrics, results)

    propose  (RLState, batch)      -> Rollout    one proposal per proposer prompt
    referee  (Rollout)             -> Verdicts   host callback: checked problems, their prompts
    solve    (RLState, problems)   -> Rollout    G samples per problem: seed, buffer, and this
                                                 iteration's accepted proposals (a rejected
                                                 one's place taken by a spare seed problem)
    reward   (Rollout)             -> Solved     host callback: rewards, correctness, pass rates
    targets  (...)                 -> Targets    advantages per role: the solver's per problem
                                                 group, the proposer's over its role's batch
    update   (RLState, Targets)    -> RLState    the RL iteration's update, over both roles' rows

``results`` are the per-proposal arrays the host records into the buffer afterwards.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from o1jax import sharding
from o1jax.models.transformer import Transformer
from o1jax.rl import advantages as adv_lib
from o1jax.rl import losses
from o1jax.rl.config import RLConfig
from o1jax.rl.iteration import Targets, update, update_metrics
from o1jax.rl.logprobs import old_logprobs
from o1jax.rl.state import RLState, state_shardings
from o1jax.rollout.decoding import SamplingConfig
from o1jax.rollout.sampler import Rollout, sample
from o1jax.selfplay.config import SelfPlayConfig
from o1jax.selfplay.problems import FEATURES, STATUSES
from o1jax.selfplay.referee import DIVERSITY, Verdicts


class Solved(NamedTuple):
    """The solver's rollout scored. rewards, correct: [R]; pass_rate: [N] per problem."""
    rewards: jax.Array
    correct: jax.Array
    pass_rate: jax.Array
    metrics: dict


def learnability(pass_rate: jax.Array, form: str = "absolute_zero") -> jax.Array:
    """How much a problem teaches a solver that solves it with probability p:
    absolute_zero: 1 - p when 0 < p < 1, else 0;  r_zero: 1 - 2 |p - 1/2|."""
    if form == "absolute_zero":
        return jnp.where((pass_rate > 0) & (pass_rate < 1), 1.0 - pass_rate, 0.0)
    if form == "r_zero":
        return 1.0 - 2.0 * jnp.abs(pass_rate - 0.5)
    raise ValueError(f"unknown learnability form {form!r}")


def role_advantages(solver_rewards: jax.Array, group_size: int, proposer_rewards: jax.Array,
                    method: str) -> tuple[jax.Array, jax.Array]:
    """Advantages per role: the solver's by ``method`` over each problem's G samples, the
    proposer's normalised over its role's batch ((r - mean) / (std + eps), Absolute Zero's
    per-role baseline). Returns ([R_solver], [R_proposer])."""
    return (adv_lib.group_advantages(solver_rewards, group_size, method),
            adv_lib.group_advantages(proposer_rewards, proposer_rewards.shape[0], "grpo"))


def _pad_columns(x: jax.Array, width: int, value=0) -> jax.Array:
    return jnp.pad(x, ((0, 0), (0, width - x.shape[1])), constant_values=value)


def joint_targets(state: RLState, rolls: tuple[Rollout, Rollout], advs: tuple[jax.Array, ...],
                  trains: tuple[jax.Array, ...], *, policy: Transformer, cfg: RLConfig,
                  temperature: float, pad_id: int,
                  images: tuple[jax.Array, ...] | None = None) -> tuple[Targets, dict]:
    """Both roles' rows as one batch of Targets (columns right-padded to the wider role); a row
    whose ``trains`` is False keeps no response tokens, so it adds nothing to the loss.
    ``images``: each role's rows' images [R_role, S, S, 3] (a vision policy), or None."""
    width = max(r.tokens.shape[1] for r in rolls)
    cat = lambda xs: jnp.concatenate(xs, axis=0)  # noqa: E731
    tokens = cat([_pad_columns(r.tokens, width, pad_id) for r in rolls])
    mask = cat([_pad_columns(r.mask, width, False) for r in rolls])
    resp = cat([_pad_columns(r.response_mask, width, False) & t[:, None]
                for r, t in zip(rolls, trains)])
    rollout_logp = cat([_pad_columns(r.logprobs, width, 0.0) for r in rolls])
    adv = adv_lib.broadcast_to_tokens(cat(list(advs)), resp)
    images = None if images is None else cat(list(images))
    old_logp, ref_logp, is_weights, mismatch = old_logprobs(
        state, tokens, mask, resp, rollout_logp, policy=policy, cfg=cfg, temperature=temperature,
        images=images)
    kl = jnp.where(resp, losses.kl_estimate(old_logp, ref_logp, "k1"), 0.0)
    zeros = jnp.zeros_like(old_logp)
    return Targets(tokens, mask, resp, old_logp, ref_logp, adv, zeros, zeros, kl,
                   is_weights, images), mismatch


def selfplay_iteration(state: RLState, batch: dict, key: jax.Array, *, policy: Transformer,
                       cfg: RLConfig, sp: SelfPlayConfig, propose_sampling: SamplingConfig,
                       solve_sampling: SamplingConfig, referee_fn: Callable[[Rollout], Verdicts],
                       reward_fn, pad_id: int):
    """propose -> referee -> solve -> reward -> targets -> update -> metrics. Pure."""
    k_prop, k_solve, k_update = jax.random.split(key, 3)
    g = solve_sampling.num_samples
    temperature = solve_sampling.logprob_temperature

    # ---- propose, referee
    proposals = sample(policy, state.policy, batch["propose_tokens"], batch["propose_mask"],
                       k_prop, propose_sampling, images=batch.get("propose_images"))
    verdicts = referee_fn(proposals)
    accepted = verdicts.status == 0

    # ---- solve: seed and buffer problems, then this iteration's (or spare) problems
    fresh = lambda a, b: jnp.where(accepted.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)  # noqa
    prompts = jnp.concatenate([batch["solve_tokens"],
                               fresh(verdicts.tokens, batch["spare_tokens"])])
    prompt_mask = jnp.concatenate([batch["solve_mask"],
                                   fresh(verdicts.mask, batch["spare_mask"])])
    ids = jnp.concatenate([batch["solve_ids"], fresh(verdicts.ids, batch["spare_ids"])])
    proposed = ids < 0                                  # [N] problems the policy proposed
    images = None if verdicts.images is None else jnp.concatenate(
        [batch["solve_images"], fresh(verdicts.images, batch["spare_images"])])
    roll = sample(policy, state.policy, prompts, prompt_mask, k_solve, solve_sampling,
                  images=images)
    rewards, rmetrics, correct = reward_fn(roll, jnp.repeat(ids, g))
    pass_rate = jnp.mean(correct.reshape(-1, g), axis=1)
    solved = Solved(rewards, correct, pass_rate, rmetrics)

    # ---- rewards and advantages per role; the gate on proposed problems
    n_old = batch["solve_ids"].shape[0]
    fresh_rate = pass_rate[n_old:]
    proposer_reward = accepted * learnability(fresh_rate, sp.learnability)
    gate = (pass_rate >= sp.gate_low) & (pass_rate <= sp.gate_high)
    problem_trains = ~proposed | gate
    solver_adv, proposer_adv = role_advantages(rewards, g, proposer_reward, cfg.algorithm)
    tg, mismatch = joint_targets(state, (proposals, roll), (proposer_adv, solver_adv),
                       (jnp.ones_like(accepted), jnp.repeat(problem_trains, g)), policy=policy,
                       cfg=cfg, temperature=temperature, pad_id=pad_id,
                       images=None if images is None else
                       (batch["propose_images"], jnp.repeat(images, g, axis=0)))

    # ---- update
    new_state, stats = update(state, tg, k_update, policy=policy, cfg=cfg,
                              temperature=temperature)
    metrics = selfplay_metrics(state, new_state, proposals, verdicts, roll, solved,
                               proposer_reward, proposed, problem_trains, tg, stats, mismatch,
                               g)
    results = {"status": verdicts.status, "tokens": verdicts.tokens, "mask": verdicts.mask,
               "ids": verdicts.ids, "pass_rate": fresh_rate}
    return new_state, metrics, results


def _mean_where(x: jax.Array, where: jax.Array) -> jax.Array:
    """Mean of ``x`` over ``where``; NaN when nothing is selected (e.g. no proposal accepted)."""
    n = jnp.sum(where)
    return jnp.where(n > 0, jnp.sum(jnp.where(where, x, 0.0)) / jnp.maximum(n, 1), jnp.nan)


def selfplay_metrics(before: RLState, after: RLState, proposals: Rollout, verdicts: Verdicts,
                     roll: Rollout, solved: Solved, proposer_reward: jax.Array,
                     proposed: jax.Array, problem_trains: jax.Array, tg: Targets, stats: dict,
                     mismatch: dict, g: int) -> dict:
    """Scalars of one self-play iteration: the referee's verdicts by reason, proposal
    difficulty and diversity, each role's reward, the solver's accuracy on proposed and on seed
    problems, the gate, and the update's statistics."""
    accepted = verdicts.status == 0
    n_old = proposed.shape[0] - accepted.shape[0]
    fresh_accepted = jnp.concatenate([jnp.zeros(n_old, bool), accepted])
    row = lambda x: jnp.repeat(x, g)  # noqa: E731  problem -> its G rows
    lengths = roll.lengths.astype(jnp.float32)
    out = {
        "proposer/accept_rate": jnp.mean(accepted.astype(jnp.float32)),
        **{f"proposer/rejected/{name}": jnp.mean((verdicts.status == i).astype(jnp.float32))
           for i, name in enumerate(STATUSES) if i},
        **{f"proposer/{name}": _mean_where(verdicts.features[:, j], accepted)
           for j, name in enumerate(FEATURES)},
        "proposer/solve_rate": _mean_where(solved.pass_rate, fresh_accepted),
        **{f"proposer/{name}": verdicts.diversity[j] for j, name in enumerate(DIVERSITY)},
        "proposer/reward_mean": jnp.mean(proposer_reward),
        "proposer/length_mean": jnp.mean(proposals.lengths.astype(jnp.float32)),
        "solver/accuracy_proposed": _mean_where(solved.correct, row(proposed)),
        "solver/accuracy_seed": _mean_where(solved.correct, row(~proposed)),
        "solver/proposed_problems": jnp.sum(proposed.astype(jnp.float32)),
        "solver/gated_out": jnp.sum((~problem_trains).astype(jnp.float32)),
        "reward_mean": jnp.mean(solved.rewards),
        "kl": adv_lib.masked_mean(tg.kl, tg.resp), "kl_coef": before.kl_coef,
        "response_length_mean": jnp.mean(lengths), "response_length_max": jnp.max(lengths),
        "truncation_rate": 1.0 - jnp.mean(roll.finished.astype(jnp.float32)),
        "constant_reward_groups": jnp.mean((jnp.max(solved.rewards.reshape(-1, g), 1) ==
                                            jnp.min(solved.rewards.reshape(-1, g), 1))
                                           .astype(jnp.float32)),
        "generated_tokens": jnp.sum(lengths),
        "proposal_tokens": jnp.sum(proposals.lengths.astype(jnp.float32)),
        "skipped_updates": after.skipped_updates - before.skipped_updates,
        **update_metrics(stats, mismatch),
        **solved.metrics,
    }
    return out


def make_selfplay_iteration(policy: Transformer, cfg: RLConfig, sp: SelfPlayConfig,
                            referee_fn, reward_fn, prompt_len: int, stop_ids=(),
                            pad_id: int = 0):
    """``(step_fn, state_shardings)``: ``selfplay_iteration`` jitted with the state donated
    (explicit shardings with ``policy.mesh``, as ``o1jax.rl.iteration.make_iteration``);
    ``prompt_len``: the solver's padded prompt length. A vision policy's batch also holds
    ``propose_images``, ``solve_images`` and ``spare_images`` (each part's [n, S, S, 3])."""
    solve = cfg.sampling(stop_ids, pad_id)
    propose = SamplingConfig(max_new_tokens=sp.proposal_tokens, temperature=cfg.temperature,
                             top_p=cfg.top_p, num_samples=1, stop_ids=tuple(stop_ids),
                             pad_id=pad_id)
    fn = functools.partial(selfplay_iteration, policy=policy, cfg=cfg, sp=sp,
                           propose_sampling=propose, solve_sampling=solve,
                           referee_fn=referee_fn, reward_fn=reward_fn, pad_id=pad_id)
    mesh = policy.mesh
    if mesh is None:
        return jax.jit(fn, donate_argnums=(0,)), None
    st = state_shardings(mesh, policy, cfg)
    rep = sharding.replicated(mesh)
    shapes = {"propose": (sp.proposals, sp.prompt_len), "spare": (sp.proposals, prompt_len),
              "solve": (cfg.batch_prompts - sp.proposals, prompt_len)}
    batch = {f"{part}_{name}": sharding.batch_sharding(mesh, len(shape), shape)
             for part, shape in shapes.items() for name in ("tokens", "mask")}
    batch.update({f"{part}_ids": sharding.batch_sharding(mesh, 1, shapes[part][:1])
                  for part in ("solve", "spare")})
    if policy.cfg.vision:
        batch.update({f"{part}_images": sharding.batch_sharding(mesh, 4, shape[:1])
                      for part, shape in shapes.items()})
    return jax.jit(fn, in_shardings=(st, batch, rep), out_shardings=(st, rep, rep),
                   donate_argnums=(0,)), st
