"""FLOP counts of the RL stages, one device's measured matmul peak, and MFU from them."""

from __future__ import annotations

from time import perf_counter

import jax
import jax.numpy as jnp

from o1jax.models.config import ModelConfig


def matmul_peak_flops(n: int = 2048, dtype=jnp.float32, repeats: int = 7) -> float:
    """FLOP/s of the fastest of ``repeats`` jitted dense n x n x n matmuls on the default
    device: the peak MFU figures are measured against (a peak is the best the hardware did)."""
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    mm = jax.jit(lambda a, b: a @ b)
    jax.block_until_ready(mm(a, b))
    best = float("inf")
    for _ in range(repeats):
        t = perf_counter()
        jax.block_until_ready(mm(a, b))
        best = min(best, perf_counter() - t)
    return 2 * n ** 3 / best


def peak_flops_per_s(cfg, model: ModelConfig) -> float:
    """One device's peak FLOP/s, what MFU is measured against (times the number of devices):
    ``peak_flops_per_s`` of the config (per chip), else a measured matmul on one device in the
    model's compute dtype (a bf16 run against the bf16 peak, not the f32 one)."""
    return cfg.get("peak_flops_per_s") or matmul_peak_flops(1024, dtype=model.compute_dtype)


def mfu(flops: float, seconds: float, peak_flops_per_s: float, devices: int) -> float:
    """Model FLOPs utilisation: ``flops`` done by ``devices`` devices in ``seconds``, against
    what they could do at one device's peak ``peak_flops_per_s`` each."""
    return flops / seconds / (devices * peak_flops_per_s)


def rollout_flops(model: ModelConfig, prompt_tokens: float, generated_tokens: float,
                  context: float) -> float:
    """Prefill plus decode: forward FLOPs of every prompt and generated token, attention over
    ``context`` keys on average."""
    return model.flops_per_token(context) * (prompt_tokens + generated_tokens)


def prefill_flops(model: ModelConfig, prompt_tokens: int) -> float:
    """Forward FLOPs of a prompt of ``prompt_tokens`` real tokens run at once; the token at
    position i attends to i + 1 keys (``flops_per_token`` is affine in the context, so the mean
    context is exact)."""
    return prompt_tokens * model.flops_per_token((prompt_tokens + 1) / 2)


def decode_flops(model: ModelConfig, prompt_tokens: int, generated_tokens: int) -> float:
    """Forward FLOPs of decoding ``generated_tokens`` after a prefilled prompt, as the rollout
    engine does it: the prefill gives the first token, then each of the other g - 1 tokens is
    one forward of the token before it, at position P + t attending to P + t + 1 keys."""
    steps = max(generated_tokens - 1, 0)
    return steps * model.flops_per_token(prompt_tokens + (steps + 1) / 2)


def verifier_flops(model: ModelConfig, tokens: int) -> float:
    """One value-model forward over a sequence of ``tokens`` (prompt and response): the
    policy's backbone with a scalar head instead of the vocabulary projection."""
    return prefill_flops(model, tokens) - tokens * 2.0 * model.hidden_size * (
        model.vocab_size - 1)


def update_flops(model: ModelConfig, rows: int, length: int, epochs: int, uses_critic: bool,
                 uses_reference: bool, computed: float = 1.0) -> float:
    """Scoring passes (reference log-probs, old values) and E epochs of forward + backward
    (3 forward-equivalents) for the policy and, with PPO, the critic, over [rows, length];
    ``computed``: the share of those cells the passes run over (padding-free training's
    ``update_token_fraction``, measured on the update's micro-batches and taken for the scoring
    passes too, which group the rows alike but over the whole batch; 1 for a padded batch)."""
    fwd = model.flops_per_token(length / 2) * rows * length * computed
    passes = int(uses_reference) + int(uses_critic) + epochs * 3 * (2 if uses_critic else 1)
    return passes * fwd


def sft_step_flops(model: ModelConfig, rows: int, length: int) -> float:
    """One SFT step: forward + backward (3 forward-equivalents) over [rows, length]."""
    return update_flops(model, rows, length, 1, False, False)


def rl_iteration_flops(model: ModelConfig, cfg, prompt_tokens: float, generated_tokens: float,
                       rows: int, length: int, computed: float = 1.0) -> float:
    """One RL iteration (``cfg``: an RLConfig): the rollout over ``prompt_tokens`` real prompt
    tokens and ``generated_tokens`` sampled ones, then scoring and updates over ``computed`` of
    the [rows, length] cells (``update_flops``)."""
    return (rollout_flops(model, prompt_tokens, generated_tokens, length / 2) +
            update_flops(model, rows, length, cfg.epochs, cfg.uses_critic, cfg.uses_reference,
                         computed))
