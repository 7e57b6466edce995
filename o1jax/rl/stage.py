"""The RL stage of a run: prompt pipeline, reward callback, train state, the compiled iteration,
and the resumable loop over it; and the same iteration lowered ahead of time (shapes only) for
checking a real-hardware config on a CPU."""

from __future__ import annotations

import time
from typing import NamedTuple, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

from o1jax import experiment, flops, sharding
from o1jax.data.pipeline import PromptPipeline, decode_example
from o1jax.curves import curve_evaluation
from o1jax.loop import run_loop
from o1jax.metrics import rl_log_row
from o1jax.models.transformer import Params, Transformer
from o1jax.rewards.in_graph import make_reward_callback
from o1jax.rl.config import RLConfig
from o1jax.rl.iteration import make_iteration
from o1jax.rl.state import RLState, init_state


def run_rl(exp: experiment.Experiment, params: Params) -> tuple[RLState, bool]:
    """Resumable loop over compiled RL iterations starting from ``params``.
    Returns (final state, preempted)."""
    cfg, rl, policy, tok = exp.cfg, exp.rl, exp.policy, exp.tokenizer
    train = exp.sources["train"]
    pipeline = PromptPipeline(train, tok, rl.batch_prompts, cfg.data.max_prompt_len,
                              seed=cfg.seed, template=cfg.data.template,
                              process_index=jax.process_index(),
                              process_count=jax.process_count(),
                              image_tokens=policy.cfg.image_tokens)
    reward_fn = make_reward_callback(tok, lambda i: decode_example(train[i]), rl.reward_weights,
                                     mesh=exp.mesh)
    iteration, shardings = make_iteration(policy, rl, reward_fn, tok.stop_ids, tok.pad_id)
    state = jax.device_put(init_state(params, rl, jax.random.key(cfg.seed + 1)), shardings)
    base_key = jax.random.key(cfg.seed)
    peak = flops.peak_flops_per_s(cfg, policy.cfg)

    def step(state, i):
        cut_before = pipeline.truncated_prompts
        b = pipeline.next_batch()
        host = {"tokens": b.tokens, "mask": b.mask, "example_ids": b.indices.astype(np.int32)}
        if b.images is not None:
            host["images"] = b.images
        batch = sharding.host_local_to_global(exp.mesh, host)
        t = time.perf_counter()
        state, metrics = iteration(state, batch, jax.random.fold_in(base_key, i))
        metrics = jax.device_get(metrics)
        seconds = time.perf_counter() - t
        # the batch's prompt tokens and prompts cut to data.max_prompt_len, over all processes
        prompt_tokens, truncated = np.sum(multihost_utils.process_allgather(np.array(
            [b.mask.sum(), pipeline.truncated_prompts - cut_before], np.int64)).reshape(-1, 2), 0)
        work = flops.rl_iteration_flops(policy.cfg, rl, float(prompt_tokens),
                                        float(metrics["generated_tokens"]), rl.rows,
                                        b.tokens.shape[1] + rl.max_new_tokens)
        return state, dict(rl_log_row(metrics, seconds, work, peak),
                           prompt_tokens=float(prompt_tokens), truncated_prompts=int(truncated))

    return run_loop(cfg, exp.workdir, "rl", state, pipeline, step, rl.num_iterations,
                    curve_evaluation(exp))


class LoweredStep(NamedTuple):
    lowered: jax.stages.Lowered
    policy: Transformer      # with its mesh
    rl: RLConfig
    state: RLState           # shapes of the train state (jax.ShapeDtypeStruct leaves)
    state_shardings: RLState


def lower_rl_step(cfg, devices: Sequence[jax.Device] | None = None) -> LoweredStep:
    """The compiled RL iteration of ``cfg`` lowered for ``devices`` (default: the current ones;
    a TPU topology's devices need no TPU attached), all abstractly (nothing allocated, no
    checkpoint or data read): mesh, parameter and state shapes, batch shapes. A config check
    for real hardware run on CPU, and the input of memory planning (``o1jax.plan``)."""
    devices = list(jax.devices() if devices is None else devices)
    rl = experiment.check_config(cfg, len(devices))
    mesh = sharding.make_mesh(cfg.mesh_shape, devices)
    policy, tok = experiment.build_model(cfg, mesh, abstract=True)
    reward_fn = make_reward_callback(tok, lambda i: {}, rl.reward_weights, mesh=mesh)
    state = jax.eval_shape(lambda p: init_state(p, rl, jax.random.key(1)), policy.param_shapes())
    b, p = rl.batch_prompts, cfg.data.max_prompt_len
    batch = {"tokens": jax.ShapeDtypeStruct((b, p), np.int32),
             "mask": jax.ShapeDtypeStruct((b, p), bool),
             "example_ids": jax.ShapeDtypeStruct((b,), np.int32)}
    if policy.cfg.vision:
        s = policy.cfg.vision.image_size
        batch["images"] = jax.ShapeDtypeStruct((b, s, s, 3), np.uint8)
    iteration, shardings = make_iteration(policy, rl, reward_fn, tok.stop_ids, tok.pad_id)
    key = jax.eval_shape(jax.random.key, 0)
    return LoweredStep(iteration.lower(state, batch, key), policy, rl, state, shardings)
