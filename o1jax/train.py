"""Training CLI: ``python -m o1jax.train --config configs/NAME.py --workdir DIR [--config.X=Y]``.

SFT -> held-out evaluation -> RL (or self-play) -> held-out evaluation, each stage
resumable. The workdir (a local path or gs://) holds checkpoints/, metrics.jsonl,
tensorboard/, eval_*.json, report.png (selfplay.png) and config.json (the resolved config);
running again on the same workdir resumes from the
latest complete checkpoint. The last line printed (by process 0) is one JSON object summarising
the run. Exit status: 0 done, 2 bad config, workdir or multi-host start, 143 preempted (a
checkpoint was saved; rerun to resume). Multi-host: the same command on every host, with
``--config.distributed=True`` (TPU VMs, SLURM) or ``--coordinator_address --num_processes
--process_id``.
"""

from __future__ import annotations

import json
import logging
import sys

import jax
from absl import app, flags
from ml_collections import config_flags

from o1jax import experiment, sharding
from o1jax import workdir as wd
from o1jax.curves import curve_path
from o1jax.search.evaluation import evaluate_stage
from o1jax.plots import plot_run, plot_selfplay
from o1jax.policy import initial_params
from o1jax.rewards.api import checks_done
from o1jax.rl.state import sampling_params
from o1jax.run.rl import run_rl
from o1jax.selfplay.buffer import proposer_mix
from o1jax.selfplay.config import SelfPlayConfig
from o1jax.run.selfplay import run_selfplay
from o1jax.sft import run_sft


def run(cfg, workdir: str) -> dict:
    """Runs every stage the config asks for; returns the summary (accuracies, steps, paths)."""
    # ---- setup: config and workdir checked before anything is written; mesh, model, data
    exp = experiment.setup(cfg, workdir)
    params = initial_params(cfg, exp.policy)
    result = {"workdir": str(exp.workdir), "preempted": False}
    do_eval = cfg.eval.num_examples > 0

    # ---- SFT, then its evaluation
    selfplay = SelfPlayConfig.from_config(cfg.selfplay)
    if cfg.sft.num_steps > 0:
        mix = proposer_mix(exp, selfplay) if selfplay.enabled else None
        params, preempted = run_sft(exp, params, mix)
        if preempted:
            return dict(result, preempted=True)
        if do_eval:
            result["sft_accuracy"] = evaluate_stage(exp, "sft", params, 0,
                                                     cfg.sft.num_steps)["greedy_accuracy"]

    # ---- RL (or self-play), then its evaluation (greedy and maj@k)
    if exp.rl.num_iterations > 0:
        state, preempted = (run_selfplay if selfplay.enabled else run_rl)(exp, params)
        result.update(rl_steps=int(state.step), preempted=preempted)
        if preempted:
            return result
        if do_eval:
            k = cfg.eval.maj_k
            step = int(state.step)   # the curve's last point, if any: reused, not run again
            ev = evaluate_stage(exp, "rl", sampling_params(state, exp.rl), k, step,
                                reuse=curve_path(exp.workdir, step))
            result["rl_accuracy"] = ev["greedy_accuracy"]
            result[f"rl_maj{k}_accuracy"] = ev.get(f"maj{k}_accuracy")

    # ---- report
    if wd.is_writer():
        result["report"] = str(plot_run(exp.workdir))
        if selfplay.enabled and exp.rl.num_iterations > 0:
            result["selfplay_report"] = str(plot_selfplay(exp.workdir))
    return result


def print_table(result: dict, maj_k: int) -> None:
    """The run's headline figures (a run's summary dict) as a small table on stdout."""
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
_WORKDIR = flags.DEFINE_string("workdir", None, "directory (local or gs://) for checkpoints and "
                                "metrics")
_DISTRIBUTED = sharding.define_distributed_absl_flags(flags)
PREEMPTED_EXIT = 143  # 128 + SIGTERM: what a scheduler sees from a job its preemption stopped


def main(argv):
    del argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every save at INFO
    if _WORKDIR.value is None:
        print("error: --workdir is required", file=sys.stderr)
        return 2
    try:
        sharding.initialize_from_flags(_DISTRIBUTED, _CONFIG.value.get("distributed", False))
        result = run(_CONFIG.value, _WORKDIR.value)
    except experiment.ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except (wd.WorkdirError, sharding.DistributedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    logging.getLogger("o1jax.train").info(
        "process %d of %d verified %d responses", jax.process_index(), jax.process_count(),
        checks_done())
    if wd.is_writer():
        print_table(result, _CONFIG.value.eval.maj_k)
        print(json.dumps(result))
    return PREEMPTED_EXIT if result["preempted"] else 0


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(lambda argv: sys.exit(main(argv)))
