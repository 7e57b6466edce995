"""Self-play's collect phase, which the RL iteration (``o1jax.rl.iteration``) learns from; the
whole is one pure function, compiled once: (state, batch, key) -> (state, metrics, results).

    propose  (RLState, batch)      -> Rollout     one proposal per proposer prompt
    referee  (Rollout)             -> Verdicts    host callback: checked problems, their prompts
    solve    (RLState, problems)   -> Rollout     G samples per problem: seed, buffer, and this
                                                  iteration's accepted proposals (a rejected
                                                  one's place taken by a spare seed problem)
    reward   (Rollout)             -> Solved      host callback: rewards, correctness, pass rates
    roles    (...)                 -> Experience  both roles' rows, the proposer's rewards
                                                  (validity x learnability x level weight),
                                                  each role's baseline, the gate (gated rows
                                                  do not train)

Targets (KL in the loss or the rewards), the update and its metrics are the RL iteration's, so
every RL option means the same here. ``results`` are the per-proposal arrays the host records
into the buffer afterwards.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from o1jax import sharding
from o1jax.models.transformer import Transformer
from o1jax.rl.advantages import Group
from o1jax.rl.config import RLConfig
from o1jax.rl.iteration import Collected, Experience, Scored, compile_iteration, rollout_metrics
from o1jax.rl.state import RLState, sampling_params
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


def level_weight(level: jax.Array, train_level: int, bonus: float) -> jax.Array:
    """The proposer's difficulty term: 1 + bonus * (levels above the solver's training level),
    never below 1. It multiplies learnability, so a harder problem earns more only while the
    solver can still learn from it (0 < p < 1): once the training level is mastered (p = 1
    there), the proposer is paid for the level above."""
    return 1.0 + bonus * jnp.maximum(level - train_level, 0.0)


def role_groups(proposals: int, solver_rows: int, group_size: int, method: str
                ) -> tuple[Group, Group]:
    """How the joint rows are baselined: the proposer's ``proposals`` rows normalised over
    their role ((r - mean) / (std + eps), Absolute Zero's per-role baseline), then the solver's
    ``solver_rows`` by ``method`` over each problem's ``group_size`` samples."""
    return Group(proposals, proposals, "grpo"), Group(solver_rows, group_size, method)


def _pad_columns(x: jax.Array, width: int, value=0) -> jax.Array:
    return jnp.pad(x, ((0, 0), (0, width - x.shape[1])), constant_values=value)


def joint_rollout(rolls: tuple[Rollout, ...], trains: tuple[jax.Array, ...], pad_id: int
                  ) -> Rollout:
    """The roles' rollouts as one batch of rows (columns right-padded to the widest); a row
    whose ``trains`` is False keeps no response tokens, so it adds nothing to the loss."""
    width = max(r.tokens.shape[1] for r in rolls)
    cat = lambda xs: jnp.concatenate(xs, axis=0)  # noqa: E731
    return Rollout(
        tokens=cat([_pad_columns(r.tokens, width, pad_id) for r in rolls]),
        mask=cat([_pad_columns(r.mask, width, False) for r in rolls]),
        response_mask=cat([_pad_columns(r.response_mask, width, False) & t[:, None]
                           for r, t in zip(rolls, trains)]),
        logprobs=cat([_pad_columns(r.logprobs, width, 0.0) for r in rolls]),
        lengths=cat([r.lengths for r in rolls]), finished=cat([r.finished for r in rolls]),
        num_steps=jnp.max(jnp.stack([r.num_steps for r in rolls])))


def selfplay_collect(state: RLState, batch: dict, key: jax.Array, *, policy: Transformer,
                     cfg: RLConfig, sp: SelfPlayConfig, propose_sampling: SamplingConfig,
                     solve_sampling: SamplingConfig, referee_fn: Callable[[Rollout], Verdicts],
                     reward_fn, pad_id: int, train_level: int = 0) -> Collected:
    """Self-play's collect phase: propose -> referee -> solve -> reward -> the proposer's
    rewards and the gate. Pure; the RL iteration learns from what it returns.
    ``train_level``: the seed task's difficulty, from which ``level_weight`` counts."""
    k_prop, k_solve = jax.random.split(key)
    g = solve_sampling.num_samples
    params = sampling_params(state, cfg)     # LoRA's adapters merged once for both samplers

    # ---- propose, referee
    proposals = sample(policy, params, batch["propose_tokens"], batch["propose_mask"],
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
    questions = jnp.concatenate([batch["solve_questions"],
                                 fresh(verdicts.questions, batch["spare_questions"])])
    n_old = batch["solve_ids"].shape[0]
    # [N] this iteration's accepted proposals (not buffer problems, whose ids are < 0 too)
    proposed = jnp.concatenate([jnp.zeros(n_old, bool), accepted])
    images = None if verdicts.images is None else jnp.concatenate(
        [batch["solve_images"], fresh(verdicts.images, batch["spare_images"])])
    roll = sample(policy, params, prompts, prompt_mask, k_solve, solve_sampling,
                  images=images)
    rewards, rmetrics, correct = reward_fn(roll, jnp.repeat(ids, g),
                                           jnp.repeat(questions, g, axis=0))
    pass_rate = jnp.mean(correct.reshape(-1, g), axis=1)
    solved = Solved(rewards, correct, pass_rate, rmetrics)

    # ---- the proposer's rewards; the gate on proposed problems
    fresh_rate = pass_rate[n_old:]
    level = verdicts.features[:, FEATURES.index("level")]
    zero = verdicts.features[:, FEATURES.index("answer_magnitude")] == 0
    proposer_reward = (accepted * learnability(fresh_rate, sp.learnability) *
                       level_weight(level, train_level, sp.level_bonus) *
                       jnp.where(zero, sp.zero_answer_weight, 1.0))
    gate = (pass_rate >= sp.gate_low) & (pass_rate <= sp.gate_high)
    # at weight 0 an answer-0 proposal trains the solver only once drawn from the buffer
    fresh_trains = gate & sp.train_fresh & ~(jnp.concatenate([jnp.zeros(n_old, bool), zero]) &
                                             (sp.zero_answer_weight == 0))
    problem_trains = ~proposed | fresh_trains
    joint = joint_rollout((proposals, roll), (jnp.ones_like(accepted),
                                              jnp.repeat(problem_trains, g)), pad_id)
    exp = Experience(joint, jnp.concatenate([proposer_reward, rewards]),
                     role_groups(sp.proposals, roll.tokens.shape[0], g, cfg.algorithm),
                     min(batch["propose_tokens"].shape[1], batch["solve_tokens"].shape[1]),
                     None if images is None else jnp.concatenate(
                         [batch["propose_images"], jnp.repeat(images, g, axis=0)]),
                     widths=(proposals.tokens.shape[1], roll.tokens.shape[1]))
    metrics = selfplay_metrics(proposals, verdicts, roll, solved, proposer_reward, proposed,
                               ids, problem_trains, g)
    results = {"status": verdicts.status, "questions": verdicts.questions, "ids": verdicts.ids,
               "pass_rate": fresh_rate}
    return Collected(exp, metrics, results)


def _mean_where(x: jax.Array, where: jax.Array) -> jax.Array:
    """Mean of ``x`` over ``where``; NaN when nothing is selected (e.g. no proposal accepted)."""
    n = jnp.sum(where)
    return jnp.where(n > 0, jnp.sum(jnp.where(where, x, 0.0)) / jnp.maximum(n, 1), jnp.nan)


def selfplay_metrics(proposals: Rollout, verdicts: Verdicts, roll: Rollout, solved: Solved,
                     proposer_reward: jax.Array, proposed: jax.Array, ids: jax.Array,
                     problem_trains: jax.Array, g: int) -> dict:
    """Scalars of self-play's collect phase: the referee's verdicts by reason, proposal
    difficulty and diversity, each role's reward, the solver's accuracy on this iteration's
    proposed problems, on buffer problems and on seed problems (dataset rows), the gate, and
    the solver's rollout (``rollout_metrics``)."""
    accepted = verdicts.status == 0
    row = lambda x: jnp.repeat(x, g)  # noqa: E731  problem -> its G rows
    return {
        "proposer/accept_rate": jnp.mean(accepted.astype(jnp.float32)),
        **{f"proposer/rejected/{name}": jnp.mean((verdicts.status == i).astype(jnp.float32))
           for i, name in enumerate(STATUSES) if i},
        **{f"proposer/{name}": _mean_where(verdicts.features[:, j], accepted)
           for j, name in enumerate(FEATURES)},
        "proposer/solve_rate": _mean_where(solved.pass_rate, proposed),
        **{f"proposer/{name}": verdicts.diversity[j] for j, name in enumerate(DIVERSITY)},
        "proposer/reward_mean": jnp.mean(proposer_reward),
        "proposer/length_mean": jnp.mean(proposals.lengths.astype(jnp.float32)),
        "solver/accuracy_proposed": _mean_where(solved.correct, row(proposed)),
        "solver/accuracy_buffer": _mean_where(solved.correct, row(~proposed & (ids < 0))),
        "solver/accuracy_seed": _mean_where(solved.correct, row(ids >= 0)),
        "solver/proposed_problems": jnp.sum(proposed.astype(jnp.float32)),
        "solver/gated_out": jnp.sum((~problem_trains).astype(jnp.float32)),
        "proposal_tokens": jnp.sum(proposals.lengths.astype(jnp.float32)),
        **rollout_metrics(roll, Scored(solved.rewards, solved.metrics), g),
    }


def make_selfplay_iteration(policy: Transformer, cfg: RLConfig, sp: SelfPlayConfig,
                            referee_fn, reward_fn, prompt_len: int, stop_ids=(),
                            pad_id: int = 0, train_level: int = 0):
    """``(step_fn, state_shardings)``: the RL iteration over ``selfplay_collect``
    (``o1jax.rl.iteration.compile_iteration``); step_fn(state, batch, key) -> (state, metrics,
    results). ``prompt_len``: the solver's padded prompt length; ``train_level``: the seed
    task's difficulty (``level_weight``). The batch is
    ``SelfPlayFeed.next_batch``'s; a vision policy's also holds ``propose_images``,
    ``solve_images`` and ``spare_images`` (each part's [n, S, S, 3])."""
    solve = cfg.sampling(stop_ids, pad_id)
    propose = SamplingConfig(max_new_tokens=sp.proposal_tokens, temperature=cfg.temperature,
                             top_p=cfg.top_p, num_samples=1, stop_ids=tuple(stop_ids),
                             pad_id=pad_id)
    collect = functools.partial(selfplay_collect, policy=policy, cfg=cfg, sp=sp,
                                propose_sampling=propose, solve_sampling=solve,
                                referee_fn=referee_fn, reward_fn=reward_fn, pad_id=pad_id,
                                train_level=train_level)
    vision = policy.cfg.vision
    return compile_iteration(collect, policy, cfg, functools.partial(
        selfplay_batch_shardings, sp=sp, batch_prompts=cfg.batch_prompts, prompt_len=prompt_len,
        image_size=vision.image_size if vision else 0))


def selfplay_batch_shapes(sp: SelfPlayConfig, batch_prompts: int, prompt_len: int,
                         image_size: int = 0) -> dict:
    """The shapes and dtypes of ``SelfPlayFeed.next_batch``'s global batch
    (``jax.ShapeDtypeStruct``s): the proposer's prompts [proposals, sp.prompt_len], the
    solver's seed and buffer problems [batch_prompts - proposals, prompt_len] and the spare
    seed problems [proposals, prompt_len], each part's ids [n] and questions [n,
    sp.question_bytes]; with ``image_size`` (a vision policy) each part's images [n, S, S, 3]."""
    rows = {"propose": sp.proposals, "solve": batch_prompts - sp.proposals,
            "spare": sp.proposals}
    width = {"propose": sp.prompt_len, "solve": prompt_len, "spare": prompt_len}
    out = {}
    for part, n in rows.items():
        out[f"{part}_tokens"] = jax.ShapeDtypeStruct((n, width[part]), jnp.int32)
        out[f"{part}_mask"] = jax.ShapeDtypeStruct((n, width[part]), jnp.bool_)
        if part != "propose":
            out[f"{part}_ids"] = jax.ShapeDtypeStruct((n,), jnp.int32)
            out[f"{part}_questions"] = jax.ShapeDtypeStruct((n, sp.question_bytes), jnp.uint8)
        if image_size:
            out[f"{part}_images"] = jax.ShapeDtypeStruct((n, image_size, image_size, 3),
                                                         jnp.uint8)
    return out


def selfplay_batch_shardings(mesh, *, sp: SelfPlayConfig, batch_prompts: int, prompt_len: int,
                             image_size: int) -> dict:
    """The self-play batch's shardings: each part's rows over the data axes where they divide."""
    return {k: sharding.batch_sharding(mesh, x.ndim, x.shape) for k, x in
            selfplay_batch_shapes(sp, batch_prompts, prompt_len, image_size).items()}
