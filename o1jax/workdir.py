"""A training workdir: where it lives, who writes it, and reading it back.

A workdir is a local directory or a ``gs://`` URL; every file in it goes through ``etils.epath``
(gcsfs for ``gs://``; orbax reads and writes arrays through tensorstore). It holds
checkpoints/, metrics.jsonl, tensorboard/, eval_*.json, report.png, config.json (the resolved
config) and, for a run started from a Hugging Face model, model/ (that model's config.json,
tokenizer files and a vision-language model's preprocessor_config.json, so export and generate
use the tokenizer and image normalisation the run trained with). Only process 0
writes shared files (``is_writer``); orbax saves are collective. Building the run's policy
from a workdir is ``o1jax.policy``'s; this module reads paths, configs and checkpoints only.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid

import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

log = logging.getLogger(__name__)

REMOTE_SCHEMES = ("gs://",)
MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json",
               "generation_config.json", "preprocessor_config.json")
# Fields whose change makes the saved checkpoints or data position meaningless: parameter shapes,
# tokenizer, data, seed, and the RL state's layout. Anything else resumes with a warning.
INCOMPATIBLE = ("model.", "data.", "seed", "rl.algorithm", "selfplay.enabled", "init_from")


class WorkdirError(RuntimeError):
    """A workdir that cannot be used: unreachable, or holding a run this config cannot resume."""


def is_remote(path) -> bool:
    return str(path).startswith(REMOTE_SCHEMES)


def resolve(workdir) -> epath.Path:
    """The workdir as an ``epath.Path``: gs:// as given, a local path made absolute."""
    workdir = str(workdir)
    return epath.Path(workdir if is_remote(workdir) else os.path.abspath(workdir))


def is_writer() -> bool:
    """Whether this process writes the workdir's shared files (config, metrics, evals, report)."""
    return jax.process_index() == 0


def write_text(path: epath.Path, text: str) -> None:
    """Writes ``text`` so that readers see the old or the new file, never a partial one (a local
    temporary file renamed into place; an object store replaces an object atomically)."""
    path = epath.Path(path)
    if is_remote(path):
        path.write_text(text)
        return
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    tmp.write_text(text)
    os.replace(tmp, path)


def read_json(path: epath.Path):
    return json.loads(epath.Path(path).read_text())


def read_jsonl(path: epath.Path) -> list[dict]:
    """The rows of a JSON-lines file (local or gs://), blank lines skipped."""
    return [json.loads(line) for line in epath.Path(path).read_text().splitlines()
            if line.strip()]


def check_reachable(workdir: epath.Path, timeout: float = 60.0) -> None:
    """Creates the workdir (a probe object for a bucket) or raises WorkdirError within
    ``timeout`` seconds naming the workdir and the likely fix. Writes nothing anywhere else."""
    outcome: list = []

    def probe():
        try:
            workdir.mkdir(parents=True, exist_ok=True)
            if is_remote(workdir):
                marker = workdir / f".o1jax-probe-{uuid.uuid4().hex}"
                marker.write_text("ok")
                marker.unlink()
            outcome.append(None)
        except Exception as e:  # noqa: BLE001 - any failure to create it is reported below
            outcome.append(e)

    thread = threading.Thread(target=probe, daemon=True)  # a hung client must not block exit
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise WorkdirError(f"workdir {workdir} did not answer within {timeout:.0f} s: check the "
                           "bucket name, network access and credentials (gcloud auth "
                           "application-default login)")
    if outcome[0] is not None:
        e = outcome[0]
        raise WorkdirError(f"workdir {workdir} cannot be written ({type(e).__name__}: "
                           f"{str(e)[:300]}); check the path and its permissions, or the bucket "
                           "name and credentials (gcloud auth application-default login)")


def load_config(workdir) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(read_json(resolve(workdir) / "config.json"))


def _flat(d, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _uses_reference(flat: dict) -> bool:
    return bool(flat.get("rl.kl_coef")) or flat.get("rl.kl_target") is not None


def config_changes(saved: dict, new: dict) -> tuple[list[str], list[str]]:
    """(incompatible, compatible): dotted names of the fields that differ between a workdir's
    saved config and a new one. Incompatible changes (model shapes, tokenizer, data, seed, RL
    algorithm) cannot resume the saved run; the rest (more iterations, a learning rate) can."""
    a, b = _flat(saved), _flat(new)
    changed = sorted(k for k in a.keys() | b.keys() if a.get(k, "<unset>") != b.get(k, "<unset>"))
    incompatible = [k for k in changed if k.startswith(INCOMPATIBLE)]
    # A KL term (which keeps a reference model) or none: the saved RL state's layout differs.
    if _uses_reference(a) != _uses_reference(b):
        incompatible += [k for k in ("rl.kl_coef", "rl.kl_target") if k in changed]
    return incompatible, [k for k in changed if k not in incompatible]


def check_resume(workdir: epath.Path, cfg: ml_collections.ConfigDict) -> None:
    """Before a run touches ``workdir``: raises WorkdirError naming the fields when the run
    saved there cannot be resumed with ``cfg``; logs a warning listing the changes it can
    honour. A workdir without config.json is a new run."""
    path = workdir / "config.json"
    if not path.exists():
        return
    saved, new = read_json(path), json.loads(cfg.to_json_best_effort())
    incompatible, compatible = config_changes(saved, new)
    if incompatible:
        old_values, new_values = _flat(saved), _flat(new)
        diffs = ", ".join(f"{k}: {old_values.get(k, '<unset>')!r} -> "
                          f"{new_values.get(k, '<unset>')!r}" for k in incompatible)
        raise WorkdirError(f"{workdir} holds a run whose config differs in fields a resume "
                           f"cannot honour ({diffs}); use a new --workdir, or the saved config")
    if compatible:
        log.warning("resuming %s with changed fields: %s", workdir, ", ".join(compatible))


def record_model(workdir: epath.Path, hf_path: str) -> None:
    """Copies a Hugging Face model's config and tokenizer files into WORKDIR/model/."""
    out = workdir / "model"
    out.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        src = epath.Path(hf_path) / name
        if src.exists():
            (out / name).write_bytes(src.read_bytes())


def is_workdir(path) -> bool:
    p = resolve(path)
    return (p / "checkpoints").is_dir() and (p / "config.json").exists()


POLICY_KEY = {"rl": "policy", "sft": "params"}   # where each stage's state keeps the policy


def find_checkpoint(path, step: int | None = None, stage: str | None = None
                    ) -> tuple[str, int, epath.Path]:
    """(stage, step, its checkpoint manager's directory) of the latest (or ``step``) RL
    checkpoint, else SFT; ``stage`` ("rl" or "sft") looks in that stage's checkpoints only."""
    root = resolve(path)
    if stage not in (None, "rl", "sft"):
        raise ValueError(f"stage must be rl or sft, got {stage!r}")
    found = {}
    for name in ("rl", "sft"):
        directory = root / "checkpoints" / name
        if (stage or name) != name or not directory.is_dir():
            continue
        steps = sorted(ocp.CheckpointManager(directory).all_steps())
        found[name] = steps
        if steps and (step is None or step in steps):
            return name, step if step is not None else steps[-1], directory
    if step is not None and found:
        raise ValueError(f"{path}: no checkpoint at step {step}; steps saved: " + "; ".join(
            f"{name.upper()} {steps}" for name, steps in found.items()))
    raise ValueError(f"{path}: no {stage.upper() + ' ' if stage else ''}checkpoints to load")


def restore_subtree(directory: epath.Path, step: int, target: dict) -> dict:
    """Only the parts of a saved state that ``target`` names ({key: tree of
    ``jax.ShapeDtypeStruct`` with shardings}), each array read straight into its sharding
    (every process reads its own shards); nothing else of the state is read."""
    restore_args = jax.tree.map(lambda s: ocp.ArrayRestoreArgs(
        sharding=s.sharding, global_shape=s.shape, dtype=s.dtype), target)
    return ocp.CheckpointManager(directory).restore(step, args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(item=target, restore_args=restore_args,
                                     partial_restore=True)))["state"]
