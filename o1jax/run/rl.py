"""The RL stage of a run: prompt pipeline, reward callback, train state, the compiled iteration,
and the resumable loop over it (PPO/GRPO's and self-play's); and the step training runs, self-play
included, lowered ahead of time (shapes only) for checking a real-hardware config on a CPU."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from o1jax import experiment, flops, sharding
from o1jax.config import datasets
from o1jax.config.blocks import ToolsConfig
from o1jax.data.pipeline import PromptPipeline, decode_example
from o1jax.data.prompts import image_buckets
from o1jax.curves import curve_evaluation
from o1jax.loop import run_loop
from o1jax.metrics import rl_log_row
from o1jax.models.patches import Patches
from o1jax.models.transformer import Params, Transformer
from o1jax.models.vision_config import VisionConfig
from o1jax.policy import from_config
from o1jax.rewards import code
from o1jax.rewards.in_graph import make_reward_callback
from o1jax.rl.config import RLConfig
from o1jax.rl.iteration import make_iteration
from o1jax.rl.search_metrics import with_search_metrics
from o1jax.rl.state import RLState, init_state
from o1jax.rollout import tools as tools_lib
from o1jax.selfplay.config import SelfPlayConfig
from o1jax.selfplay.iteration import selfplay_batch_shapes
from o1jax.selfplay.step import selfplay_step
from o1jax.tokenizer import Tokenizer


class Programs:
    """The iteration compiled ahead of time, once per distinct batch shapes (a second shape is a
    second program, counted rather than hidden in jit's cache): ``len`` is how many there are,
    logged as ``compiled_programs``."""

    def __init__(self, jitted):
        self.jitted, self.compiled = jitted, {}

    def __call__(self, state, batch, key):
        shapes = tuple((x.shape, str(x.dtype)) for x in jax.tree.leaves(batch))
        if shapes not in self.compiled:
            self.compiled[shapes] = self.jitted.lower(state, batch, key).compile()
        return self.compiled[shapes](state, batch, key)

    def __len__(self) -> int:
        return len(self.compiled)


class Phase(NamedTuple):
    """What a kind of RL run (PPO/GRPO, self-play) hands the one stage loop ``run_iterations``.

    iteration:  (state, batch, key) -> (state, metrics, results), jitted (``compile_iteration``)
    shardings:  the train state's shardings (None without a mesh)
    pipeline:   the resumable feed (``state()`` / ``restore()``) the loop checkpoints
    next_batch: i -> (global batch, host batch)
    log:        (i, host batch, metrics, results, start, seconds) -> (the iteration's model
                FLOPs over all devices, more log entries); runs after the iteration (self-play
                records its results here)
    """
    iteration: Callable
    shardings: RLState | None
    pipeline: Any
    next_batch: Callable[[int], tuple[dict, dict]]
    log: Callable[..., tuple[float, dict]]


def run_iterations(exp: experiment.Experiment, params: Params, phase: Phase
                   ) -> tuple[RLState, bool]:
    """The RL stage's resumable loop over compiled iterations from ``params``: the train state,
    the per-iteration keys, timing, the log row (MFU over the mesh's devices) and checkpoints.
    Returns (final state, preempted)."""
    cfg, rl = exp.cfg, exp.rl
    state = jax.device_put(init_state(params, rl, jax.random.key(cfg.seed + 1)), phase.shardings)
    base_key = jax.random.key(cfg.seed)
    peak = flops.peak_flops_per_s(cfg, exp.policy.cfg)
    programs = Programs(phase.iteration)

    def step(state, i):
        batch, host = phase.next_batch(i)
        t = time.perf_counter()
        state, metrics, results = programs(state, batch, jax.random.fold_in(base_key, i))
        metrics, results = jax.device_get((metrics, results))
        seconds = time.perf_counter() - t
        work, extra = phase.log(i, host, metrics, results, t, seconds)
        return state, dict(rl_log_row(metrics, seconds, work, peak, exp.mesh.size), **extra,
                           compiled_programs=len(programs))

    return run_loop(cfg, exp.workdir, "rl", state, phase.pipeline, step, rl.num_iterations,
                    curve_evaluation(exp), saved=lambda s: s.replace(base=None),
                    unsaved=lambda restored, s: restored.replace(base=s.base))


def rl_step(policy: Transformer, tokenizer: Tokenizer, rl: RLConfig, mesh: Mesh | None,
            example_at: Callable[[int], dict], task: str = "",
            tools: Any = None) -> tuple[Callable, RLState | None]:
    """PPO/GRPO's compiled step, for training and lowering alike: the reward callback
    (``example_at(i)``: dataset row i; a search ``task`` also logs ``search/*``,
    ``rl.search_metrics``) and ``make_iteration`` (``tools``: the config's ``tools`` block, the
    rollout's tool calls). Returns (iteration, the train state's shardings)."""
    counted = tuple(f"code/{r}" for r in code.REASONS) \
        if datasets.answer_check(task) == "code" else ()
    reward_fn = with_search_metrics(
        make_reward_callback(tokenizer, example_at, rl.reward_weights, mesh=mesh,
                             counted=counted), tokenizer, task, mesh)
    return make_iteration(policy, rl, reward_fn, tokenizer.stop_ids, tokenizer.pad_id,
                          tools_lib.from_config(ToolsConfig.from_config(tools), tokenizer))


def rl_batch_shapes(batch_prompts: int, prompt_len: int, vision: VisionConfig | None = None
                    ) -> dict:
    """The shapes and dtypes of PPO/GRPO's global batch (``jax.ShapeDtypeStruct``s, as
    ``rl_phase`` feeds it): tokens, mask [B, P], example_ids [B], and for a ``vision`` policy
    images [B, S, S, 3], or ``Patches`` of the largest image bucket where images keep their own
    sizes (``prompts.image_buckets``)."""
    b, p = batch_prompts, prompt_len
    batch = {"tokens": jax.ShapeDtypeStruct((b, p), np.int32),
             "mask": jax.ShapeDtypeStruct((b, p), bool),
             "example_ids": jax.ShapeDtypeStruct((b,), np.int32)}
    if vision is not None and vision.native:
        n = image_buckets(p)[-1] * vision.merge_size ** 2
        batch["images"] = Patches(
            jax.ShapeDtypeStruct((b, n, 3 * vision.patch_size ** 2), np.uint8),
            jax.ShapeDtypeStruct((b, 2), np.int32))
    elif vision is not None:
        s = vision.image_size
        batch["images"] = jax.ShapeDtypeStruct((b, s, s, 3), np.uint8)
    return batch


def rl_phase(exp: experiment.Experiment) -> Phase:
    """PPO/GRPO: the prompt pipeline, the reward callback and ``make_iteration``."""
    cfg, rl, policy, tok = exp.cfg, exp.rl, exp.policy, exp.tokenizer
    train = exp.sources["train"]
    pipeline = PromptPipeline(train, tok, rl.sampled_prompts, exp.prompt, seed=cfg.seed,
                              process_index=jax.process_index(),
                              process_count=jax.process_count())
    iteration, shardings = rl_step(policy, tok, rl, exp.mesh, lambda i: decode_example(train[i]),
                                   cfg.data.task, cfg.get("tools"))
    cut = [0]   # prompts cut to data.max_prompt_len before the latest batch

    def next_batch(i):
        cut[0] = pipeline.truncated_prompts
        b = pipeline.next_batch()
        host = {"tokens": b.tokens, "mask": b.mask, "example_ids": b.indices.astype(np.int32)}
        if b.images is not None:
            host["images"] = b.images
        return sharding.host_local_to_global(exp.mesh, host), host

    def log(i, host, metrics, results, start, seconds):
        # the batch's prompt tokens and prompts cut to data.max_prompt_len, over all processes
        prompt_tokens, truncated = np.sum(multihost_utils.process_allgather(np.array(
            [host["mask"].sum(), pipeline.truncated_prompts - cut[0]], np.int64)
        ).reshape(-1, 2), 0)
        work = flops.rl_iteration_flops(policy.cfg, rl, float(prompt_tokens),
                                        float(metrics["generated_tokens"]), rl.rows,
                                        host["tokens"].shape[1] + rl.max_new_tokens,
                                        float(metrics["update_token_fraction"]))
        if metrics.get("dynamic/filler_groups", 0) > 0:
            logging.warning("iteration %d: dynamic sampling found %d informative groups of %d "
                            "sampled, fewer than rl.batch_prompts=%d: %d masked groups complete "
                            "the batch (raise rl.oversample)", i,
                            int(metrics["dynamic/informative_groups"]), rl.sampled_prompts,
                            rl.batch_prompts, int(metrics["dynamic/filler_groups"]))
        return work, {"prompt_tokens": float(prompt_tokens), "truncated_prompts": int(truncated)}

    return Phase(iteration, shardings, pipeline, next_batch, log)


def run_rl(exp: experiment.Experiment, params: Params) -> tuple[RLState, bool]:
    """PPO/GRPO's RL stage: ``run_iterations`` over ``rl_phase``. Returns (final state,
    preempted)."""
    return run_iterations(exp, params, rl_phase(exp))


class LoweredStep(NamedTuple):
    lowered: jax.stages.Lowered
    policy: Transformer      # with its mesh
    rl: RLConfig
    state: RLState           # shapes of the train state (jax.ShapeDtypeStruct leaves)
    state_shardings: RLState


def lower_rl_step(cfg, devices: Sequence[jax.Device] | None = None) -> LoweredStep:
    """The step training runs for ``cfg`` (self-play's with ``selfplay.enabled``, built by the
    same ``selfplay_step``; else PPO/GRPO's ``rl_step``) lowered for ``devices`` (default: the
    current ones; a TPU topology's devices need no TPU attached), all abstractly (nothing
    allocated, no checkpoint or data read, no worker process started): mesh, parameter and
    state shapes, batch shapes. A config check for real hardware run on CPU, and the input of
    memory planning (``o1jax.run.memory``)."""
    devices = list(jax.devices() if devices is None else devices)
    rl = experiment.check_config(cfg, len(devices))
    mesh = sharding.make_mesh(cfg.mesh_shape, devices)
    policy, tok, fmt = from_config(cfg, mesh, abstract=True)
    no_data = lambda i: {}  # noqa: E731  lowering never calls back
    image_size = policy.cfg.vision.image_size if policy.cfg.vision else 0
    if cfg.selfplay.enabled:
        sp = SelfPlayConfig.from_config(cfg.selfplay)
        step = selfplay_step(policy, tok, fmt, rl, sp, mesh, no_data, set(), cfg.data.task,
                             cfg.data.difficulty)
        iteration, shardings = step.iteration, step.shardings
        batch = selfplay_batch_shapes(sp, rl.batch_prompts, fmt.max_prompt_len, image_size)
    else:
        iteration, shardings = rl_step(policy, tok, rl, mesh, no_data, cfg.data.task,
                                       cfg.get("tools"))
        batch = rl_batch_shapes(rl.sampled_prompts, fmt.max_prompt_len, policy.cfg.vision)
    state = jax.eval_shape(lambda p: init_state(p, rl, jax.random.key(1)), policy.param_shapes())
    key = jax.eval_shape(jax.random.key, 0)
    return LoweredStep(iteration.lower(state, batch, key), policy, rl, state, shardings)
