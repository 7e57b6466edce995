"""One builder of a policy, its tokenizer and its prompt format, for every command.

From a config (``model.preset`` + overrides and the byte tokenizer, or the Hugging Face
directory ``model.hf_path``), from a training workdir (the model files it recorded in
WORKDIR/model/, else its preset, with its saved config's prompt format and dtype), or from a
Hugging Face directory. The prompt format (``data.prompts.PromptFormat``: template, chat
template choice, prompt length, image placeholders) is built here once and passed to every
encoder. A workdir's checkpoint is read back as its policy's parameters only, each array
straight into its sharding on the command's mesh.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import ml_collections
from etils import epath

from o1jax import sharding
from o1jax import workdir as wd
from o1jax.data.prompts import PLAIN_TEMPLATE, PromptFormat
from o1jax.models import ModelConfig, Transformer, hf, layouts, lora, preset
from o1jax.models.transformer import Params
from o1jax.tokenizer import Tokenizer, byte_tokenizer


class ConfigError(ValueError):
    """A config that cannot run, found before anything is compiled."""


class Policy(NamedTuple):
    """A policy model (its mesh set), the tokenizer it reads and how its prompts are made."""
    model: Transformer
    tokenizer: Tokenizer
    prompt: PromptFormat


def model_shapes(cfg: ml_collections.ConfigDict, **extra) -> ModelConfig:
    """The model's ModelConfig as the config names it: ``model.hf_path``'s config.json where
    that directory holds one, else ``model.preset`` (for a Hugging Face model it stands for
    the checkpoint's shapes where the weights are not at hand, e.g. planning); then
    ``model.overrides`` and ``extra``."""
    overrides = dict(cfg.model.get("overrides", {}), **extra)
    if _hf_dir(cfg):
        return _hf_shapes(cfg.model.hf_path, overrides, f"model.hf_path={cfg.model.hf_path!r}")
    if overrides.get("vision") and "image_token_id" not in overrides:
        overrides["image_token_id"] = byte_tokenizer(image_token=True).image_id
    try:
        return preset(cfg.model.preset, **overrides)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"model: {e}") from None


def image_fields(mcfg: ModelConfig) -> dict:
    """A PromptFormat's image fields for a model: none (text), the placeholders of its square
    images, or the pixels per image token side where it reads images at their own sizes."""
    v = mcfg.vision
    if v is None:
        return {}
    if v.native:
        return {"image_patch": (v.patch_size, v.merge_size)}
    return {"image_tokens": v.num_tokens}


def prompt_format(cfg: ml_collections.ConfigDict, tokenizer: Tokenizer, images: dict,
                  chat: bool = True) -> PromptFormat:
    """The run's prompt format from its ``data`` block (``chat`` False: never in the chat
    template)."""
    chat = chat and bool(cfg.data.get("use_chat_template", False))
    if chat and not tokenizer.chat_template:
        raise ConfigError("data.use_chat_template=True but the tokenizer has no chat "
                          "template (the byte tokenizer never has one; use a model.hf_path "
                          "whose tokenizer_config.json has chat_template)")
    return PromptFormat(cfg.data.template, chat, max_prompt_len=cfg.data.max_prompt_len,
                        **images)


def _hf_shapes(path, overrides: dict, where: str) -> ModelConfig:
    """A Hugging Face directory's ModelConfig with ``overrides``; ConfigError naming ``where``."""
    try:
        return hf.load_config(path, **overrides)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _hf_dir(cfg: ml_collections.ConfigDict) -> bool:
    """Whether ``model.hf_path`` is set and holds a Hugging Face config.json."""
    path = cfg.model.get("hf_path", "")
    return bool(path) and (epath.Path(path) / "config.json").exists()


def _build(cfg, model_dir, mesh, dtype: str | None, chat: bool = True) -> Policy:
    """The policy of ``cfg`` with shapes and tokenizer from ``model_dir`` (a Hugging Face
    directory) or, when it is None, the preset and the byte tokenizer."""
    extra = {} if dtype is None else {"dtype": dtype}
    if model_dir is not None:
        mcfg = _hf_shapes(model_dir, dict(cfg.model.get("overrides", {}), **extra),
                          str(model_dir))
        tokenizer = Tokenizer.from_dir(model_dir)
    else:
        mcfg = model_shapes(cfg, **extra)
        tokenizer = byte_tokenizer(image_token=mcfg.vision is not None)
    if mcfg.vocab_size < tokenizer.vocab_size:
        raise ConfigError(f"model.vocab_size={mcfg.vocab_size} is smaller than the tokenizer's "
                          f"{tokenizer.vocab_size}")
    return Policy(Transformer(mcfg, mesh=mesh), tokenizer,
                  prompt_format(cfg, tokenizer, image_fields(mcfg), chat))


def from_config(cfg: ml_collections.ConfigDict, mesh=None, abstract: bool = False) -> Policy:
    """The policy a config trains. With ``model.hf_path`` the shapes and tokenizer come from
    that Hugging Face directory; ``abstract`` (shape checks without the weights, e.g. planning)
    takes the preset and the byte tokenizer where the directory is not there, and then leaves
    the chat template out (the byte tokenizer has none)."""
    hf_path = cfg.model.get("hf_path", "")
    if _hf_dir(cfg):
        return _build(cfg, hf_path, mesh, None)
    if abstract:
        return _build(cfg, None, mesh, None, chat=False)
    if hf_path:
        raise ConfigError(f"model.hf_path={hf_path!r} is not a Hugging Face model directory "
                          "(no config.json there)")
    return _build(cfg, None, mesh, None)


def from_workdir(path, mesh=None, dtype: str | None = None) -> Policy:
    """The policy a run trained, as it trained it: WORKDIR/model/ when it started from a
    Hugging Face model, else its preset; its saved config's prompt format; ``dtype`` (default:
    the run's) the compute dtype."""
    root = wd.resolve(path)
    model_dir = root / "model"
    return _build(wd.load_config(root), model_dir if (model_dir / "config.json").exists()
                  else None, mesh, dtype)


def from_hf(path: str, mesh=None, dtype: str | None = None, image_size: int | None = None,
            template: str = PLAIN_TEMPLATE, max_prompt_len: int | None = None) -> Policy:
    """A Hugging Face directory's policy (a vision-language model's encoder reading images at
    their own sizes, or squared to ``image_size``) with prompts of ``template``, never in the
    chat template."""
    overrides = {} if dtype is None else {"dtype": dtype}
    if image_size is not None:
        overrides["vision"] = {"image_size": image_size, "min_pixels": 0, "max_pixels": 0}
    mcfg = hf.load_config(path, **overrides)
    return Policy(Transformer(mcfg, mesh=mesh), Tokenizer.from_dir(path),
                  PromptFormat(template, max_prompt_len=max_prompt_len, **image_fields(mcfg)))


def command_mesh(mesh_shape: str | None):
    """The mesh a command's ``--mesh-shape`` names ("data,fsdp,tensor", -1 for the remaining
    devices), or None (one device) when it is not given."""
    if not mesh_shape:
        return None
    try:
        shape = [int(s) for s in mesh_shape.split(",")]
    except ValueError:
        raise ValueError(f"--mesh-shape {mesh_shape!r}: give three integers data,fsdp,tensor, "
                         "e.g. 1,-1,1") from None
    return sharding.make_mesh(shape)


def abstract_params(model: Transformer) -> Params:
    """``jax.ShapeDtypeStruct``s of the model's parameters with their shardings on
    ``model.mesh``; with none, on this process's first device (each process of a multi-host
    command reads its own copy: the first global device belongs to process 0 alone)."""
    return _abstract(model, model.param_axes(), model.param_shapes())


def _abstract(model: Transformer, axes: Params, shapes: Params) -> Params:
    """``shapes`` with shardings by their logical ``axes`` on ``model.mesh`` (as
    ``abstract_params`` places them)."""
    mesh = model.mesh or sharding.make_mesh((1, 1, 1), jax.local_devices()[:1])
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                        shapes, sharding.tree_shardings(mesh, axes, shapes))


def initial_params(cfg, policy: Transformer) -> Params:
    """The policy of another run's latest checkpoint (``init_from``: a workdir, optionally
    ``WORKDIR:sft`` or ``WORKDIR:rl`` for that stage), the Hugging Face weights of
    ``model.hf_path``, or a sharded random init; sharded on ``policy.mesh``."""
    if cfg.get("init_from"):
        path, _, stage = cfg.init_from.rpartition(":") if cfg.init_from.endswith(
            (":sft", ":rl")) else (cfg.init_from, "", None)
        try:
            return restore_params(path, policy, stage=stage)[0]
        except ValueError as e:
            raise ConfigError(f"init_from={cfg.init_from!r}: {e}") from None
    hf_path = cfg.model.get("hf_path", "")
    if hf_path:
        return hf.load_params(hf_path, policy)
    if policy.mesh is None:
        return policy.init(jax.random.key(cfg.seed))
    return policy.init_sharded(jax.random.key(cfg.seed))


def run_lora(cfg) -> lora.LoraConfig | None:
    """The adapters a run's RL trained (``rl.lora_rank`` > 0 in its config), or None."""
    rl = cfg.get("rl") or {}
    if not rl.get("lora_rank", 0):
        return None
    return lora.LoraConfig(rl.lora_rank, rl.lora_alpha, tuple(rl.lora_targets))


def restore_params(path, model: Transformer, step: int | None = None, stage: str | None = None,
                   name: str = "policy") -> tuple[Params, str, int]:
    """(parameters, stage, step) of the latest (or ``step``) RL checkpoint, else SFT
    (``stage``: that stage's only): only the policy's parameters (``name`` "critic": an RL
    checkpoint's value model), read into ``model``'s shardings; the optimizer state and
    everything else stay on disk. A LoRA run's RL checkpoint holds adapters only: they are
    merged into its base, rebuilt from the base's source (the run's last SFT checkpoint, else
    its initial parameters: ``init_from``, ``model.hf_path`` or its seed's init)."""
    stage, step, directory = wd.find_checkpoint(path, step, stage)
    key = wd.POLICY_KEY[stage] if name == "policy" else name
    if stage != "rl" or run_lora(wd.load_config(wd.resolve(path))) is None:
        params = wd.restore_subtree(directory, step, {key: abstract_params(model)})[key]
        return params, stage, step
    base, trained, lc = restore_lora(path, model, step, name)
    if name == "critic":
        return dict(lora.merge(layouts.backbone(base), trained["lora"], lc),
                    value_head=trained["value_head"]), stage, step
    return lora.merge(base, trained, lc), stage, step


def restore_lora(path, model: Transformer, step: int | None = None, name: str = "policy"
                 ) -> tuple[Params, Params, lora.LoraConfig]:
    """(base, adapters, their LoraConfig) of a LoRA run's latest (or ``step``) RL checkpoint
    (``name`` "critic": the critic's {"lora", "value_head"}), on ``model.mesh``: the adapters
    from the checkpoint, the base rebuilt from its source (the run's last SFT checkpoint, else
    its initial parameters)."""
    stage, step, directory = wd.find_checkpoint(path, step, "rl")
    run_cfg = wd.load_config(wd.resolve(path))
    lc = run_lora(run_cfg)
    if lc is None:
        raise ValueError(f"{path}: its RL stage trained every weight (rl.lora_rank=0), not "
                         "LoRA adapters")
    policy = Transformer(model.cfg, mesh=model.mesh)
    shapes = jax.eval_shape(lambda: lora.init(jax.random.key(0), policy.param_shapes(), lc))
    adapters = _abstract(policy, lora.adapter_axes(policy.param_axes(), lc), shapes)
    if name == "critic":
        value = Transformer(model.cfg, "value", model.mesh)
        adapters = {"lora": adapters, "value_head": abstract_params(value)["value_head"]}
    trained = wd.restore_subtree(directory, step, {name: adapters})[name]
    base = (restore_params(path, policy, stage="sft")[0] if run_cfg.sft.num_steps > 0
            else initial_params(run_cfg, policy))
    return base, trained, lc


def load_policy(path, step: int | None = None, mesh=None, stage: str | None = None,
                dtype: str | None = None) -> tuple[Policy, Params]:
    """A workdir's policy (``from_workdir``) and the parameters of its latest (or ``step``) RL
    checkpoint, else SFT (``stage``: that stage's only), sharded onto ``mesh``."""
    policy = from_workdir(path, mesh, dtype)
    params, _, _ = restore_params(path, policy.model, step, stage)
    return policy, params
