"""LoRA adapters (``o1jax.models.lora``) as a PEFT adapter directory: ``adapter_config.json`` and
``adapter_model.safetensors``, which transformers + peft load on top of the base checkpoint.

PEFT's LoRA on a ``torch.nn.Linear`` of weight [out, in] adds scale * B A with A [r, in] and
B [out, r]; ours adds scale * a b to the weight in our layout, a [*in, r], b [r, *out], whose
flattened input and output axes are the Hugging Face weight's transposed (``names.inverse``), so
A = a^T and B = b^T after flattening.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
from safetensors.numpy import save_file

from o1jax.models.config import ModelConfig
from o1jax.models.hf.names import layer_map
from o1jax.models.hf.weights import written_whole
from o1jax.models.lora import LoraConfig
from o1jax.models.transformer import Params

PREFIX = "base_model.model."


def module_name(name: str, cfg: ModelConfig) -> str:
    """The Hugging Face module a projection of ours lives in, e.g. "self_attn.q_proj"."""
    return layer_map(cfg)[name][0].removesuffix(".weight")


def peft_tensors(adapters: Params, cfg: ModelConfig) -> dict[str, np.ndarray]:
    """PEFT's tensors of ``adapters``: ``base_model.model.model.layers.{i}.<module>.lora_A
    .weight`` [r, in] and ``lora_B.weight`` [out, r], f32."""
    out = {}
    for name, ab in adapters["layers"].items():
        a = np.asarray(jax.device_get(ab["a"]), np.float32)    # [L, *in, r]
        b = np.asarray(jax.device_get(ab["b"]), np.float32)    # [L, r, *out]
        r = a.shape[-1]
        for i in range(cfg.num_layers):
            where = f"{PREFIX}model.layers.{i}.{module_name(name, cfg)}"
            out[f"{where}.lora_A.weight"] = np.ascontiguousarray(a[i].reshape(-1, r).T)
            out[f"{where}.lora_B.weight"] = np.ascontiguousarray(b[i].reshape(r, -1).T)
    return out


def peft_config(cfg: LoraConfig, model: ModelConfig, base: str) -> dict:
    """adapter_config.json's fields for ``cfg`` over the base checkpoint ``base``."""
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base,
            "r": cfg.rank, "lora_alpha": cfg.alpha, "lora_dropout": 0.0, "bias": "none",
            "fan_in_fan_out": False, "inference_mode": True, "use_rslora": False,
            "target_modules": sorted(module_name(n, model).split(".")[-1]
                                     for n in cfg.targets)}


def save_peft(out_dir: str, adapters: Params, cfg: LoraConfig, model: ModelConfig,
              base: str) -> None:
    """Writes the PEFT adapter directory; it appears complete or not at all."""
    with written_whole(out_dir) as tmp:
        with open(os.path.join(tmp, "adapter_config.json"), "w") as f:
            json.dump(peft_config(cfg, model, base), f, indent=2)
        save_file(peft_tensors(adapters, model), os.path.join(tmp, "adapter_model.safetensors"),
                  metadata={"format": "pt"})
