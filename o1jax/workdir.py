"""A training workdir: where it lives, who writes it, and reading it back.

A workdir is a local directory or a ``gs://`` URL; every file in it goes through ``etils.epath``
(gcsfs for ``gs://``; orbax reads and writes arrays through tensorstore). It holds
checkpoints/, metrics.jsonl, tensorboard/, eval_*.json, report.png, config.json (the resolved
config) and, for a run started from a Hugging Face model, model/ (that model's config.json,
tokenizer files and a vision-language model's preprocessor_config.json, so export and generate
use the tokenizer and image normalisation the run trained with). Only process 0
writes shared files (``is_writer``); orbax saves are collective.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid

import jax
import ml_collections
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


def policy_model(root: epath.Path, mesh=None):
    """(model, tokenizer) a run trained with: WORKDIR/model/ when it started from a Hugging
    Face model, else the preset and the byte tokenizer (with its image placeholder for a
    vision policy)."""
    from o1jax.experiment import model_shapes
    from o1jax.models import Transformer, hf
    from o1jax.tokenizer import Tokenizer, byte_tokenizer
    cfg = load_config(root)
    overrides = dict(cfg.model.get("overrides", {}))
    if (root / "model" / "config.json").exists():
        mcfg = hf.load_config(root / "model", **overrides)
        tokenizer = Tokenizer.from_dir(root / "model")
    else:
        mcfg = model_shapes(cfg)
        tokenizer = byte_tokenizer(image_token=mcfg.vision is not None)
    return Transformer(mcfg, mesh=mesh), tokenizer


def load_state(path, step: int | None = None, stage: str | None = None) -> dict:
    """The saved state of the latest (or ``step``) RL checkpoint, else SFT; ``stage`` ("rl" or
    "sft") looks in that stage's checkpoints only. A dict with ``"stage"`` added; arrays on this
    process's first device (every process of a multi-host launch reads its own copy)."""
    import orbax.checkpoint as ocp

    root = resolve(path)
    if stage not in (None, "rl", "sft"):
        raise ValueError(f"stage must be rl or sft, got {stage!r}")
    found = {}
    for name in ("rl", "sft"):
        directory = root / "checkpoints" / name
        if (stage or name) != name or not directory.is_dir():
            continue
        mngr = ocp.CheckpointManager(directory)
        steps = sorted(mngr.all_steps())
        found[name] = steps
        if not steps or (step is not None and step not in steps):
            continue
        chosen = step if step is not None else steps[-1]
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        state = mngr.restore(chosen, args=ocp.args.Composite(state=ocp.args.StandardRestore(
            fallback_sharding=device)))["state"]
        return dict(jax.device_put(state, device), stage=name, step=chosen)
    if step is not None and found:
        raise ValueError(f"{path}: no checkpoint at step {step}; steps saved: " + "; ".join(
            f"{name.upper()} {steps}" for name, steps in found.items()))
    raise ValueError(f"{path}: no {stage.upper() + ' ' if stage else ''}checkpoints to load")


def load_policy(path, step: int | None = None, mesh=None, stage: str | None = None):
    """(model, params, tokenizer) of the latest (or ``step``) RL checkpoint, else SFT; ``stage``
    ("rl" or "sft") looks in that stage's checkpoints only. The tokenizer and model shapes are
    those the run trained with."""
    state = load_state(path, step, stage)
    model, tokenizer = policy_model(resolve(path), mesh)
    return model, policy_params(state), tokenizer


def policy_params(state: dict):
    """The policy's parameters in a ``load_state`` result (RL and SFT states name them
    differently)."""
    return state["policy" if state["stage"] == "rl" else "params"]
