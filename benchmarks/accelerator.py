"""An accelerator's figures for a real-size model, per attention backend (``model.attention``:
``xla`` against the platform's kernels), side by side in one run against the chip's measured
bf16 matmul peak and copy bandwidth.

    python benchmarks/accelerator.py [--quick] [--preset qwen2.5-0.5b] [--out FILE]

Random weights of the preset's shapes, bf16 compute, f32 master weights (as training runs).
  - peak: the fastest of seven jitted 8192^3 bf16 matmuls (1024^3 on a CPU);
  - bandwidth: the fastest of seven jitted copies of a 1 GiB array (bytes read + written);
  - check: the kernel backend's logits against ``xla``'s (a padded 4 x 1,024 forward, and a
    prefill then 8 decode steps), largest difference over the largest logit;
  - training: one jitted value_and_grad of the next-token loss, batch 8 x 1,024 (layers
    rematerialised, and not); model FLOPs 3 x ``ModelConfig.flops_per_token`` per token (MFU:
    recomputation not counted);
  - long training: 8 x 8,192 tokens forward and backward through the decoder (layers
    rematerialised; the loss a fixed projection of the final hidden states, so that the
    [8, 8192, V] logits, the same under every backend, do not hide attention's memory): step
    time, MFU and the compiled program's peak memory (arguments + temporaries);
  - prefill and decode at 1k and 8k tokens of context (64 x 1,024 and 8 x 8,192 prompt tokens):
    the prefill's MFU, then 128 greedy decode steps of the rollout engine (``decode_step`` over
    ``decode_params``) timed alone; the bound is one read of the bf16 weights and of the mean live
    KV cache per step (bandwidth / bytes per step x batch).
--quick: the 1k rows only; --only: the rows whose names start so. The last line printed is one
JSON object (also written to --out). On a GPU a decode unrolls its layers at any depth
(``Transformer.scans_decode``); --scan-decode-from sets where a CPU starts scanning them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import median_seconds  # noqa: E402
from o1jax.flops import matmul_peak_flops  # noqa: E402
from o1jax.models import Transformer, positions_from_mask, preset  # noqa: E402
from o1jax.rollout.decoding import (SamplingConfig, decode_params, decode_step,  # noqa: E402
                                    prefill)

NEW_TOKENS = 128


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


def padded_batch(cfg, batch: int, length: int, seed: int = 1):
    """Random tokens [B, T] and a mask with a quarter of the rows left-padded by T / 8."""
    tokens = jax.random.randint(jax.random.key(seed), (batch, length), 0, cfg.vocab_size)
    mask = np.ones((batch, length), bool)
    mask[: batch // 4, : length // 8] = False
    return tokens, jnp.asarray(mask)


def check(models: dict, params) -> dict:
    """Largest |logit difference| / largest |logit| of each kernel backend against ``xla``."""
    tokens, mask = padded_batch(models["xla"].cfg, 4, 1024)
    pos, real = positions_from_mask(mask), np.asarray(mask)

    def run(model):
        full = model.apply(params, tokens, pos, mask)[0]
        dp = decode_params(model, params)
        cache, first = prefill(model, dp, tokens[:, :1016], mask[:, :1016], 1024)
        logps = []
        for i in range(1016, 1024):
            cache, logp, _ = decode_step(model, dp, cache, tokens[:, i], jax.random.key(0),
                                         SamplingConfig(max_new_tokens=8, greedy=True))
            logps.append(logp)
        return full, first, jnp.stack(logps, 1)

    out = {m: jax.jit(lambda m=m: run(models[m]))() for m in models}
    ref_full = np.asarray(out["xla"][0], np.float32)
    scale = float(np.abs(ref_full).max())
    want_logp = np.asarray(jax.nn.log_softmax(out["xla"][0][:, 1016:1024], -1))
    res = {}
    for name in models:
        if name == "xla":
            continue
        full, first, logps = (np.asarray(a, np.float32) for a in out[name])
        res[f"{name}_forward_rel_err"] = float(np.abs(full - ref_full)[real].max()) / scale
        res[f"{name}_prefill_rel_err"] = float(np.abs(first - ref_full[:, 1015]).max()) / scale
        res[f"{name}_decode_logprob_max_err"] = float(np.abs(logps - want_logp).max())
        res["xla_decode_logprob_max_err"] = float(np.abs(
            np.asarray(out["xla"][2]) - want_logp).max())
    return res


def next_token_loss(model, params, tokens, mask):
    logits = model.apply(params, tokens, positions_from_mask(mask), mask)[0]
    logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
    nll = -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
    return jnp.sum(nll * mask[:, 1:]) / jnp.sum(mask[:, 1:])


def hidden_loss(model, params, tokens, mask):
    x = model.hidden(params, tokens, positions_from_mask(mask), mask)[0]
    w = jnp.cos(jnp.arange(x.shape[-1], dtype=jnp.float32))
    return jnp.sum(jnp.where(mask[..., None], x.astype(jnp.float32) * w, 0.0)) / x.size


def train(model, params, batch, length, peak, repeats, loss=next_token_loss) -> dict:
    tokens, mask = padded_batch(model.cfg, batch, length)
    mask = jnp.ones_like(mask)
    step = jax.jit(jax.value_and_grad(lambda p: loss(model, p, tokens, mask)))
    mem = step.lower(params).compile().memory_analysis()
    seconds = median_seconds(lambda: step(params), repeats=repeats)
    cfg = model.cfg
    head = 0 if loss is next_token_loss else 2 * cfg.hidden_size * cfg.vocab_size
    flops = 3 * (cfg.flops_per_token(context=length / 2) - head) * batch * length
    row = {"step_s": seconds, "tokens_per_s": batch * length / seconds,
           "mfu": flops / seconds / peak}
    if mem is not None:
        row["peak_bytes"] = int(mem.argument_size_in_bytes + mem.temp_size_in_bytes
                                + mem.output_size_in_bytes - mem.alias_size_in_bytes)
    return row


def serve(model, params, batch, prompt, peak, bandwidth, repeats) -> dict:
    """Prefill MFU and decode tokens/s (against the bandwidth bound) at ``prompt`` tokens."""
    cfg = model.cfg
    tokens, mask = padded_batch(cfg, batch, prompt, seed=2)
    dp = jax.jit(lambda p: decode_params(model, p))(params)
    fill = jax.jit(lambda p, t, m: prefill(model, p, t, m, prompt + NEW_TOKENS))
    greedy = SamplingConfig(max_new_tokens=NEW_TOKENS, greedy=True)

    @jax.jit
    def decode(p, cache, logits):
        def body(_, c):
            cache, tok = c
            cache, _, tok = decode_step(model, p, cache, tok, jax.random.key(0), greedy)
            return cache, tok
        return jax.lax.fori_loop(0, NEW_TOKENS, body, (cache, jnp.argmax(logits, -1)))[1]

    fill_s = median_seconds(lambda: fill(dp, tokens, mask), repeats=repeats)
    cache, logits = fill(dp, tokens, mask)
    decode_s = median_seconds(lambda: decode(dp, cache, logits), repeats=repeats)
    real = float(jnp.sum(mask))
    # the prefill projects only each row's last position onto the vocabulary
    head = 2 * cfg.hidden_size * cfg.vocab_size
    fill_flops = (cfg.flops_per_token(context=prompt / 2) - head) * real + head * batch
    weight_bytes = 2 * cfg.num_params()
    kv_bytes = 2 * 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * batch * (
        prompt + NEW_TOKENS / 2)
    bound = bandwidth / (weight_bytes + kv_bytes) * batch
    rate = batch * NEW_TOKENS / decode_s
    return {"prefill_s": fill_s, "prefill_mfu": fill_flops / fill_s / peak,
            "decode_tokens_per_s": rate, "decode_bound_tokens_per_s": bound,
            "decode_fraction_of_bound": rate / bound}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--preset", default="qwen2.5-0.5b")
    ap.add_argument("--backends", default="xla,auto")
    ap.add_argument("--out", default="")
    ap.add_argument("--only", default="", help="comma-separated prefixes of the rows to run")
    ap.add_argument("--scan-decode-from", type=int, default=16,
                    help="ModelConfig.scan_decode_from (a larger value unrolls decode layers)")
    args = ap.parse_args()
    repeats = 3 if args.quick else 5
    on_cpu = jax.default_backend() == "cpu"
    peak = matmul_peak_flops(1024 if on_cpu else 8192, dtype=jnp.bfloat16)
    bandwidth = copy_bandwidth(1 << 26 if on_cpu else 1 << 30)
    device = jax.devices()[0].device_kind
    res = {"device": device, "preset": args.preset, "peak_flops_per_s": peak,
           "copy_bytes_per_s": bandwidth, "rows": {}}
    print(f"{device}: bf16 matmul peak {peak / 1e12:.0f} TFLOP/s, copy bandwidth "
          f"{bandwidth / 1e12:.2f} TB/s", flush=True)
    base = preset(args.preset, dtype="bfloat16", remat=True, max_seq_len=16384,
                  scan_decode_from=args.scan_decode_from)
    models = {}
    for name in args.backends.split(","):
        model = Transformer(base.replace(attention=name))
        models[model.attention] = model
    params = models["xla"].init(jax.random.key(0))
    scale = (2, 256) if on_cpu else (8, 1024)           # CPU: a smoke run of the same code
    long = (2, 512) if on_cpu else (8, 8192)
    serves = [("1k", 8, 256) if on_cpu else ("1k", 64, 1024)]
    if not args.quick:
        serves.append(("8k", 2, 512) if on_cpu else ("8k", 8, 8192))

    def row(key, fn):
        if args.only and not any(key.startswith(p) for p in args.only.split(",")):
            return
        try:
            res["rows"][key] = fn()
            print(f"{key}: " + ", ".join(f"{k} {v:.4g}" for k, v in res["rows"][key].items()),
                  flush=True)
        except Exception as e:  # noqa: BLE001 - one failed row must not lose the others
            traceback.print_exc()
            res["rows"][key] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        if args.out:
            with open(args.out, "w") as f:
                json.dump(res, f, indent=1)

    if len(models) > 1:
        row("check", lambda: check(models, params))
    for name, model in models.items():
        row(f"train_{name}_{scale[0]}x{scale[1]}",
            lambda m=model: train(m, params, *scale, peak, repeats))
        row(f"train_{name}_{scale[0]}x{scale[1]}_no_remat",
            lambda m=model: train(Transformer(m.cfg.replace(remat=False)), params, *scale, peak,
                                  repeats))
        for tag, batch, prompt in serves:
            row(f"serve_{name}_{tag}", lambda m=model, b=batch, p=prompt: serve(
                m, params, b, p, peak, bandwidth, repeats))
        if not args.quick:
            row(f"train_{name}_{long[0]}x{long[1]}_decoder",
                lambda m=model: train(m, params, *long, peak, 2, loss=hidden_loss))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
