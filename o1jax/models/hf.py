"""Hugging Face checkpoints: load Llama / Qwen2 / Qwen2.5-VL directories into sharded params, and
export back.

Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``) loads as a decoder with M-RoPE positions
(``ModelConfig.mrope_section``) and its vision tower (o1jax/models/vision.py with ``bias``,
window attention and ``full_attention_layers``) for still images of one fixed square size
(``vision.image_size``, default ``QWEN_VL_IMAGE_SIZE``; override with ``vision={"image_size":
...}``), normalised with preprocessor_config.json's image_mean / image_std. The Conv3d patch
embedding over ``temporal_patch_size`` repeated frames is the 2-D patch map over its summed
temporal weights; videos are not supported.

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
import ml_dtypes
import numpy as np
from etils import epath
from safetensors import safe_open
from safetensors.numpy import save_file

from o1jax import sharding
from o1jax.models.config import ModelConfig
from o1jax.models.transformer import Params, Transformer
from o1jax.models.vision import VisionConfig

ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2",
                 "Qwen2_5_VLForConditionalGeneration": "qwen2_5_vl"}
HF_ARCHITECTURES = {v: k for k, v in ARCHITECTURES.items()}
QWEN_VL_IMAGE_SIZE = 448   # a 16 x 16 grid of merged 28-pixel patches: 256 image tokens


class CheckpointError(ValueError):
    """A Hugging Face checkpoint directory that cannot be loaded as it is."""


# ------------------------------------------------------------------------------------ config
def config_from_hf(hf: dict, preprocessor: dict | None = None, **overrides) -> ModelConfig:
    """ModelConfig from a config.json dict. Reads the rope base from ``rope_parameters``
    (transformers >= 5) or the older top-level ``rope_theta`` / ``rope_scaling``. A Qwen2.5-VL
    config's text fields may be top-level (Hub checkpoints) or under ``text_config``;
    ``preprocessor`` (preprocessor_config.json) gives its pixel normalisation, and
    ``overrides["vision"]`` (a dict) updates the vision fields read from it."""
    archs = hf.get("architectures") or []
    arch = next((ARCHITECTURES[a] for a in archs if a in ARCHITECTURES), None)
    if arch is None:
        raise CheckpointError(f"unknown architecture {archs or hf.get('model_type')!r}; "
                              f"supported: {sorted(ARCHITECTURES)}")
    text = hf
    if arch == "qwen2_5_vl":
        text = {**{k: v for k, v in hf.items() if k != "vision_config"},
                **(hf.get("text_config") or {})}
        if text.get("use_sliding_window"):
            raise CheckpointError("use_sliding_window=True (sliding-window decoder layers) is "
                                  "not supported")
    if text.get("mlp_bias"):
        raise CheckpointError("mlp_bias=True is not supported")
    if arch == "llama" and text.get("attention_bias"):
        raise CheckpointError("attention_bias=True (output projection bias) is not supported")
    rope = dict(text.get("rope_parameters") or text.get("rope_scaling") or {})
    theta = rope.get("rope_theta", text.get("rope_theta", 10000.0))
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    scaling = None
    if rope_type == "llama3":
        keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
        scaling = (("rope_type", "llama3"),) + tuple((k, rope[k]) for k in keys)
    elif rope_type not in ("default", "mrope") or (rope_type == "mrope" and arch != "qwen2_5_vl"):
        raise CheckpointError(f"unsupported rope type {rope_type!r}")
    heads = text["num_attention_heads"]
    cfg = dict(
        architecture=arch, vocab_size=text["vocab_size"], hidden_size=text["hidden_size"],
        num_layers=text["num_hidden_layers"], num_heads=heads,
        num_kv_heads=text.get("num_key_value_heads") or heads,
        head_dim=text.get("head_dim") or text["hidden_size"] // heads,
        mlp_dim=text["intermediate_size"], rope_theta=float(theta), rope_scaling=scaling,
        rms_norm_eps=text.get("rms_norm_eps", 1e-6), qkv_bias=arch != "llama",
        tie_embeddings=bool(hf.get("tie_word_embeddings") or text.get("tie_word_embeddings")),
        max_seq_len=text.get("max_position_embeddings", 2048))
    if arch == "qwen2_5_vl":
        if text.get("hidden_act", "silu") != "silu":
            raise CheckpointError(f"hidden_act={text['hidden_act']!r}: only silu is supported")
        cfg.update(head_dim=text["hidden_size"] // heads,   # transformers' attention ignores
                   rms_norm_eps=text.get("rms_norm_eps", 1e-5),   # head_dim
                   mrope_section=tuple(rope.get("mrope_section", (16, 24, 24))),
                   image_token_id=hf.get("image_token_id", 151655),
                   vision=_vision_from_hf(hf.get("vision_config") or {}, preprocessor or {},
                                          text["hidden_size"], overrides.pop("vision", None)))
    cfg.update(overrides)
    return ModelConfig(**cfg)


def _vision_from_hf(v: dict, preprocessor: dict, out_size: int, override: dict | None
                    ) -> VisionConfig:
    """VisionConfig of a Qwen2.5-VL vision_config (transformers' defaults where a key is
    missing); refuses what the encoder does not compute."""
    if v.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"vision_config.hidden_act={v['hidden_act']!r}: only silu is "
                              "supported")
    if v.get("in_channels", v.get("in_chans", 3)) != 3:
        raise CheckpointError("vision_config: only 3-channel (RGB) images are supported")
    if v.get("out_hidden_size", 3584) != out_size:
        raise CheckpointError(f"vision_config.out_hidden_size={v.get('out_hidden_size', 3584)} "
                              f"is not the decoder's hidden_size {out_size}")
    for key in ("patch_size", "temporal_patch_size"):
        if not isinstance(v.get(key, 1), int):
            raise CheckpointError(f"vision_config.{key}={v[key]!r}: only square patches "
                                  "(an int) are supported")
    rope = v.get("rope_parameters") or {}
    if rope.get("rope_type", "axial") != "axial":
        raise CheckpointError(f"vision rope type {rope['rope_type']!r} is not supported")
    fields = dict(
        image_size=QWEN_VL_IMAGE_SIZE, patch_size=v.get("patch_size", 14),
        hidden_size=v.get("hidden_size", 3584), num_layers=v.get("depth", 32),
        num_heads=v.get("num_heads", 16), mlp_dim=v.get("intermediate_size", 3420),
        merge_size=v.get("spatial_merge_size", 2), rope_theta=float(rope.get("rope_theta", 1e4)),
        norm_eps=1e-6, bias=True, window_size=v.get("window_size", 112),
        full_attention_layers=tuple(v.get("fullatt_block_indexes", (7, 15, 23, 31))),
        temporal_patch_size=v.get("temporal_patch_size", 2))
    if "image_mean" in preprocessor:
        fields.update(pixel_mean=tuple(preprocessor["image_mean"]),
                      pixel_std=tuple(preprocessor["image_std"]))
    fields.update(override or {})
    try:
        return VisionConfig(**fields)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"vision: {e}") from None


def config_to_hf(cfg: ModelConfig, bos_id: int | None = None, eos_id: int | None = None) -> dict:
    """config.json dict that transformers (4.x and 5.x) and vLLM read (a Qwen2.5-VL's text
    fields top-level, as on the Hub)."""
    out = {
        "architectures": [HF_ARCHITECTURES[cfg.architecture]], "model_type": cfg.architecture,
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
    if cfg.architecture == "qwen2_5_vl":
        v = cfg.vision
        del out["head_dim"]
        out.update(rope_scaling={"type": "mrope", "mrope_section": list(cfg.mrope_section)},
                   use_sliding_window=False, image_token_id=cfg.image_token_id,
                   vision_config={
                       "depth": v.num_layers, "hidden_size": v.hidden_size, "hidden_act": "silu",
                       "intermediate_size": v.mlp_dim, "num_heads": v.num_heads,
                       "in_channels": 3, "patch_size": v.patch_size,
                       "spatial_merge_size": v.merge_size,
                       "temporal_patch_size": v.temporal_patch_size,
                       "window_size": v.window_size, "out_hidden_size": cfg.hidden_size,
                       "fullatt_block_indexes": list(v.full_attention_layers),
                       "rope_parameters": {"rope_type": "axial", "rope_theta": v.rope_theta}})
    return out


def preprocessor_to_hf(v: VisionConfig) -> dict:
    """preprocessor_config.json of a Qwen2.5-VL export: the image processor's normalisation and
    patching (its own resize keeps the aspect ratio; o1jax feeds S x S images)."""
    return {"image_processor_type": "Qwen2VLImageProcessor", "image_mean": list(v.pixel_mean),
            "image_std": list(v.pixel_std), "patch_size": v.patch_size,
            "merge_size": v.merge_size, "temporal_patch_size": v.temporal_patch_size}


# ------------------------------------------------------------------------------ tensor map
# An entry: (our param path, HF tensor names (one per layer for stacked ``layers`` params),
# transform HF -> ours, HF shape). Several of ours may read one HF tensor (a fused qkv).
Entry = tuple[tuple[str, ...], list[str], Callable, tuple]


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


def _top_map(cfg: ModelConfig, prefix: str = "model.") -> dict[str, tuple[str, Callable, tuple]]:
    m = {"embed": (f"{prefix}embed_tokens.weight", lambda w: w,
                   (cfg.vocab_size, cfg.hidden_size)),
         "final_norm": (f"{prefix}norm.weight", lambda w: w, (cfg.hidden_size,))}
    if not cfg.tie_embeddings:
        m["lm_head"] = ("lm_head.weight", lambda w: w.T, (cfg.vocab_size, cfg.hidden_size))
    return m


def _vision_layer_map(v: VisionConfig) -> dict[str, tuple[str, Callable, tuple]]:
    """Qwen2.5-VL vision block ``blocks.{i}.<pattern>`` -> our ``vision.layers`` params (the
    fused qkv [3 Dv, Dv] is q rows, then k, then v, each head-major)."""
    d, h, dh, f = v.hidden_size, v.num_heads, v.head_dim, v.mlp_dim
    part = lambda j: lambda w: w[j * d:(j + 1) * d].T.reshape(d, h, dh)  # noqa: E731
    part_b = lambda j: lambda b: b[j * d:(j + 1) * d].reshape(h, dh)     # noqa: E731
    same = lambda w: w  # noqa: E731
    return {
        "attn_norm": ("norm1.weight", same, (d,)),
        "wq": ("attn.qkv.weight", part(0), (3 * d, d)),
        "wk": ("attn.qkv.weight", part(1), (3 * d, d)),
        "wv": ("attn.qkv.weight", part(2), (3 * d, d)),
        "bq": ("attn.qkv.bias", part_b(0), (3 * d,)),
        "bk": ("attn.qkv.bias", part_b(1), (3 * d,)),
        "bv": ("attn.qkv.bias", part_b(2), (3 * d,)),
        "wo": ("attn.proj.weight", lambda w: w.T.reshape(h, dh, d), (d, d)),
        "bo": ("attn.proj.bias", same, (d,)),
        "mlp_norm": ("norm2.weight", same, (d,)),
        "w_gate": ("mlp.gate_proj.weight", lambda w: w.T, (f, d)),
        "b_gate": ("mlp.gate_proj.bias", same, (f,)),
        "w_up": ("mlp.up_proj.weight", lambda w: w.T, (f, d)),
        "b_up": ("mlp.up_proj.bias", same, (f,)),
        "w_down": ("mlp.down_proj.weight", lambda w: w.T, (d, f)),
        "b_down": ("mlp.down_proj.bias", same, (d,)),
    }


def _vision_top_map(v: VisionConfig, out_size: int) -> dict[str, tuple[str, Callable, tuple]]:
    """Qwen2.5-VL ``visual.<name>`` -> our ``vision`` params outside the blocks. The patch
    embedding Conv3d [Dv, 3, T, P, P] sees a still image's frame T times: its map is the sum of
    the T temporal slices, in our (row, column, channel) patch layout."""
    d, p, wide = v.hidden_size, v.patch_size, v.merge_size ** 2 * v.hidden_size
    return {
        "patch_embed": ("patch_embed.proj.weight",
                        lambda w: w.sum(axis=2).transpose(2, 3, 1, 0).reshape(p * p * 3, d),
                        (d, 3, v.temporal_patch_size, p, p)),
        "norm": ("merger.ln_q.weight", lambda w: w, (d,)),
        "w1": ("merger.mlp.0.weight", lambda w: w.T, (wide, wide)),
        "b1": ("merger.mlp.0.bias", lambda w: w, (wide,)),
        "w2": ("merger.mlp.2.weight", lambda w: w.T, (out_size, wide)),
        "b2": ("merger.mlp.2.bias", lambda w: w, (out_size,)),
    }


def _prefixes(cfg: ModelConfig, names) -> tuple[str, str]:
    """(decoder, vision) tensor name prefixes: Hub layout ``model.`` / ``visual.``, or the
    ``model.language_model.`` / ``model.visual.`` some transformers 4.x versions saved."""
    if cfg.architecture == "qwen2_5_vl" and "model.language_model.embed_tokens.weight" in names:
        return "model.language_model.", "model.visual."
    return "model.", "visual."


def _entries(cfg: ModelConfig, names=()) -> list[Entry]:
    """Every parameter of the policy and where it is read from."""
    text, visual = _prefixes(cfg, names)
    out = [((ours,), [hf_name], fn, shape)
           for ours, (hf_name, fn, shape) in _top_map(cfg, text).items()]
    out += [(("layers", ours), [f"{text}layers.{i}.{pattern}" for i in range(cfg.num_layers)],
             fn, shape) for ours, (pattern, fn, shape) in _layer_map(cfg).items()]
    if cfg.architecture == "qwen2_5_vl":
        v = cfg.vision
        for ours, (name, fn, shape) in _vision_top_map(v, cfg.hidden_size).items():
            path = ("vision", ours) if ours == "patch_embed" else ("vision", "merger", ours)
            out.append((path, [visual + name], fn, shape))
        out += [(("vision", "layers", ours),
                 [f"{visual}blocks.{i}.{pattern}" for i in range(v.num_layers)], fn, shape)
                for ours, (pattern, fn, shape) in _vision_layer_map(v).items()]
    return out


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


def _bf16_tensor(file: str, name: str) -> np.ndarray:
    """A bfloat16 tensor of a safetensors file (which safetensors' NumPy reader refuses) as
    float32, through a memory map: the file is 8 bytes of header length, a JSON header naming
    each tensor's shape and byte range, then the data."""
    with open(file, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        info = json.loads(f.read(n))[name]
    begin, end = info["data_offsets"]
    raw = np.memmap(file, np.uint16, "r", offset=8 + n + begin, shape=((end - begin) // 2,))
    return raw.view(ml_dtypes.bfloat16).reshape(info["shape"]).astype(np.float32)


def _read_json(path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def load_config(path: str, **overrides) -> ModelConfig:
    cfg_file = epath.Path(path) / "config.json"  # a local directory or gs://
    if not cfg_file.exists():
        raise CheckpointError(f"{path}: no config.json (not a Hugging Face model directory)")
    return config_from_hf(json.loads(cfg_file.read_text()),
                          _read_json(epath.Path(path) / "preprocessor_config.json"), **overrides)


def _get(tree, path):
    for k in path:
        tree = tree[k]
    return tree


def load_params(path: str, model: Transformer) -> Params:
    """Loads a Llama/Qwen2/Qwen2.5-VL checkpoint into policy params sharded on ``model.mesh``
    (one device if None).

    Raises CheckpointError listing every missing tensor or wrong shape before reading weights.
    """
    cfg = model.cfg
    files = _tensor_index(path)
    if cfg.vision is not None and cfg.architecture != "qwen2_5_vl":
        raise CheckpointError(f"{path}: a {cfg.architecture} checkpoint holds no vision encoder "
                              "of o1jax's own layout (only Qwen2.5-VL's loads)")
    entries = _entries(cfg, files)
    expected = {name: shape for _, names, _, shape in entries for name in names}

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
        fh = handles[files[name]]
        w = _bf16_tensor(files[name], name) if fh.get_slice(name).get_dtype() == "BF16" \
            else fh.get_tensor(name)
        return np.asarray(fn(w), dtype=pdtype)

    def build(key, names, fn):
        target, shard = _get(shapes, key), _get(shards, key)
        if "layers" in key:
            def cb(index):
                return np.stack([read(names[i], fn)[index[1:]]
                                 for i in range(len(names))[index[0]]])
        else:
            def cb(index):
                return read(names[0], fn)[index]
        return jax.make_array_from_callback(target.shape, shard, cb)

    params: Params = {}
    for key, names, fn, _ in entries:
        node = params
        for k in key[:-1]:
            node = node.setdefault(k, {})
        node[key[-1]] = build(key, names, fn)
    return params


# --------------------------------------------------------------------------------- export
def _vision_tensors(pv: Params, cfg: ModelConfig, dtype) -> dict[str, np.ndarray]:
    """Our ``params["vision"]`` -> Qwen2.5-VL ``visual.*`` tensors. The patch embedding's
    temporal slices each get 1/T of our 2-D map, so a still image (T equal frames) maps as
    ours does."""
    v = cfg.vision
    d, p, t = v.hidden_size, v.patch_size, v.temporal_patch_size
    get = lambda a: np.asarray(jax.device_get(a), dtype)  # noqa: E731
    layers = {k: get(a) for k, a in pv["layers"].items()}
    merger = {k: get(a) for k, a in pv["merger"].items()}
    conv = get(pv["patch_embed"]).reshape(p, p, 3, d).transpose(3, 2, 0, 1) / t
    out = {"visual.patch_embed.proj.weight": np.repeat(conv[:, :, None], t, axis=2),
           "visual.merger.ln_q.weight": merger["norm"],
           "visual.merger.mlp.0.weight": merger["w1"].T, "visual.merger.mlp.0.bias": merger["b1"],
           "visual.merger.mlp.2.weight": merger["w2"].T, "visual.merger.mlp.2.bias": merger["b2"]}
    for i in range(v.num_layers):
        lay = {k: a[i] for k, a in layers.items()}
        pre = f"visual.blocks.{i}."
        out.update({
            pre + "norm1.weight": lay["attn_norm"], pre + "norm2.weight": lay["mlp_norm"],
            pre + "attn.qkv.weight": np.concatenate(
                [lay[w].reshape(d, d).T for w in ("wq", "wk", "wv")]),
            pre + "attn.qkv.bias": np.concatenate(
                [lay[b].reshape(-1) for b in ("bq", "bk", "bv")]),
            pre + "attn.proj.weight": lay["wo"].reshape(d, d).T, pre + "attn.proj.bias": lay["bo"],
            pre + "mlp.gate_proj.weight": lay["w_gate"].T, pre + "mlp.gate_proj.bias": lay["b_gate"],
            pre + "mlp.up_proj.weight": lay["w_up"].T, pre + "mlp.up_proj.bias": lay["b_up"],
            pre + "mlp.down_proj.weight": lay["w_down"].T, pre + "mlp.down_proj.bias": lay["b_down"]})
    return {k: np.ascontiguousarray(a) for k, a in out.items()}


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
    if cfg.architecture == "qwen2_5_vl":
        out.update(_vision_tensors(params["vision"], cfg, dtype))
    return out


def save_pretrained(out_dir: str, params: Params, cfg: ModelConfig, tokenizer=None) -> None:
    """Writes config.json, generation_config.json, model.safetensors (and a Qwen2.5-VL's
    preprocessor_config.json) and the tokenizer files.

    The directory appears complete or not at all (written to a temporary sibling, then renamed).
    """
    if cfg.vision is not None and cfg.architecture != "qwen2_5_vl":
        raise ValueError("exporting a vision-language policy to Hugging Face is not supported "
                         "for o1jax's own encoder (it has no transformers counterpart; only a "
                         "policy loaded from a Qwen2.5-VL exports, as one); the workdir's "
                         "checkpoint holds it")
    if cfg.architecture == "qwen2_5_vl" and cfg.head_dim * cfg.num_heads != cfg.hidden_size:
        raise ValueError(f"Qwen2.5-VL in transformers needs head_dim x num_heads = hidden_size; "
                         f"got {cfg.head_dim} x {cfg.num_heads} != {cfg.hidden_size}")
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
        if cfg.architecture == "qwen2_5_vl":
            with open(os.path.join(tmp, "preprocessor_config.json"), "w") as f:
                json.dump(preprocessor_to_hf(cfg.vision), f, indent=2)
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
