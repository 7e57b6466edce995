"""Training CLI: ``python -m o1jax.train --config configs/NAME.py --workdir DIR [--config.X=Y]``.

SFT -> held-out evaluation -> RL -> held-out evaluation, each stage resumable. The workdir
holds checkpoints/, metrics.jsonl, tensorboard/, eval_*.json, report.png and config.json (the
resolved config); running again on the same workdir resumes from the latest complete
checkpoint. The last line printed is one JSON object summarising the run.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import jax
from absl import app, flags
from ml_collections import config_flags

from o1jax import experiment
from o1jax.evaluation import evaluate_stage
from o1jax.report import plot_run, print_table
from o1jax.rl.stage import run_rl
from o1jax.sft import run_sft


def run(cfg, workdir: str) -> dict:
    """Runs every stage the config asks for; returns the summary (accuracies, steps, paths)."""
    # ---- config and setup: checks first, then mesh, model, tokenizer, data
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(cfg.to_json_best_effort(indent=2))
    exp = experiment.setup(cfg, workdir)
    params = experiment.initial_params(cfg, exp.policy)
    result = {"workdir": os.path.abspath(workdir), "preempted": False}
    do_eval = cfg.eval.num_examples > 0

    # ---- SFT, then its evaluation
    if cfg.sft.num_steps > 0:
        params, preempted = run_sft(exp, params)
        if preempted:
            return dict(result, preempted=True)
        if do_eval:
            result["sft_accuracy"] = evaluate_stage(exp, "sft", params, 0)["greedy_accuracy"]

    # ---- RL, then its evaluation (greedy and maj@k)
    if exp.rl.num_iterations > 0:
        state, preempted = run_rl(exp, params)
        result.update(rl_steps=int(state.step), preempted=preempted)
        if preempted:
            return result
        if do_eval:
            k = cfg.eval.maj_k
            ev = evaluate_stage(exp, "rl", state.policy, k)
            result["rl_accuracy"] = ev["greedy_accuracy"]
            result[f"rl_maj{k}_accuracy"] = ev.get(f"maj{k}_accuracy")

    # ---- report
    if jax.process_index() == 0:
        result["report"] = os.path.abspath(plot_run(workdir))
    return result


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
    except experiment.ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    print_table(result, _CONFIG.value.eval.maj_k)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(lambda argv: sys.exit(main(argv)))
