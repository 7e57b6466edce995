"""Hugging Face checkpoints: load Llama / Qwen2 directories into sharded params, and export back.

Loading checks the whole checkpoint (architecture, every tensor's presence and shape) before
reading any weights, then builds each parameter with ``jax.make_array_from_callback``: a device
(and, on multi-host, a process) reads only the slices of its own shards, so no host ever needs
the whole model in memory at once, and a bad checkpoint raises before anything is loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Callable

import jax
import numpy as np
from etils import epath
from safetensors import safe_open
from safetensors.numpy import save_file

from o1jax import sharding
from o1jax.models.config import ModelConfig
from o1jax.models.transformer import Params, Transformer

ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}


class CheckpointError(ValueError):
    """A Hugging Face checkpoint directory that cannot be loaded as it is."""


# ------------------------------------------------------------------------------------ config
def config_from_hf(hf: dict, **overrides) -> ModelConfig:
    """ModelConfig from a config.json dict. Reads the rope base from ``rope_parameters``
    (transformers >= 5) or the older top-level ``rope_theta`` / ``rope_scaling``."""
    archs = hf.get("architectures") or []
    arch = next((ARCHITECTURES[a] for a in archs if a in ARCHITECTURES), None)
    if arch is None:
        raise CheckpointError(f"unknown architecture {archs or hf.get('model_type')!r}; "
                              f"supported: {sorted(ARCHITECTURES)}")
    if hf.get("mlp_bias"):
        raise CheckpointError("mlp_bias=True is not supported")
    if arch == "llama" and hf.get("attention_bias"):
        raise CheckpointError("attention_bias=True (output projection bias) is not supported")
    rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    scaling = None
    if rope_type == "llama3":
        keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
        scaling = (("rope_type", "llama3"),) + tuple((k, rope[k]) for k in keys)
    elif rope_type != "default":
        raise CheckpointError(f"unsupported rope type {rope_type!r}")
    heads = hf["num_attention_heads"]
    cfg = dict(
        architecture=arch, vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
        num_layers=hf["num_hidden_layers"], num_heads=heads,
        num_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
        mlp_dim=hf["intermediate_size"], rope_theta=float(theta), rope_scaling=scaling,
        rms_norm_eps=hf.get("rms_norm_eps", 1e-6), qkv_bias=arch == "qwen2",
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        max_seq_len=hf.get("max_position_embeddings", 2048))
    cfg.update(overrides)
    return ModelConfig(**cfg)


def config_to_hf(cfg: ModelConfig, bos_id: int | None = None, eos_id: int | None = None) -> dict:
    """config.json dict that transformers (4.x and 5.x) and vLLM read."""
    name = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}[cfg.architecture]
    out = {
        "architectures": [name], "model_type": cfg.architecture,
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim,
        "intermediate_size": cfg.mlp_dim, "hidden_act": "silu", "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta, "rope_scaling": dict(cfg.rope_scaling) if cfg.rope_scaling
        else None, "tie_word_embeddings": cfg.tie_embeddings,
        "max_position_embeddings": cfg.max_seq_len, "torch_dtype": "float32",
        "bos_token_id": bos_id, "eos_token_id": eos_id,
    }
    if cfg.architecture == "llama":
        out.update(attention_bias=False, mlp_bias=False)
    return out


# ------------------------------------------------------------------------------ tensor map
def _layer_map(cfg: ModelConfig) -> dict[str, tuple[str, Callable, tuple]]:
    """Our layer param -> (HF tensor name pattern, transform HF->ours, HF shape)."""
    d, h, kvh, dh, f = (cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                        cfg.mlp_dim)
    m = {
        "attn_norm": ("input_layernorm.weight", lambda w: w, (d,)),
        "wq": ("self_attn.q_proj.weight", lambda w: w.T.reshape(d, h, dh), (h * dh, d)),
        "wk": ("self_attn.k_proj.weight", lambda w: w.T.reshape(d, kvh, dh), (kvh * dh, d)),
        "wv": ("self_attn.v_proj.weight", lambda w: w.T.reshape(d, kvh, dh), (kvh * dh, d)),
        "wo": ("self_attn.o_proj.weight", lambda w: w.T.reshape(h, dh, d), (d, h * dh)),
        "mlp_norm": ("post_attention_layernorm.weight", lambda w: w, (d,)),
        "w_gate": ("mlp.gate_proj.weight", lambda w: w.T, (f, d)),
        "w_up": ("mlp.up_proj.weight", lambda w: w.T, (f, d)),
        "w_down": ("mlp.down_proj.weight", lambda w: w.T, (d, f)),
    }
    if cfg.qkv_bias:
        m.update(bq=("self_attn.q_proj.bias", lambda b: b.reshape(h, dh), (h * dh,)),
                 bk=("self_attn.k_proj.bias", lambda b: b.reshape(kvh, dh), (kvh * dh,)),
                 bv=("self_attn.v_proj.bias", lambda b: b.reshape(kvh, dh), (kvh * dh,)))
    return m


def _inverse(ours: np.ndarray, name: str, cfg: ModelConfig) -> np.ndarray:
    """Our per-layer array -> HF tensor layout."""
    if name in ("wq", "wk", "wv"):
        return ours.reshape(cfg.hidden_size, -1).T
    if name == "wo":
        return ours.reshape(-1, cfg.hidden_size).T
    if name in ("w_gate", "w_up", "w_down"):
        return ours.T
    return ours.reshape(-1)


def _top_map(cfg: ModelConfig) -> dict[str, tuple[str, Callable, tuple]]:
    m = {"embed": ("model.embed_tokens.weight", lambda w: w, (cfg.vocab_size, cfg.hidden_size)),
         "final_norm": ("model.norm.weight", lambda w: w, (cfg.hidden_size,))}
    if not cfg.tie_embeddings:
        m["lm_head"] = ("lm_head.weight", lambda w: w.T, (cfg.vocab_size, cfg.hidden_size))
    return m


# ----------------------------------------------------------------------------------- load
def _tensor_index(path: str) -> dict[str, str]:
    """HF tensor name -> safetensors file, from model.safetensors or its sharded index."""
    index = os.path.join(path, "model.safetensors.index.json")
    single = os.path.join(path, "model.safetensors")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        return {k: os.path.join(path, v) for k, v in weight_map.items()}
    if os.path.exists(single):
        with safe_open(single, "np") as f:
            return {k: single for k in f.keys()}
    raise CheckpointError(f"{path}: no model.safetensors or model.safetensors.index.json")


def load_config(path: str, **overrides) -> ModelConfig:
    cfg_file = epath.Path(path) / "config.json"  # a local directory or gs://
    if not cfg_file.exists():
        raise CheckpointError(f"{path}: no config.json (not a Hugging Face model directory)")
    return config_from_hf(json.loads(cfg_file.read_text()), **overrides)


def load_params(path: str, model: Transformer) -> Params:
    """Loads a Llama/Qwen2 checkpoint into policy params sharded on ``model.mesh`` (one device if
    None).

    Raises CheckpointError listing every missing tensor or wrong shape before reading weights.
    """
    cfg = model.cfg
    files = _tensor_index(path)
    L = cfg.num_layers
    plan: dict[str, Any] = {}  # our param path -> (list of HF names, transform)
    expected: dict[str, tuple] = {}
    for ours, (hf_name, fn, shape) in _top_map(cfg).items():
        plan[ours] = ([hf_name], fn)
        expected[hf_name] = shape
    for ours, (pattern, fn, shape) in _layer_map(cfg).items():
        names = [f"model.layers.{i}.{pattern}" for i in range(L)]
        plan[("layers", ours)] = (names, fn)
        expected.update({n: shape for n in names})

    missing = sorted(n for n in expected if n not in files)
    wrong = []
    handles: dict[str, Any] = {}
    for name, shape in expected.items():
        if name in files:
            fh = handles.setdefault(files[name], safe_open(files[name], "np"))
            got = tuple(fh.get_slice(name).get_shape())
            if got != tuple(shape):
                wrong.append(f"{name}: shape {got}, expected {tuple(shape)}")
    if missing or wrong:
        lines = [f"missing tensor {n}" for n in missing[:10]] + wrong[:10]
        more = len(missing) + len(wrong) - len(lines)
        raise CheckpointError(f"{path}: checkpoint does not match its config.json:\n  "
                              + "\n  ".join(lines) + (f"\n  ... and {more} more" if more else ""))

    mesh = model.mesh or sharding.make_mesh((1, 1, 1), jax.devices()[:1])
    placed = Transformer(cfg, "policy", mesh)
    shapes = placed.param_shapes()
    shards = placed.shardings()
    pdtype = np.dtype(cfg.param_dtype) if cfg.param_dtype != "bfloat16" else jax.numpy.bfloat16

    def read(name: str, fn) -> np.ndarray:
        return np.asarray(fn(handles[files[name]].get_tensor(name)), dtype=pdtype)

    def build(key, target, shard):
        names, fn = plan[key]
        if isinstance(key, tuple):
            def cb(index):
                layer_idx = range(L)[index[0]]
                return np.stack([read(names[i], fn)[index[1:]] for i in layer_idx])
        else:
            def cb(index):
                return read(names[0], fn)[index]
        return jax.make_array_from_callback(target.shape, shard, cb)

    params: Params = {"layers": {}}
    for key in plan:
        if isinstance(key, tuple):
            name = key[1]
            params["layers"][name] = build(key, shapes["layers"][name], shards["layers"][name])
        else:
            params[key] = build(key, shapes[key], shards[key])
    return params


# --------------------------------------------------------------------------------- export
def hf_tensors(params: Params, cfg: ModelConfig, dtype=np.float32) -> dict[str, np.ndarray]:
    """Our params -> HF tensor dict (gathers sharded arrays to this host)."""
    out = {}
    for ours, (hf_name, _, _) in _top_map(cfg).items():
        w = np.asarray(jax.device_get(params[ours]), dtype)
        out[hf_name] = np.ascontiguousarray(w.T if ours == "lm_head" else w)
    for ours, (pattern, _, _) in _layer_map(cfg).items():
        stacked = np.asarray(jax.device_get(params["layers"][ours]), dtype)
        for i in range(cfg.num_layers):
            out[f"model.layers.{i}.{pattern}"] = np.ascontiguousarray(
                _inverse(stacked[i], ours, cfg))
    return out


def save_pretrained(out_dir: str, params: Params, cfg: ModelConfig, tokenizer=None) -> None:
    """Writes config.json, generation_config.json, model.safetensors and the tokenizer files.

    The directory appears complete or not at all (written to a temporary sibling, then renamed).
    """
    if cfg.vision is not None:
        raise ValueError("exporting a vision-language policy to Hugging Face is not supported "
                         "yet (its vision encoder has no transformers counterpart here); the "
                         "workdir's checkpoint holds it")
    if os.path.exists(out_dir) and os.listdir(out_dir):
        raise FileExistsError(f"{out_dir} exists and is not empty")
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        bos = tokenizer.token_id(tokenizer.bos_token) if tokenizer else None
        eos = list(tokenizer.stop_ids) if tokenizer else None
        eos = eos[0] if eos and len(eos) == 1 else eos
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(config_to_hf(cfg, bos, eos), f, indent=2)
        with open(os.path.join(tmp, "generation_config.json"), "w") as f:
            json.dump({"bos_token_id": bos, "eos_token_id": eos}, f, indent=2)
        save_file(hf_tensors(params, cfg), os.path.join(tmp, "model.safetensors"),
                  metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save(tmp)
        if os.path.exists(out_dir):
            os.rmdir(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load(path: str, mesh=None, **overrides) -> tuple[Transformer, Params]:
    """(policy model, params) from a Hugging Face directory; ``overrides`` set ModelConfig fields
    (e.g. dtype="bfloat16")."""
    model = Transformer(load_config(path, **overrides), mesh=mesh)
    return model, load_params(path, model)
