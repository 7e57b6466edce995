"""Rollout: compiled KV-cache sampling and scoring of sampled sequences."""

from o1jax.rollout.sampler import (Rollout, SamplingConfig, make_sampler, pad_prompts, sample)
from o1jax.rollout.scoring import prefix_values, token_logprobs

__all__ = ["Rollout", "SamplingConfig", "make_sampler", "pad_prompts", "sample", "prefix_values",
           "token_logprobs"]
