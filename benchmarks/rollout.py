"""Rollout throughput: this engine vs transformers' generate (PyTorch CPU), same weights.

    python benchmarks/rollout.py [--quick]

Batch 64, 32-token prompts, 128 new tokens, sampling at temperature 1, no stop tokens (every
row generates all 128 tokens on both sides). Weights: our random init, exported with
``hf.save_pretrained`` and loaded by transformers. Then the visual demo's model
(configs/visual_grpo.py: 16 prompts of 64 tokens ending in 16 image placeholders, 8 samples
each, 80 new tokens): its rollout's tokens/s and the share of the rollout spent in the vision
encoder (the encoder alone on the 16 images, timed apart). The last line printed is one JSON
object.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import median_seconds, start  # noqa: E402
from o1jax.models import Transformer, hf, preset  # noqa: E402
from o1jax.rollout import SamplingConfig, make_sampler  # noqa: E402

BATCH, PROMPT, NEW = 64, 32, 128


def ours_tokens_per_s(model, params, prompts, repeats):
    cfg = SamplingConfig(max_new_tokens=NEW, temperature=1.0)
    sampler = make_sampler(model, cfg)
    mask = np.ones_like(prompts, bool)
    keys = iter(jax.random.split(jax.random.key(0), repeats + 2))
    t = time.perf_counter()
    jax.block_until_ready(sampler(params, prompts, mask, next(keys)))
    compile_s = time.perf_counter() - t
    seconds = median_seconds(lambda: sampler(params, prompts, mask, next(keys)), repeats=repeats,
                             warmup=0)
    return BATCH * NEW / seconds, compile_s


def hf_tokens_per_s(model, params, prompts, repeats):
    import torch
    import transformers
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(os.path.join(d, "m"), params, model.cfg)
        ref = transformers.AutoModelForCausalLM.from_pretrained(os.path.join(d, "m")).eval()
    ids = torch.tensor(prompts, dtype=torch.long)
    kw = dict(max_new_tokens=NEW, min_new_tokens=NEW, do_sample=True, temperature=1.0, top_k=0,
              top_p=1.0, pad_token_id=0)
    times = []
    with torch.inference_mode():
        warm = ids[:4]
        ref.generate(warm, attention_mask=torch.ones_like(warm),
                     **dict(kw, max_new_tokens=4, min_new_tokens=4))
        for _ in range(repeats):
            t = time.perf_counter()
            out = ref.generate(ids, attention_mask=torch.ones_like(ids), **kw)
            times.append(time.perf_counter() - t)
    assert out.shape == (BATCH, PROMPT + NEW)
    return BATCH * NEW / float(np.median(times)), torch.get_num_threads()


def visual_rollout(repeats):
    """(tokens/s, encoder share of the rollout) of the visual demo's model, random weights."""
    from configs import visual_grpo
    from o1jax import experiment
    from o1jax import policy as policy_lib
    cfg = visual_grpo.get_config()
    model, tok, _ = policy_lib.from_config(cfg)
    params = model.init(jax.random.key(0))
    rl = experiment.check_config(cfg, 1)
    b, p, n = rl.batch_prompts, cfg.data.max_prompt_len, rl.max_new_tokens
    rs = np.random.RandomState(0)
    prompts = rs.randint(0, 256, (b, p)).astype(np.int32)
    prompts[:, p - model.cfg.vision.num_tokens:] = model.cfg.image_token_id   # as the template
    images = rs.randint(0, 256, (b,) + (model.cfg.vision.image_size,) * 2 + (3,)).astype(np.uint8)
    sampler = make_sampler(model, SamplingConfig(max_new_tokens=n, num_samples=rl.group_size))
    mask = np.ones_like(prompts, bool)
    keys = iter(jax.random.split(jax.random.key(0), repeats + 2))
    rollout_s = median_seconds(lambda: sampler(params, prompts, mask, next(keys), images),
                               repeats=repeats)
    encode = jax.jit(model.encode_images)
    encoder_s = median_seconds(lambda: encode(params, images), repeats=repeats)
    return b * rl.group_size * n / rollout_s, encoder_s / rollout_s, encoder_s, rollout_s


def main():
    quick, peak = start()
    repeats = 1 if quick else 5
    out = {"peak_flops_per_s": peak}
    for label, name in [("tiny", "tiny"), ("medium", "small25m")]:
        model = Transformer(preset(name))
        params = model.init(jax.random.key(0))
        prompts = np.random.RandomState(0).randint(0, model.cfg.vocab_size, (BATCH, PROMPT))
        ours, compile_s = ours_tokens_per_s(model, params, prompts, repeats)
        theirs, threads = hf_tokens_per_s(model, params, prompts, repeats)
        # decode FLOPs: each new token attends to on average PROMPT + NEW/2 keys
        flops = model.cfg.flops_per_token(PROMPT + NEW / 2) * ours
        print(f"{label:6s} ({name}, {model.cfg.num_params() / 1e6:.1f}M): o1jax {ours:,.0f} tok/s "
              f"(first call incl. compile {compile_s:.1f} s), transformers {theirs:,.0f} tok/s "
              f"({threads} torch threads): {ours / theirs:.2f}x; "
              f"{flops / 1e9:.1f} GFLOP/s = {flops / peak:.3f} of peak")
        out.update({f"{label}_tokens_per_s": ours, f"{label}_transformers_tokens_per_s": theirs,
                    f"{label}_vs_transformers": ours / theirs,
                    f"{label}_peak_fraction": flops / peak})
    tps, share, enc_s, roll_s = visual_rollout(repeats)
    print(f"visual (configs/visual_grpo.py, 16 prompts x 8 samples, 80 new tokens): "
          f"{tps:,.0f} tok/s; vision encoder {enc_s * 1e3:.1f} ms of the {roll_s * 1e3:.0f} ms "
          f"rollout = {share:.1%}")
    out.update(visual_tokens_per_s=tps, visual_encoder_share=share)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
