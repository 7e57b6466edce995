"""The loop skeleton SFT and RL share: resume from the latest readable checkpoint, run steps,
log, checkpoint on cadence, and on SIGTERM/SIGINT (preemption) at any process save once more,
at the same step on every process, and stop. It keeps the stage's training-FLOPs ledger."""

from __future__ import annotations

import logging
from typing import Any, Callable

import jax
from etils import epath

from o1jax.checkpoint import Checkpointer, StopSignal
from o1jax.data.pipeline import PromptPipeline
from o1jax.metrics import MetricsWriter

log = logging.getLogger("o1jax.loop")

StepFn = Callable[[Any, int], tuple[Any, dict]]
LEDGER = {"sft": "sft_flops", "rl": "train_flops"}  # the cumulative FLOPs key of each stage


def abstract_like(tree: Any) -> Any:
    """Shapes, dtypes and shardings of ``tree``: a restore target that reads each array straight
    into its shards."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                        tree)


def run_loop(cfg, workdir: epath.Path, stage: str, state: Any, pipeline: PromptPipeline,
             step_fn: StepFn, num_steps: int,
             after_step: Callable[[Any, int, dict], None] | None = None,
             saved: Callable[[Any], Any] = lambda state: state,
             unsaved: Callable[[Any, Any], Any] = lambda restored, state: restored
             ) -> tuple[Any, bool]:
    """Runs ``state, metrics = step_fn(state, step)`` for steps [start, num_steps), where start
    is the step of the latest readable checkpoint of ``stage`` (state and ``pipeline`` position
    restored from it) or 0. ``state`` must be placed on its devices already.

    Each step's metrics go to WORKDIR/metrics.jsonl and TensorBoard, with the stage's FLOPs
    so far (the sum of the steps' ``flops``: ``sft_flops`` for SFT, ``train_flops`` for RL,
    kept in the checkpoint so a resumed run counts on); the state is saved every
    ``checkpoint.every`` steps and after the last. A step that skipped a non-finite update
    raises with ``on_nonfinite="stop"``. ``after_step(state, step, metrics)`` runs after each
    logged step, outside its timing (the train-time curve's evaluations). ``saved(state)`` is
    what a checkpoint holds and ``unsaved(restored, state)`` the state rebuilt from it (LoRA's
    frozen base stays out of checkpoints: its source rebuilds it). Returns (state, preempted).
    """
    ckpt = Checkpointer(workdir / "checkpoints" / stage, every=cfg.checkpoint.every,
                        keep=cfg.checkpoint.keep, async_save=cfg.checkpoint.async_save)
    start, total_flops = 0, 0.0
    restored = ckpt.restore_latest(abstract_like(saved(state)))
    if restored is not None:
        start, restored_state, extra = restored
        state = unsaved(restored_state, state)
        pipeline.restore(extra["pipeline"])
        total_flops = float(extra.get("flops", 0.0))
        log.info("resumed %s from step %d", stage.upper(), start)
    writer = MetricsWriter(workdir, num_steps, resume_from=start, stage=stage,
                           console=cfg.get("progress_bar", True))
    stop = StopSignal()
    preempted = False
    try:
        for step in range(start, num_steps):
            state, metrics = step_fn(state, step)
            total_flops += float(metrics["flops"])
            metrics[LEDGER[stage]] = total_flops
            if metrics["skipped_updates"] and cfg.on_nonfinite == "stop":
                raise FloatingPointError(f"{stage.upper()} step {step + 1}: non-finite loss or "
                                         "gradient (on_nonfinite='stop')")
            writer.write(step + 1, metrics)
            if after_step is not None:
                after_step(state, step + 1, metrics)
            preempted = stop.agreed()
            extra = {"pipeline": pipeline.state(), "flops": total_flops}
            if ckpt.save(step + 1, saved(state), extra,
                         force=preempted or step + 1 == num_steps):
                writer.flush()
            if preempted:
                log.warning("stop signal (%s on this process): checkpointed %s step %d, exiting",
                            stop.received, stage.upper(), step + 1)
                break
    finally:
        stop.restore()
        ckpt.close()
        writer.close()
    return state, preempted
