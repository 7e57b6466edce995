"""Reading a training workdir back: its resolved config, tokenizer and policy parameters."""

from __future__ import annotations

import json
import os

import jax
import ml_collections
import orbax.checkpoint as ocp

from o1jax.models import Transformer, preset
from o1jax.tokenizer import byte_tokenizer


def is_workdir(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "checkpoints")) and os.path.exists(
        os.path.join(path, "config.json"))


def load_config(path: str) -> ml_collections.ConfigDict:
    with open(os.path.join(path, "config.json")) as f:
        return ml_collections.ConfigDict(json.load(f))


def load_policy(path: str, step: int | None = None, mesh=None):
    """(model, params, tokenizer) of the latest (or ``step``) RL checkpoint, else SFT."""
    cfg = load_config(path)
    model = Transformer(preset(cfg.model.preset, **dict(cfg.model.get("overrides", {}))),
                        mesh=mesh)
    for stage, key in (("rl", "policy"), ("sft", "params")):
        directory = os.path.join(path, "checkpoints", stage)
        if not os.path.isdir(directory):
            continue
        mngr = ocp.CheckpointManager(directory)
        steps = sorted(mngr.all_steps())
        if not steps:
            continue
        if step is not None and step not in steps:
            if stage == "rl":
                continue
            raise ValueError(f"{path}: no checkpoint at step {step}; RL/SFT steps: {steps}")
        chosen = step if step is not None else steps[-1]
        state = mngr.restore(chosen, args=ocp.args.Composite(
            state=ocp.args.StandardRestore()))["state"]
        params = jax.tree.map(jax.numpy.asarray, state[key])
        return model, params, byte_tokenizer()
    raise ValueError(f"{path}: no checkpoints to load")
