"""Llama/Qwen2-family decoder: config, pure-function model, Hugging Face interop."""

from o1jax.models.config import PRESETS, ModelConfig, preset
from o1jax.models.transformer import Transformer, positions_from_mask, value_params_from_policy

__all__ = ["PRESETS", "ModelConfig", "preset", "Transformer", "positions_from_mask",
           "value_params_from_policy"]
