"""Rollout: KV-cache decoding pieces, compiled sampling, and scoring of sampled sequences."""

from o1jax.data.prompts import pad_prompts
from o1jax.rollout.decoding import SamplingConfig, decode_params, decode_step, prefill
from o1jax.rollout.sampler import Rollout, gathering_sampler, make_sampler, sample
from o1jax.rollout.scoring import prefix_values, token_logprobs

__all__ = ["Rollout", "SamplingConfig", "decode_params", "decode_step",
           "gathering_sampler", "make_sampler",
           "pad_prompts", "prefill", "sample", "prefix_values", "token_logprobs"]
