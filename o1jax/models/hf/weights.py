"""Reading and writing Hugging Face safetensors checkpoints.

Loading checks the whole checkpoint (architecture, every tensor's presence and shape) before
reading any weights, then builds each parameter with ``jax.make_array_from_callback``: a device
(and, on multi-host, a process) reads only the slices of its own shards, so no host ever needs
the whole model in memory at once, and a bad checkpoint raises before anything is loaded.
The Conv3d patch embedding of Qwen2.5-VL over ``temporal_patch_size`` repeated frames is the 2-D
patch map over its summed temporal weights; videos are not supported.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Any

import jax
import ml_dtypes
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from o1jax import sharding
from o1jax.models.config import ModelConfig
from o1jax.models.hf.config import (
    CheckpointError,
    config_to_hf,
    load_config,
    preprocessor_to_hf,
)
from o1jax.models.hf.names import (EXPERT_MODULES, entries, flat_names, inverse, layer_map,
                                   top_map)
from o1jax.models.transformer import Params, Transformer


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
    params_from = entries(cfg, files)
    expected = {name: shape for _, names, _, shape in params_from
                for name in flat_names(names)}

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

    def gather(names, fn, index) -> np.ndarray:
        """The slice ``index`` of the array stacked from ``names`` (a tensor name, or a list
        stacked on a leading axis: layers, then experts), reading only the tensors in it."""
        if isinstance(names, str):
            return read(names, fn)[index]
        return np.stack([gather(names[i], fn, index[1:]) for i in range(len(names))[index[0]]])

    def build(key, names, fn):
        target, shard = _get(shapes, key), _get(shards, key)
        tree = names if "layers" in key else names[0]
        return jax.make_array_from_callback(target.shape, shard,
                                            lambda index: gather(tree, fn, index))

    params: Params = {}
    for key, names, fn, _ in params_from:
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
            **{pre + f"mlp.{name}_proj.weight": lay[f"w_{name}"].T
               for name in ("gate", "up", "down")},
            **{pre + f"mlp.{name}_proj.bias": lay[f"b_{name}"] for name in ("gate", "up", "down")}})
    return {k: np.ascontiguousarray(a) for k, a in out.items()}


def hf_tensors(params: Params, cfg: ModelConfig, dtype=np.float32) -> dict[str, np.ndarray]:
    """Our params -> HF tensor dict (gathers sharded arrays to this host)."""
    out = {}
    for ours, (hf_name, _, _) in top_map(cfg).items():
        w = np.asarray(jax.device_get(params[ours]), dtype)
        out[hf_name] = np.ascontiguousarray(w.T if ours == "lm_head" else w)
    for ours, (pattern, _, _) in layer_map(cfg).items():
        stacked = np.asarray(jax.device_get(params["layers"][ours]), dtype)
        for i in range(cfg.num_layers):
            out[f"model.layers.{i}.{pattern}"] = np.ascontiguousarray(
                inverse(stacked[i], ours, cfg))
    if cfg.num_experts:
        moe = {k: np.asarray(jax.device_get(a), dtype) for k, a in params["layers"]["moe"].items()}
        for i in range(cfg.num_layers):
            out[f"model.layers.{i}.mlp.gate.weight"] = np.ascontiguousarray(moe["router"][i].T)
            for ours, module in EXPERT_MODULES.items():
                for j in range(cfg.num_experts):
                    out[f"model.layers.{i}.mlp.experts.{j}.{module}.weight"] = \
                        np.ascontiguousarray(moe[ours][i, j].T)
    if cfg.architecture == "qwen2_5_vl":
        out.update(_vision_tensors(params["vision"], cfg, dtype))
    return out


@contextlib.contextmanager
def written_whole(out_dir: str):
    """Yields a temporary sibling of ``out_dir`` to write into; on success it becomes
    ``out_dir`` (which must be missing or empty), on any error it is removed: the directory
    appears complete or not at all."""
    if os.path.exists(out_dir) and os.listdir(out_dir):
        raise FileExistsError(f"{out_dir} exists and is not empty")
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        yield tmp
        if os.path.exists(out_dir):
            os.rmdir(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
    with written_whole(out_dir) as tmp:
        bos = tokenizer.token_id(tokenizer.bos_token) if tokenizer else None
        eos = list(tokenizer.stop_ids) if tokenizer else None
        eos = eos[0] if eos and len(eos) == 1 else eos
        hf_cfg = config_to_hf(cfg, bos, eos)
        if tokenizer is not None and tokenizer.vision_markers:
            start, end = map(tokenizer.token_id, tokenizer.vision_markers)
            hf_cfg.update(vision_start_token_id=start, vision_end_token_id=end)
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(hf_cfg, f, indent=2)
        with open(os.path.join(tmp, "generation_config.json"), "w") as f:
            json.dump({"bos_token_id": bos, "eos_token_id": eos}, f, indent=2)
        if cfg.architecture == "qwen2_5_vl":
            with open(os.path.join(tmp, "preprocessor_config.json"), "w") as f:
                json.dump(preprocessor_to_hf(cfg.vision), f, indent=2)
        save_file(hf_tensors(params, cfg), os.path.join(tmp, "model.safetensors"),
                  metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save(tmp)


def load(path: str, mesh=None, **overrides) -> tuple[Transformer, Params]:
    """(policy model, params) from a Hugging Face directory; ``overrides`` set ModelConfig fields
    (e.g. dtype="bfloat16")."""
    model = Transformer(load_config(path, **overrides), mesh=mesh)
    return model, load_params(path, model)
