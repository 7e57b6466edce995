"""Rollout throughput: this engine vs transformers' generate (PyTorch CPU), same weights.

    python benchmarks/rollout.py [--quick]

Batch 64, 32-token prompts, 128 new tokens, sampling at temperature 1, no stop tokens (every
row generates all 128 tokens on both sides). Weights: our random init, exported with
``hf.save_pretrained`` and loaded by transformers. The last line printed is one JSON object.
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
    print(json.dumps(out))


if __name__ == "__main__":
    main()
