"""The self-play stage of a run: the feed (buffer, proposer prompts, seed problems), the
referee and reward callbacks, the compiled iteration, and the resumable loop over it. It
replaces the RL stage when ``selfplay.enabled`` and saves the same RL state (checkpoints/rl),
so evaluation, the report and resuming treat it as any RL run."""

from __future__ import annotations

import time

import jax

from o1jax import experiment, flops, sharding
from o1jax.data.pipeline import decode_example
from o1jax.curves import curve_evaluation
from o1jax.loop import run_loop
from o1jax.metrics import rl_log_row
from o1jax.models.transformer import Params
from o1jax.rewards.in_graph import make_reward_callback
from o1jax.rl.state import RLState, init_state
from o1jax.selfplay.buffer import SelfPlayFeed
from o1jax.selfplay.config import SelfPlayConfig
from o1jax.selfplay.iteration import make_selfplay_iteration
from o1jax.selfplay.problems import Bounds
from o1jax.selfplay.referee import JUDGE, SCENES, Referee, make_referee_fn


def question_of(prompt: str, template: str) -> str:
    """The question inside a prompt rendered from ``template`` (a ``{question}`` format)."""
    head, tail = template.split("{question}")
    if not (prompt.startswith(head) and prompt.endswith(tail)):
        raise ValueError(f"prompt {prompt!r} was not rendered from template {template!r}")
    return prompt[len(head):len(prompt) - len(tail)]


def iteration_flops(exp: experiment.Experiment, sp: SelfPlayConfig, batch: dict,
                    metrics: dict) -> float:
    """Model FLOPs of one self-play iteration (``batch``: the global batch): both rollouts, then
    scoring and the update over every row at the joint width (``o1jax.flops``, as the RL stage
    counts them)."""
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
                               rl.uses_reference))


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


def run_selfplay(exp: experiment.Experiment, params: Params) -> tuple[RLState, bool]:
    """Resumable loop over compiled self-play iterations from ``params``.
    Returns (final state, preempted)."""
    cfg, rl, policy, tok = exp.cfg, exp.rl, exp.policy, exp.tokenizer
    sp = SelfPlayConfig.from_config(cfg.selfplay)
    train, template = exp.sources["train"], cfg.data.template
    bounds = Bounds(sp.max_chars, sp.max_digits, sp.max_operators, sp.max_answer)
    vision = policy.cfg.vision      # pictures: the proposer writes scenes, charts or sums
    referee = Referee(bounds, set(), sp.check_timeout, judge_fn=SCENES if vision else JUDGE,
                      image_size=vision.image_size if vision else 0)
    feed = SelfPlayFeed(train, tok, sp, rl.batch_prompts, exp.prompt, cfg.seed,
                        referee.register, referee.image_size)
    referee.seen = feed.buffer.seen     # the buffer owns and checkpoints it
    reward_fn = make_reward_callback(
        tok, lambda i: decode_example(train[i]), rl.reward_weights, mesh=exp.mesh,
        prompt_example=lambda text, i: (referee.by_id(i) if vision else
                                        referee.problem(question_of(text, template))).example(),
        with_correct=True)
    referee_fn = make_referee_fn(referee, tok, exp.prompt)
    iteration, shardings = make_selfplay_iteration(policy, rl, sp, referee_fn, reward_fn,
                                                   cfg.data.max_prompt_len, tok.stop_ids,
                                                   tok.pad_id)
    state = jax.device_put(init_state(params, rl, jax.random.key(cfg.seed + 1)), shardings)
    base_key = jax.random.key(cfg.seed)
    peak = flops.peak_flops_per_s(cfg, policy.cfg)

    def step(state, i):
        b = feed.next_batch(i)
        t = time.perf_counter()
        state, metrics, results = iteration(state, sharding.global_batch_from_host(exp.mesh, b),
                                            jax.random.fold_in(base_key, i))
        metrics, results = jax.device_get((metrics, results))
        seconds = time.perf_counter() - t
        problems = [None if s else referee.by_id(int(j)) if vision else
                    referee.problem(question_of(tok.decode(row[m].tolist()), template))
                    for s, j, row, m in zip(results["status"], results["ids"],
                                            results["tokens"], results["mask"])]
        feed.record(problems, results["pass_rate"], i)
        work = iteration_flops(exp, sp, b, metrics)
        row = rl_log_row(metrics, seconds, work, peak)
        row.update(feed.buffer.stats(), compiled_programs=iteration._cache_size())
        row.update(time_split(t, t + seconds, referee.calls, reward_fn.calls))
        referee.calls.clear()
        reward_fn.calls.clear()
        return state, row

    return run_loop(cfg, exp.workdir, "rl", state, feed, step, rl.num_iterations,
                    curve_evaluation(exp))
