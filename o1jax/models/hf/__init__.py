"""Hugging Face checkpoints: load Llama / Qwen2 / Qwen2.5-VL directories into sharded params, and
export back. ``config`` maps config.json to ModelConfig, ``names`` maps parameters to tensor
names, ``weights`` reads and writes safetensors."""

from o1jax.models.hf.config import (ARCHITECTURES, HF_ARCHITECTURES, QWEN_VL_IMAGE_SIZE,
                                    CheckpointError, config_from_hf, config_to_hf, load_config,
                                    preprocessor_to_hf)
from o1jax.models.hf.weights import hf_tensors, load, load_params, save_pretrained

__all__ = ["ARCHITECTURES", "HF_ARCHITECTURES", "QWEN_VL_IMAGE_SIZE", "CheckpointError",
           "config_from_hf", "config_to_hf", "load_config", "preprocessor_to_hf", "hf_tensors",
           "load", "load_params", "save_pretrained"]
