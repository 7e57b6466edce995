"""Training CLI: ``python -m o1jax.train --config configs/NAME.py --workdir DIR [--config.X=Y]``.

The workdir holds checkpoints/, metrics.jsonl, tensorboard/ and config.json (the resolved
config). Running again on the same workdir resumes from the latest complete checkpoint.
The last line printed is one JSON object summarising the run.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding
from absl import app, flags
from ml_collections import config_flags

from o1jax import flops
from o1jax import sft as sft_lib
from o1jax import sharding
from o1jax.checkpoint import Checkpointer, StopSignal
from o1jax.data import builders
from o1jax.data.pipeline import PromptPipeline, decode_example
from o1jax.evaluation import evaluate
from o1jax.metrics import MetricsWriter
from o1jax.data import tasks
from o1jax.models import Transformer, hf, preset
from o1jax.report import plot_run
from o1jax.rewards.in_graph import make_reward_callback
from o1jax.rl.iteration import RLConfig, init_state, make_iteration
from o1jax.rollout.sampler import SamplingConfig
from o1jax.tokenizer import Tokenizer, byte_tokenizer

log = logging.getLogger("o1jax.train")

RL_FIELDS = {f for f in RLConfig.__dataclass_fields__}


class ConfigError(ValueError):
    """A config that cannot run, found before anything is compiled."""


def check_config(cfg: ml_collections.ConfigDict, num_devices: int) -> None:
    """Fast checks that name the offending field."""
    try:
        mesh_shape = sharding.resolve_mesh_shape(cfg.mesh_shape, num_devices)
    except ValueError as e:
        raise ConfigError(f"mesh_shape: {e}") from None
    try:
        tasks.check_slip_rate(cfg.data.task, cfg.data.get("slip_rate", 0.0))
    except ValueError as e:
        raise ConfigError(f"data.{e}") from None
    data_par = mesh_shape[0] * mesh_shape[1]
    rows = cfg.rl.batch_prompts * cfg.rl.group_size
    if cfg.rl.batch_prompts % max(1, jax.process_count()):
        raise ConfigError(f"rl.batch_prompts={cfg.rl.batch_prompts} is not divisible by the "
                          f"{jax.process_count()} processes")
    if rows % data_par:
        raise ConfigError(f"rl.batch_prompts * rl.group_size = {rows} is not divisible by the "
                          f"{data_par} data-parallel devices of mesh_shape {mesh_shape}")
    if rows % cfg.rl.minibatches:
        raise ConfigError(f"rl.minibatches={cfg.rl.minibatches} does not divide the {rows} "
                          "rollout rows")
    if cfg.rl.algorithm != "ppo" and cfg.rl.group_size < 2:
        raise ConfigError(f"rl.algorithm={cfg.rl.algorithm} needs rl.group_size >= 2")


def rl_config(cfg) -> RLConfig:
    kw = {k: v for k, v in cfg.rl.items() if k in RL_FIELDS}
    try:
        return RLConfig(**kw)
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None


def _resume(cfg, workdir: str, stage: str, state, pipeline):
    """(checkpointer, first step, state): the latest readable checkpoint of ``stage`` restored
    into ``state``'s structure, with the pipeline position, or a fresh start."""
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints", stage), every=cfg.checkpoint.every,
                        keep=cfg.checkpoint.keep, async_save=cfg.checkpoint.async_save)
    restored = ckpt.restore_latest(jax.eval_shape(lambda s: s, state))
    if restored is None:
        return ckpt, 0, state
    start, state, extra = restored
    pipeline.restore(extra["pipeline"])
    log.info("resumed %s from step %d", stage.upper(), start)
    return ckpt, start, state


def run_rl(cfg, workdir: str, mesh, tokenizer, policy: Transformer, params, sources) -> dict:
    """The RL stage: resumable loop over compiled iterations."""
    rcfg = rl_config(cfg)
    sampling = SamplingConfig(max_new_tokens=cfg.rl.max_new_tokens,
                              temperature=cfg.rl.temperature, top_p=cfg.rl.get("top_p", 1.0),
                              num_samples=cfg.rl.group_size, stop_ids=tokenizer.stop_ids,
                              pad_id=tokenizer.pad_id)
    train = sources["train"]
    pipeline = PromptPipeline(train, tokenizer, cfg.rl.batch_prompts, cfg.data.max_prompt_len,
                              seed=cfg.seed, template=cfg.data.template,
                              process_index=jax.process_index(),
                              process_count=jax.process_count())
    reward_fn = make_reward_callback(tokenizer, lambda i: decode_example(train[i]),
                                     dict(cfg.rl.rewards))
    state = init_state(policy, params, rcfg, jax.random.key(cfg.seed + 1))
    ckpt, start, state = _resume(cfg, workdir, "rl", state, pipeline)
    iteration = make_iteration(policy, sampling, rcfg, reward_fn, state)
    state = jax.device_put(state, iteration.state_shardings)
    writer = MetricsWriter(workdir, cfg.rl.num_iterations, resume_from=start, stage="rl",
                           console=cfg.get("progress_bar", True))
    stop = StopSignal()
    base_key = jax.random.key(cfg.seed)
    peak = cfg.get("peak_flops_per_s") or flops.matmul_peak_flops(1024)
    uses_ref = rcfg.kl_coef > 0 or rcfg.kl_target is not None
    last = {}
    try:
        for step in range(start, cfg.rl.num_iterations):
            b = pipeline.next_batch()
            batch = sharding.host_local_to_global(mesh, {
                "tokens": b.tokens, "mask": b.mask, "example_ids": b.indices.astype(np.int32)})
            t = time.perf_counter()
            state, metrics = iteration(state, batch, jax.random.fold_in(base_key, step))
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            seconds = time.perf_counter() - t
            metrics["accuracy"] = metrics.get("reward/correctness", float("nan"))
            metrics["format_rate"] = metrics.get("reward/format", float("nan"))
            metrics["time/iteration_s"] = seconds
            metrics["tokens_per_s"] = metrics["generated_tokens"] / seconds
            rows = b.tokens.shape[0] * cfg.rl.group_size
            length = b.tokens.shape[1] + cfg.rl.max_new_tokens
            work = flops.rollout_flops(policy.cfg, float(b.mask.sum()),
                                       metrics["generated_tokens"], length / 2) + \
                flops.update_flops(policy.cfg, rows, length, rcfg.epochs, rcfg.uses_critic,
                                   uses_ref)
            metrics["mfu"] = work / seconds / peak
            if metrics["skipped_updates"] and cfg.on_nonfinite == "stop":
                raise FloatingPointError(f"RL step {step + 1}: non-finite loss or gradient "
                                         "(on_nonfinite='stop')")
            writer.write(step + 1, metrics)
            last = metrics
            ckpt.save(step + 1, state, {"pipeline": pipeline.state()},
                      force=stop.received is not None or step + 1 == cfg.rl.num_iterations)
            if stop.received is not None:
                log.warning("signal %d: checkpointed step %d, exiting", stop.received, step + 1)
                break
    finally:
        stop.restore()
        ckpt.close()
        writer.close()
    return {"rl_steps": int(state["step"]), "state": state, "last_metrics": last,
            "preempted": stop.received is not None}


def run_sft(cfg, workdir: str, mesh, tokenizer, policy: Transformer, params, sources):
    """The SFT stage: resumable teacher forcing on the reference solutions."""
    steps = cfg.sft.num_steps
    opt = sft_lib.make_optimizer(cfg.sft.lr, steps, cfg.sft.warmup_steps)
    pipeline = PromptPipeline(sources["train"], tokenizer, cfg.sft.batch_size,
                              cfg.data.max_prompt_len, seed=cfg.seed,
                              process_index=jax.process_index(),
                              process_count=jax.process_count())
    state = sft_lib.init_sft_state(params, opt)
    # scalars and optimizer counts committed to the mesh, as the step returns them: one compile
    state = jax.tree.map(lambda x: x if isinstance(x.sharding, NamedSharding) else
                         jax.device_put(x, sharding.replicated(mesh)), state)
    ckpt, start, state = _resume(cfg, workdir, "sft", state, pipeline)
    step_fn = jax.jit(functools.partial(sft_lib.sft_step, policy=policy, opt=opt),
                      donate_argnums=(0,))
    writer = MetricsWriter(workdir, steps, resume_from=start, stage="sft",
                           console=cfg.get("progress_bar", True))
    stop = StopSignal()
    try:
        for step in range(start, steps):
            _, examples = pipeline.next_examples()
            enc = sft_lib.encode_sft(examples, tokenizer, cfg.sft.max_len, cfg.data.template)
            batch = sharding.host_local_to_global(mesh, enc)
            state, metrics = step_fn(state, batch)
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            if metrics["skipped_updates"] and cfg.on_nonfinite == "stop":
                raise FloatingPointError(f"SFT step {step + 1}: non-finite loss or gradient")
            writer.write(step + 1, metrics)
            ckpt.save(step + 1, state, {"pipeline": pipeline.state()},
                      force=stop.received is not None or step + 1 == steps)
            if stop.received is not None:
                break
    finally:
        stop.restore()
        ckpt.close()
        writer.close()
    return state["params"], stop.received is not None


def evaluate_stage(cfg, workdir: str, name: str, tokenizer, policy, params, sources) -> dict:
    """Held-out evaluation, cached in WORKDIR/eval_{name}.json (a resumed run reuses it)."""
    path = os.path.join(workdir, f"eval_{name}.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    test = [decode_example(sources["test"][i]) for i in range(len(sources["test"]))]
    test = test[:cfg.eval.num_examples]
    result = evaluate(policy, params, test, tokenizer, cfg.data.max_prompt_len,
                      cfg.eval.max_new_tokens, maj_k=cfg.eval.maj_k if name == "rl" else 0,
                      temperature=cfg.eval.temperature, batch_prompts=cfg.eval.batch_prompts,
                      seed=cfg.seed, template=cfg.data.template)
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
    os.replace(path + ".tmp", path)
    return result


def build_model(cfg, mesh, abstract: bool = False):
    """(policy, tokenizer). With ``model.hf_path`` the shapes and tokenizer come from that
    Hugging Face directory; otherwise from ``model.preset`` (+ overrides) and the byte tokenizer.
    ``abstract`` (shape checks on CPU) uses the preset even when hf_path is set."""
    hf_path = cfg.model.get("hf_path", "")
    overrides = dict(cfg.model.get("overrides", {}))
    if hf_path and not abstract:
        if not os.path.isdir(hf_path):
            raise ConfigError(f"model.hf_path={hf_path!r} is not a directory")
        mcfg = hf.load_config(hf_path, **overrides)
        tokenizer = Tokenizer.from_dir(hf_path)
    else:
        try:
            mcfg = preset(cfg.model.preset, **overrides)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"model: {e}") from None
        tokenizer = byte_tokenizer()
    if mcfg.vocab_size < tokenizer.vocab_size:
        raise ConfigError(f"model.vocab_size={mcfg.vocab_size} is smaller than the tokenizer's "
                          f"{tokenizer.vocab_size}")
    return Transformer(mcfg, mesh=mesh), tokenizer


def initial_params(cfg, policy: Transformer):
    hf_path = cfg.model.get("hf_path", "")
    if hf_path:
        return hf.load_params(hf_path, policy)
    return policy.init_sharded(jax.random.key(cfg.seed))


def load_data(cfg, workdir: str) -> dict:
    data_cfg = {}
    if cfg.data.task in tasks.TASKS:
        data_cfg = {k: cfg.data[k] for k in ("difficulty", "num_train", "num_test", "seed")
                    if k in cfg.data}
        if cfg.data.get("slip_rate"):
            data_cfg["slip_rate"] = cfg.data.slip_rate
    elif cfg.data.task == "jsonl":
        data_cfg = {k: cfg.data[k] for k in ("train_path", "test_path") if k in cfg.data}
    return builders.build(cfg.data.task, cfg.data.get("data_dir") or
                          os.path.join(workdir, "tfds"),
                          manual_dir=cfg.data.get("manual_dir") or None, **data_cfg)


def setup(cfg, workdir: str):
    """Mesh, tokenizer, policy and data, after the fast config checks."""
    sharding.maybe_initialize_distributed(cfg.get("distributed", False))
    check_config(cfg, jax.device_count())
    mesh = sharding.make_mesh(cfg.mesh_shape)
    policy, tokenizer = build_model(cfg, mesh)
    return mesh, tokenizer, policy, load_data(cfg, workdir)


def lower_rl_step(cfg) -> Any:
    """Builds the mesh, the parameter and state shapes and lowers the compiled RL iteration,
    all abstractly (nothing allocated, no checkpoint read): a config check for real hardware
    run on CPU with fake devices."""
    check_config(cfg, jax.device_count())
    mesh = sharding.make_mesh(cfg.mesh_shape)
    policy, tokenizer = build_model(cfg, mesh, abstract=True)
    rcfg = rl_config(cfg)
    sampling = SamplingConfig(max_new_tokens=cfg.rl.max_new_tokens,
                              temperature=cfg.rl.temperature, num_samples=cfg.rl.group_size,
                              stop_ids=tokenizer.stop_ids, pad_id=tokenizer.pad_id)
    reward_fn = make_reward_callback(tokenizer, lambda i: {}, dict(cfg.rl.rewards))
    params = jax.eval_shape(policy.init, jax.random.key(0))
    state = jax.eval_shape(lambda p: init_state(policy, p, rcfg, jax.random.key(1)), params)
    b, p = cfg.rl.batch_prompts, cfg.data.max_prompt_len
    batch = {"tokens": jax.ShapeDtypeStruct((b, p), np.int32),
             "mask": jax.ShapeDtypeStruct((b, p), bool),
             "example_ids": jax.ShapeDtypeStruct((b,), np.int32)}
    iteration = make_iteration(policy, sampling, rcfg, reward_fn, state)
    return iteration.lower(state, batch, jax.random.key(0))


def run(cfg, workdir: str) -> dict:
    """SFT, held-out evaluation, RL, held-out evaluation; each stage resumable."""
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(cfg.to_json_best_effort(indent=2))
    mesh, tokenizer, policy, sources = setup(cfg, workdir)
    params = initial_params(cfg, policy)
    result = {"workdir": os.path.abspath(workdir), "preempted": False}
    do_eval = cfg.eval.num_examples > 0
    if cfg.sft.num_steps > 0:
        params, preempted = run_sft(cfg, workdir, mesh, tokenizer, policy, params, sources)
        if preempted:
            return dict(result, preempted=True)
        if do_eval:
            result["sft_accuracy"] = evaluate_stage(cfg, workdir, "sft", tokenizer, policy,
                                                    params, sources)["greedy_accuracy"]
    if cfg.rl.num_iterations > 0:
        out = run_rl(cfg, workdir, mesh, tokenizer, policy, params, sources)
        result.update(rl_steps=out["rl_steps"], preempted=out["preempted"])
        if out["preempted"]:
            return result
        params = out["state"]["policy"]
        if do_eval:
            ev = evaluate_stage(cfg, workdir, "rl", tokenizer, policy, params, sources)
            result["rl_accuracy"] = ev["greedy_accuracy"]
            result[f"rl_maj{cfg.eval.maj_k}_accuracy"] = ev.get(f"maj{cfg.eval.maj_k}_accuracy")
    if jax.process_index() == 0:
        result["report"] = os.path.abspath(plot_run(workdir))
    return result


def print_table(result: dict, maj_k: int) -> None:
    rows = [("held-out greedy accuracy after SFT", result.get("sft_accuracy")),
            ("held-out greedy accuracy after RL", result.get("rl_accuracy")),
            (f"held-out maj@{maj_k} accuracy after RL", result.get(f"rl_maj{maj_k}_accuracy"))]
    width = max(len(r[0]) for r in rows)
    print("-" * (width + 10))
    for name, v in rows:
        print(f"{name:<{width}}  {'-' if v is None else f'{100 * v:5.1f}%'}")
    print("-" * (width + 10))


_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints and metrics")


def main(argv):
    del argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every save at INFO
    if _WORKDIR.value is None:
        print("error: --workdir is required", file=sys.stderr)
        return 2
    try:
        result = run(_CONFIG.value, _WORKDIR.value)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    print_table(result, _CONFIG.value.eval.maj_k)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(lambda argv: sys.exit(main(argv)))
