"""An accelerator's figures for a real-size model: training MFU against the chip's measured
bf16 matmul peak, and decode tokens/s against the memory-bandwidth bound.

    python benchmarks/accelerator.py [--quick] [--preset qwen2.5-0.5b]

Random weights of the preset's shapes, bf16 compute, f32 master weights (as training runs).
  - peak: the fastest of seven jitted 8192^3 bf16 matmuls (1024^3 on a CPU);
  - bandwidth: the fastest of seven jitted copies of a 1 GiB array (bytes read + written);
  - training: one jitted value_and_grad of the next-token loss, batch 8 x 1024, layers
    rematerialised (as the real-hardware configs run); model FLOPs 3 x
    ``ModelConfig.flops_per_token`` per token (MFU: recomputation not counted);
  - decode: the rollout engine (``make_sampler``), 64 prompts of 128 tokens, 256 new tokens,
    temperature 1, no stop token; the bound is one read of the bf16 weights and of the mean
    KV cache per decode step (bandwidth / bytes per step x batch).
The last line printed is one JSON object. Meant for a GPU or TPU; it runs (slowly) on CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import median_seconds  # noqa: E402
from o1jax.flops import matmul_peak_flops  # noqa: E402
from o1jax.models import Transformer, preset  # noqa: E402
from o1jax.rollout import SamplingConfig, make_sampler  # noqa: E402


def copy_bandwidth(n_bytes: int = 1 << 30, repeats: int = 7) -> float:
    """Bytes/s of the fastest jitted array copy (read + write)."""
    x = jnp.zeros((n_bytes // 4,), jnp.float32)
    copy = jax.jit(lambda x: x + 1.0)
    jax.block_until_ready(copy(x))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(copy(x))
        best = min(best, time.perf_counter() - t)
    return 2 * n_bytes / best


def train_mfu(model: Transformer, params, batch: int, length: int, peak: float,
              repeats: int) -> dict:
    from benchmarks.model import next_token_loss
    tokens = jax.random.randint(jax.random.key(1), (batch, length), 0, model.cfg.vocab_size)
    mask = jnp.ones((batch, length), jnp.float32)
    step = jax.jit(jax.value_and_grad(lambda p: next_token_loss(model, p, tokens, mask)))
    seconds = median_seconds(lambda: step(params), repeats=repeats)
    flops = 3 * model.cfg.flops_per_token(context=length / 2) * batch * length
    return {"step_s": seconds, "tokens_per_s": batch * length / seconds,
            "mfu": flops / seconds / peak}


def decode(model: Transformer, params, batch: int, prompt: int, new: int, bandwidth: float,
           repeats: int) -> dict:
    cfg = model.cfg
    tokens = np.random.RandomState(0).randint(0, cfg.vocab_size, (batch, prompt))
    mask = np.ones_like(tokens, bool)
    sampler = make_sampler(model, SamplingConfig(max_new_tokens=new, num_samples=1))
    keys = iter(jax.random.split(jax.random.key(0), repeats + 2))
    seconds = median_seconds(lambda: sampler(params, tokens, mask, next(keys)), repeats=repeats)
    weight_bytes = 2 * cfg.num_params()                          # bf16 weights, once a step
    kv_bytes = 2 * 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * batch * (
        prompt + new / 2)                                        # mean cache, keys and values
    bound = bandwidth / (weight_bytes + kv_bytes) * batch
    return {"tokens_per_s": batch * new / seconds, "bound_tokens_per_s": bound,
            "fraction_of_bound": batch * new / seconds / bound}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--preset", default="qwen2.5-0.5b")
    args = ap.parse_args()
    repeats = 2 if args.quick else 5
    peak = matmul_peak_flops(8192 if jax.default_backend() != "cpu" else 1024,
                             dtype=jnp.bfloat16)
    bandwidth = copy_bandwidth()
    device = jax.devices()[0].device_kind
    print(f"{device}: bf16 matmul peak {peak / 1e12:.0f} TFLOP/s, copy bandwidth "
          f"{bandwidth / 1e12:.2f} TB/s")
    model = Transformer(preset(args.preset, dtype="bfloat16", remat=True, max_seq_len=2048))
    params = model.init(jax.random.key(0))
    t = train_mfu(model, params, 8, 1024, peak, repeats)
    print(f"training ({args.preset}, {model.cfg.num_params() / 1e6:.0f}M, 8 x 1024, bf16, remat): "
          f"{t['tokens_per_s']:,.0f} tok/s, MFU {t['mfu']:.2f}")
    d = decode(model, params, 64, 128, 256, bandwidth, repeats)
    print(f"decode (64 x 128 prompt tokens, 256 new): {d['tokens_per_s']:,.0f} tok/s, bound "
          f"{d['bound_tokens_per_s']:,.0f} tok/s: {d['fraction_of_bound']:.2f} of it")
    print(json.dumps({"device": device, "peak_flops_per_s": peak, "copy_bytes_per_s": bandwidth,
                      "train_tokens_per_s": t["tokens_per_s"], "train_mfu": t["mfu"],
                      "decode_tokens_per_s": d["tokens_per_s"],
                      "decode_bound_tokens_per_s": d["bound_tokens_per_s"],
                      "decode_fraction_of_bound": d["fraction_of_bound"]}))


if __name__ == "__main__":
    main()
