"""An experiment config turned into what a run needs: checked first (before anything is built or
compiled, each error naming the field and what is allowed), then the mesh, model, tokenizer and
data sources."""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import jax
import ml_collections
from etils import epath
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from o1jax import hardware, sharding
from o1jax import workdir as workdir_lib
from o1jax.config import datasets
from o1jax.config.blocks import BLOCKS, RunConfig
from o1jax.data import builders
from o1jax.data.pipeline import decode_example
from o1jax.data.prompts import PromptFormat
from o1jax.models import Transformer
from o1jax.policy import ConfigError, from_config, model_shapes
from o1jax.rl.config import RLConfig
from o1jax.selfplay.config import SelfPlayConfig
from o1jax.tokenizer import Tokenizer

class Experiment(NamedTuple):
    """Everything the stages of a run share."""
    cfg: ml_collections.ConfigDict
    workdir: epath.Path     # local or gs://
    mesh: Mesh
    tokenizer: Tokenizer
    policy: Transformer
    sources: dict            # split name -> TFDS data source
    rl: RLConfig
    prompt: PromptFormat     # how every stage renders, cuts and pads its prompts


def check_config(cfg: ml_collections.ConfigDict, num_devices: int) -> RLConfig:
    """Fast checks of every block that name the offending field (each block's own fields in
    its typed object, o1jax/config/blocks.py; here what spans blocks, devices and processes);
    returns the RL settings."""
    try:
        mesh_shape = sharding.resolve_mesh_shape(cfg.mesh_shape, num_devices)
    except ValueError as e:
        raise ConfigError(f"mesh_shape: {e}") from None
    try:
        rl = RLConfig.from_config(cfg.rl)
        SelfPlayConfig.from_config(cfg.get("selfplay")).check_with(rl)
        if cfg.get("selfplay") and cfg.selfplay.enabled and \
                cfg.data.task not in datasets.names(generated=True):
            raise ConfigError(
                f"selfplay.enabled: self-play proposes problems in the forms of the synthetic "
                f"tasks ({', '.join(datasets.names(generated=True, visual=False))}) or pictures "
                f"({', '.join(datasets.names(generated=True, visual=True))}), not "
                f"data.task={cfg.data.task!r}")
        if cfg.get("selfplay") and cfg.selfplay.get("proposal_form", "target") != "target" \
                and cfg.data.task != "countdown_search":
            raise ConfigError(f"selfplay.proposal_form={cfg.selfplay.proposal_form!r}: "
                              f"proposals state a solution in countdown_search's forms only, "
                              f"not data.task={cfg.data.task!r}; set it 'target'")
        RunConfig.from_config(cfg)
        for block in BLOCKS:
            block.from_config(cfg.get(block.NAME))
        if cfg.get("tools") and cfg.tools.enabled and cfg.get("selfplay") and \
                cfg.selfplay.enabled:
            raise ConfigError("tools.enabled: tool calls run in PPO/GRPO's rollouts and "
                              "evaluations; self-play's proposer and solver do not call tools "
                              "yet (set tools.enabled=False or selfplay.enabled=False)")
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None
    _check_shapes(cfg, rl)
    if cfg.get("init_from") and cfg.model.get("hf_path"):
        raise ConfigError("init_from and model.hf_path both give the initial weights: set one")
    if cfg.get("hardware"):
        try:
            hardware.parse_hardware(cfg.hardware)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    for field in ("rl.batch_prompts", "sft.batch_size"):
        block, name = field.split(".")
        if cfg[block][name] % jax.process_count():
            raise ConfigError(f"{field}={cfg[block][name]} is not divisible by the "
                              f"{jax.process_count()} processes (each feeds an equal share)")
    if workdir_lib.is_remote(cfg.data.get("data_dir", "")):
        raise ConfigError(f"data.data_dir={cfg.data.data_dir!r}: TFDS array_record files are "
                          "read with local file I/O; give a local directory (on every host)")
    data_par = mesh_shape[0] * mesh_shape[1]
    if rl.rows % data_par:
        raise ConfigError(f"rl.batch_prompts * rl.group_size = {rl.rows} is not divisible by the "
                          f"{data_par} data-parallel devices of mesh_shape {mesh_shape}")
    selfplay = cfg.get("selfplay") and cfg.selfplay.enabled
    if not selfplay and rl.batch_prompts % data_par:
        raise ConfigError(f"rl.batch_prompts={rl.batch_prompts}: the prompt batch is split over "
                          f"the {data_par} data x fsdp devices of mesh_shape {mesh_shape}; use a "
                          "multiple of it")
    if rl.oversample > 1 and selfplay:
        raise ConfigError("rl.oversample > 1 (dynamic sampling) is PPO/GRPO's: self-play fills "
                          "its batch with its own problems; set rl.oversample=1")
    if rl.oversample > 1 and rl.sampled_prompts % math.lcm(data_par, jax.process_count()):
        raise ConfigError(f"rl.oversample={rl.oversample} samples {rl.sampled_prompts} prompts, "
                          f"which the {data_par} data x fsdp devices and {jax.process_count()} "
                          "processes cannot split evenly; choose oversample so that "
                          "oversample * rl.batch_prompts is a multiple of both")
    if rl.micro_batch % data_par:
        raise ConfigError(f"rl.micro_batch={rl.micro_batch}: each micro-batch is split over the "
                          f"{data_par} data x fsdp devices of mesh_shape {mesh_shape}; use a "
                          "multiple of it")
    return rl


def _check_shapes(cfg, rl: RLConfig) -> None:
    """Lengths that fit the model's context and a vocabulary chunk that fits its vocabulary."""
    m = model_shapes(cfg)
    visual = datasets.get(cfg.data.task).visual
    if visual != bool(m.vision):
        raise ConfigError(
            f"data.task={cfg.data.task!r} with a model " + ("with" if m.vision else "without") +
            " a vision encoder: visual tasks (" + ", ".join(datasets.names(visual=True)) +
            ") need model.overrides.vision (see configs/visual_grpo.py), text tasks a text model")
    if m.vision and visual:
        native = m.vision.native   # images of their own sizes: at least min_pixels' tokens
        need = 1 + (max(1, native.min_pixels // native.factor ** 2) if native
                    else m.vision.num_tokens)
        if cfg.data.max_prompt_len <= need:
            raise ConfigError(f"data.max_prompt_len={cfg.data.max_prompt_len} leaves no room "
                              f"for the question after the image's {need - 1} tokens and <s>")
    if rl.routing_replay and not m.num_experts:
        raise ConfigError("rl.routing_replay replays a mixture of experts' routing; this model "
                          "has a dense MLP (model.num_experts=0): set rl.routing_replay=False")
    if rl.vocab_chunk > m.vocab_size:
        raise ConfigError(f"rl.vocab_chunk={rl.vocab_chunk} is above the vocabulary "
                          f"({m.vocab_size}); use at most that, or 0")
    for new in ("rl.max_new_tokens", "eval.max_new_tokens"):
        block, name = new.split(".")
        total = cfg.data.max_prompt_len + cfg[block][name]
        if total > m.max_seq_len:
            raise ConfigError(f"data.max_prompt_len + {new} = {total} is above the model's "
                              f"max_seq_len={m.max_seq_len}: shorten one, or raise "
                              "model.overrides.max_seq_len")


def data_dir(cfg, workdir) -> str:
    """Where the TFDS files live: ``data.data_dir``, else WORKDIR/tfds for a local workdir, else
    (a gs:// workdir) the local ~/tensorflow_datasets: array_record reads local files only."""
    if cfg.data.get("data_dir"):
        return cfg.data.data_dir
    if workdir_lib.is_remote(workdir):
        return os.path.expanduser("~/tensorflow_datasets")
    return str(workdir_lib.resolve(workdir) / "tfds")


def load_data(cfg, workdir) -> dict:
    """The task's TFDS data sources by split, prepared on first use under ``data_dir``. Process
    0 prepares first; the others then find the files (a shared disk) or prepare their own copy
    (a host's local disk), never two writers at once."""
    dataset = datasets.get(cfg.data.task)
    data_cfg = dataset.builder_config(cfg.data)
    if dataset.visual:
        v = model_shapes(cfg).vision
        data_cfg["image_size"] = v.image_size
        if v.native and cfg.data.task == "image_qa":   # the rendered tasks stay square
            data_cfg.update(v.native._asdict())

    def build():
        return builders.build(cfg.data.task, data_dir(cfg, workdir),
                              manual_dir=cfg.data.get("manual_dir") or None, **data_cfg)

    if jax.process_count() == 1:
        return build()
    sources = build() if jax.process_index() == 0 else None
    multihost_utils.sync_global_devices("o1jax: data prepared")
    return sources if sources is not None else build()


def load_problems(cfg, root, split: str, num: int | None) -> list[dict]:
    """The first ``num`` (default: eval.num_examples, else 200) problems of ``split`` of the
    config's task, decoded, each with an ``id`` ("split/index"); ``root``: as ``load_data``."""
    if split == "hard" and not datasets.get(cfg.data.task).generated:
        raise ValueError(f"--split hard exists for the synthetic tasks "
                         f"({', '.join(datasets.names(generated=True))}), not "
                         f"{cfg.data.task!r}")
    sources = load_data(cfg, root)
    if split not in sources:
        raise ValueError(f"the {cfg.data.task} data has no {split!r} split (splits: "
                         f"{', '.join(sources)})")
    count = min(len(sources[split]), num or cfg.eval.num_examples or 200)
    return [dict(decode_example(sources[split][i]), id=f"{split}/{i}") for i in range(count)]


def setup(cfg, workdir) -> Experiment:
    """Multi-host start (unless the CLI did it), config checks, then the workdir: reachable,
    resumable with this config (checked before anything is written), config.json and the
    Hugging Face model's files recorded by process 0; then mesh, policy, tokenizer, data."""
    sharding.initialize_distributed(cfg.get("distributed", False))
    rl = check_config(cfg, jax.device_count())
    root = workdir_lib.resolve(workdir)
    workdir_lib.check_reachable(root, cfg.get("workdir_timeout", 60))
    workdir_lib.check_resume(root, cfg)
    if jax.process_count() > 1:  # every process compares with the saved config before it changes
        multihost_utils.sync_global_devices("o1jax: resume checked")
    if workdir_lib.is_writer():
        workdir_lib.write_text(root / "config.json", cfg.to_json_best_effort(indent=2))
        if cfg.model.get("hf_path"):
            workdir_lib.record_model(root, cfg.model.hf_path)
    mesh = sharding.make_mesh(cfg.mesh_shape)
    policy, tokenizer, prompt = from_config(cfg, mesh)
    return Experiment(cfg, root, mesh, tokenizer, policy, load_data(cfg, root), rl, prompt)
