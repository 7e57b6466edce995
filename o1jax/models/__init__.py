"""Llama/Qwen2/Qwen3-family decoder: config, pure-function model, Hugging Face interop."""

from o1jax.models.config import PRESETS, ModelConfig, preset
from o1jax.models.layouts import value_params_from_policy
from o1jax.models.transformer import Transformer, positions_from_mask

__all__ = ["PRESETS", "ModelConfig", "preset", "Transformer", "positions_from_mask",
           "value_params_from_policy"]
