"""The self-play stage of a run: the feed (buffer, proposer prompts, seed problems), the
referee and reward callbacks, the compiled iteration, and the resumable loop over it. It
replaces the RL stage when ``selfplay.enabled`` and saves the same RL state (checkpoints/rl),
so evaluation, the report and resuming treat it as any RL run."""

from __future__ import annotations

from o1jax import experiment, flops, sharding
from o1jax.data.pipeline import decode_example
from o1jax.models.transformer import Params
from o1jax.run.rl import Phase, run_iterations
from o1jax.rl.state import RLState
from o1jax.selfplay.buffer import ProblemBuffer, SelfPlayFeed
from o1jax.selfplay.config import SelfPlayConfig
from o1jax.selfplay.referee import decode_question
from o1jax.selfplay.problems import level_shares
from o1jax.selfplay.step import levels_of, selfplay_step


def iteration_flops(exp: experiment.Experiment, sp: SelfPlayConfig, batch: dict,
                    metrics: dict) -> float:
    """Model FLOPs of one self-play iteration (``batch``: the global batch): both rollouts, then
    scoring and the update over the cells of every row at the joint width that they computed
    (all of them unless padding-free; ``o1jax.flops``, as the RL stage counts them)."""
    rl, mcfg = exp.rl, exp.policy.cfg
    prompt_tokens = {k: float(batch[k].sum()) for k in ("propose_mask", "solve_mask",
                                                         "spare_mask")}
    width = max(sp.prompt_len + sp.proposal_tokens, exp.cfg.data.max_prompt_len +
                rl.max_new_tokens)
    return (flops.rollout_flops(mcfg, prompt_tokens["propose_mask"], metrics["proposal_tokens"],
                                width / 2) +
            flops.rollout_flops(mcfg, prompt_tokens["solve_mask"] + prompt_tokens["spare_mask"],
                                metrics["generated_tokens"], width / 2) +
            flops.update_flops(mcfg, rl.rows + sp.proposals, width, rl.epochs, False,
                               rl.uses_reference, float(metrics["update_token_fraction"])))


def time_split(start: float, end: float, referee_calls, reward_calls) -> dict[str, float]:
    """Seconds of each phase of one compiled iteration, from when its two host callbacks ran
    (each phase waits for the one before: the referee for the proposals, the solver for the
    referee's problems, the update for the rewards). NaN where a callback did not run on this
    process."""
    if not referee_calls or not reward_calls:
        return {f"time/{k}_s": float("nan") for k in ("propose", "referee", "solve", "reward",
                                                        "update")}
    r0, r1 = min(c[0] for c in referee_calls), max(c[1] for c in referee_calls)
    w0, w1 = min(c[0] for c in reward_calls), max(c[1] for c in reward_calls)
    out = {"time/propose_s": r0 - start, "time/referee_s": r1 - r0, "time/solve_s": w0 - r1,
           "time/reward_s": w1 - w0, "time/update_s": end - w1}
    out["time/referee_fraction"] = out["time/referee_s"] / (end - start)
    return out


def selfplay_phase(exp: experiment.Experiment) -> Phase:
    """Self-play's part of the RL stage: the feed (buffer, proposer prompts, seed problems),
    the compiled step (``selfplay_step``: referee and reward callbacks, the iteration over
    ``selfplay_collect``), and what each iteration records (accepted problems into the buffer)
    and logs: on a seed task with levels, the share of accepted proposals at each level."""
    cfg, rl, tok = exp.cfg, exp.rl, exp.tokenizer
    sp = SelfPlayConfig.from_config(cfg.selfplay)
    train = exp.sources["train"]
    buffer = ProblemBuffer(sp.buffer_size)   # owns and checkpoints the forms seen; referee reads
    step = selfplay_step(exp.policy, tok, exp.prompt, rl, sp, exp.mesh,
                         lambda i: decode_example(train[i]), buffer.seen, cfg.data.task,
                         cfg.data.difficulty)
    levels = levels_of(cfg.data.task, bool(exp.policy.cfg.vision))
    referee = step.referee
    feed = SelfPlayFeed(train, tok, sp, rl.batch_prompts, exp.prompt, cfg.seed,
                        referee.register, referee.image_size, buffer=buffer)

    def next_batch(i):
        b = feed.next_batch(i)
        return sharding.global_batch_from_host(exp.mesh, b), b

    def log(i, b, metrics, results, start, seconds):
        problems = [None if s else referee.find(decode_question(q), int(j))
                    for s, j, q in zip(results["status"], results["ids"], results["questions"])]
        feed.record(problems, results["pass_rate"], i)
        extra = dict(feed.buffer.stats(), **time_split(start, start + seconds,
                                                       step.referee_times, step.reward_times))
        if levels:
            extra.update(level_shares([p.level for p in problems if p is not None], levels))
        step.referee_times.clear()
        step.reward_times.clear()
        return iteration_flops(exp, sp, b, metrics), extra

    return Phase(step.iteration, step.shardings, feed, next_batch, log)


def run_selfplay(exp: experiment.Experiment, params: Params) -> tuple[RLState, bool]:
    """Self-play's RL stage (``selfplay.enabled``): ``o1jax.run.rl.run_iterations`` over
    ``selfplay_phase``. Returns (final state, preempted)."""
    return run_iterations(exp, params, selfplay_phase(exp))
