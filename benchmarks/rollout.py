"""Rollout throughput: this engine vs transformers' generate (PyTorch CPU), same weights.

    python benchmarks/rollout.py [--quick]

Batch 64, 32-token prompts, 128 new tokens, sampling at temperature 1, no stop tokens (every
row generates all 128 tokens on both sides). Weights: our random init, exported with
``hf.save_pretrained`` and loaded by transformers. Then the visual demo's model
(configs/visual_grpo.py: 16 prompts of 64 tokens ending in 16 image placeholders, 8 samples
each, 80 new tokens): its rollout's tokens/s and the share of the rollout spent in the vision
encoder (the encoder alone on the 16 images, timed apart). The last line printed is one JSON
object.

Long context (``--long`` runs only these rows; issue 34 item 3), small25m with ``max_seq_len``
4,096: a decode step of 64 rows at position 128 of a 4,096-slot cache against one of a 256-slot
cache (``decode_ratio``, target <= 1.5; a program of one step, as a search calls it, and a loop
of 8 steps in one program), the sampler's seconds per step on one rollout whose rows all stop
early, with a 4,064-token budget against a 224-token one (a 256-slot cache; ``sampler_ratio``),
and XLA's memory plan (temporaries + arguments + outputs) for the forward and backward of the
log-prob loss on 8 x 4,096 tokens (target <= 8 GiB). The decode steps and the memory plans each
beside today's code path (every attention one fused ``attend``).

Tool calls (``--tools WORKDIR`` runs only these rows; issue 37 item 4): the policy of a
configs/tool_grpo.py run, its 64 held-out prompts x 8 samples, sampled with its tool calls run
in the sandbox and without (the same policy then writes its own "output"): tokens/s of each and
their ratio, calls per response, the extra seconds per call.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import median_seconds, start  # noqa: E402
from o1jax.models import Transformer, hf, preset  # noqa: E402
from o1jax.models.layers import attention  # noqa: E402
from o1jax.rollout import SamplingConfig, decode_params, decode_step, make_sampler  # noqa: E402
from o1jax.rollout.scoring import token_logprobs  # noqa: E402

BATCH, PROMPT, NEW = 64, 32, 128
LONG, SHORT, POSITION, LOOP = 4096, 256, 128, 8         # cache slots, decode position, loop steps
SCORED, VOCAB_CHUNK = 8, 2048                           # rows of LONG tokens scored
EARLY_STOPS = tuple(range(100, 450))    # stop tokens: a random model's rows all end in ~120 steps
GIB = 2 ** 30


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


def tool_rollout(workdir, repeats):
    """A tool_grpo run's policy on its held-out prompts, sampled with and without tool calls."""
    from o1jax import experiment
    from o1jax import policy as policy_lib
    from o1jax import workdir as wd
    from o1jax.config.blocks import ToolsConfig
    from o1jax.data.prompts import pad_prompts, prompt_ids
    from o1jax.rollout import tools
    cfg = wd.load_config(workdir)
    (model, tok, fmt), params = policy_lib.load_policy(workdir)
    problems = experiment.load_problems(cfg, wd.resolve(workdir), "test", 64)
    prompts, mask = pad_prompts([prompt_ids(e, tok, fmt) for e in problems], tok.pad_id)
    tool = tools.from_config(ToolsConfig.from_config(cfg.tools), tok)
    out = {}
    for name, t in (("plain", None), ("tools", tool)):
        sampling = SamplingConfig(cfg.rl.max_new_tokens, num_samples=8, stop_ids=tok.stop_ids,
                                  pad_id=tok.pad_id, tools=t)
        sampler = make_sampler(model, sampling)
        keys = iter(jax.random.split(jax.random.key(0), repeats + 2))
        rolls = []
        seconds = median_seconds(lambda: rolls.append(sampler(params, prompts, mask, next(keys)))
                                 or rolls[-1], repeats=repeats)
        roll = rolls[-1]
        out[f"{name}_tokens_per_s"] = float(np.sum(roll.lengths)) / seconds
        out[f"{name}_seconds"] = seconds
        if t is not None:
            calls = float(np.sum(roll.tool_calls))
            out["tool_calls_per_response"] = calls / len(roll.lengths)
            out["extra_seconds_per_call"] = (seconds - out["plain_seconds"]) / max(calls, 1)
    out["tools_vs_plain"] = out["tools_tokens_per_s"] / out["plain_tokens_per_s"]
    return out


@contextlib.contextmanager
def todays_attention():
    """Traces inside run today's code path: every attention one fused ``attend`` over [T, S]."""
    saved = attention.LIVE_BLOCKS_FROM, attention.QUERY_BLOCKS_FROM
    attention.LIVE_BLOCKS_FROM = attention.QUERY_BLOCKS_FROM = sys.maxsize
    try:
        yield
    finally:
        attention.LIVE_BLOCKS_FROM, attention.QUERY_BLOCKS_FROM = saved


def decode_call(model, params, length, steps):
    """A compiled call (its first run done) of a program of ``steps`` decode steps of BATCH rows,
    each at position POSITION of a cache of ``length`` slots (POSITION real slots before it). The
    cache is donated, so a step writes it in place."""
    cfg = SamplingConfig(max_new_tokens=1)

    def run(params, cache, last, key):   # a new function per call: traced under today's flags
        def step(_, c):
            new = decode_step(model, params, c, last, key, cfg)[0]
            return dict(new, index=c["index"], positions=c["positions"])
        return jax.lax.fori_loop(0, steps, step, cache)

    cache = model.init_cache(BATCH, length)
    state = {"cache": dict(cache, mask=cache["mask"].at[:, :POSITION].set(True),
                           index=jnp.int32(POSITION),
                           positions=jnp.full((BATCH,), POSITION, jnp.int32))}
    compiled = jax.jit(run, donate_argnums=1)
    last, key = jnp.zeros((BATCH,), jnp.int32), jax.random.key(0)

    def call():
        state["cache"] = compiled(params, state["cache"], last, key)
        return state["cache"]["index"]
    jax.block_until_ready(call())
    return call


def decode_seconds(model, params, steps, rounds):
    """(short, long, today): seconds per decode step (``decode_call``) with a SHORT-slot cache,
    a LONG-slot one and a LONG-slot one on today's code path, each the median over ``rounds``
    rounds that time the three in turn (the machine's load drifts) of the median of 3 calls."""
    calls = {"short": decode_call(model, params, SHORT, steps),
             "long": decode_call(model, params, LONG, steps)}
    with todays_attention():
        calls["today"] = decode_call(model, params, LONG, steps)
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            times[name].append(median_seconds(call, repeats=3, warmup=0) / steps)
    return tuple(float(np.median(times[name])) for name in ("short", "long", "today"))


def sampler_seconds_per_step(model, params, rounds):
    """(long, short, steps): seconds per decode step of the sampler (``make_sampler``, BATCH
    rows of a PROMPT-token prompt) with a budget of LONG - PROMPT new tokens and with one of
    SHORT - PROMPT (a SHORT-slot cache), on one rollout whose rows all end early: the same key
    and EARLY_STOPS stop tokens (the two may differ in a token or so: the attention's sums run
    over caches of other lengths), ``steps`` the two runs' step counts. Each the median over
    ``rounds`` rounds timing the two in turn."""
    prompts = np.random.RandomState(0).randint(3, model.cfg.vocab_size, (BATCH, PROMPT))
    mask, key = np.ones_like(prompts, bool), jax.random.key(1)
    runs, times = {}, {"long": [], "short": []}
    for name, length in [("long", LONG), ("short", SHORT)]:
        cfg = SamplingConfig(max_new_tokens=length - PROMPT, stop_ids=EARLY_STOPS)
        sampler = make_sampler(model, cfg)
        steps = int(sampler(params, prompts, mask, key).num_steps)
        assert steps < SHORT - PROMPT, "every row must stop within the short budget"
        runs[name] = (sampler, steps)
    for _ in range(rounds):
        for name, (sampler, steps) in runs.items():
            times[name].append(median_seconds(lambda s=sampler: s(params, prompts, mask, key),
                                              repeats=1, warmup=0) / steps)
    return (float(np.median(times["long"])), float(np.median(times["short"])),
            (runs["long"][1], runs["short"][1]))


def scoring_bytes(model, rows, length, vocab_chunk):
    """XLA's plan for the forward and backward of the log-prob loss (``token_logprobs``) on
    [rows, length] tokens: temporaries + arguments + outputs, in bytes."""
    def loss(params, tokens, mask):
        logp, _ = token_logprobs(model, params, tokens, mask, vocab_chunk=vocab_chunk)
        return -jnp.sum(jnp.where(mask, logp, 0.0))
    tokens = jax.ShapeDtypeStruct((rows, length), jnp.int32)
    mask = jax.ShapeDtypeStruct((rows, length), bool)
    m = jax.jit(jax.grad(loss)).lower(model.param_shapes(), tokens, mask).compile()
    m = m.memory_analysis()
    return m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes


def long_context(rounds):
    """The long-context rows: decode steps over a short and a long cache (beside today's code
    path), the sampler's steps with a long and a short budget, and the memory plan of scoring
    long sequences (beside today's code path)."""
    model = Transformer(preset("small25m", max_seq_len=LONG))
    raw = model.init(jax.random.key(0))
    params = decode_params(model, raw)
    out = {}
    for label, steps in [("", 1), ("_loop", LOOP)]:
        short, long, today = decode_seconds(model, params, steps, rounds)
        print(f"decode step at position {POSITION}, {BATCH} rows, "
              f"{'one step a program' if steps == 1 else f'{steps} steps a program'}: "
              f"{SHORT}-slot cache {short * 1e3:.1f} ms, {LONG}-slot cache {long * 1e3:.1f} ms "
              f"({long / short:.2f}x; target <= 1.5x), today's code path {today * 1e3:.1f} ms "
              f"({today / short:.2f}x)")
        out.update({f"decode{label}_short_s": short, f"decode{label}_long_s": long,
                    f"decode{label}_ratio": long / short,
                    f"decode{label}_todays_ratio": today / short})
    long, short, steps = sampler_seconds_per_step(model, raw, rounds)
    print(f"the sampler, {BATCH} rows, rollouts of {steps[0]} and {steps[1]} steps (every row "
          f"stopped): {LONG - PROMPT}-token budget {long * 1e3:.1f} ms a step, "
          f"{SHORT - PROMPT}-token budget ({SHORT}-slot cache) {short * 1e3:.1f} ms "
          f"({long / short:.2f}x; target <= 1.5x)")
    out.update(sampler_long_s=long, sampler_short_s=short, sampler_ratio=long / short,
               sampler_steps=steps)
    remat = Transformer(preset("small25m", max_seq_len=LONG, remat=True))
    for label, m, chunk in [("", remat, VOCAB_CHUNK), ("_no_remat", model, VOCAB_CHUNK),
                            ("_whole_vocab", remat, 0)]:
        new = scoring_bytes(m, SCORED, LONG, chunk)
        with todays_attention():
            today = scoring_bytes(m, SCORED, LONG, chunk)
        print(f"log-prob loss, forward + backward, {SCORED} x {LONG} tokens, "
              f"remat={m.cfg.remat}, vocab_chunk={chunk}: XLA plans {new / GIB:.2f} GiB "
              f"(target <= 8), today's code path {today / GIB:.2f} GiB")
        out.update({f"scoring{label}_gib": new / GIB, f"scoring{label}_todays_gib": today / GIB})
    return out


def main():
    long_only = "--long" in sys.argv        # start() parses --quick only
    if long_only:
        sys.argv.remove("--long")
    tool_run = None
    if "--tools" in sys.argv:
        i = sys.argv.index("--tools")
        tool_run = sys.argv[i + 1]
        del sys.argv[i:i + 2]
    quick, peak = start()
    repeats = 1 if quick else 5
    out = {"peak_flops_per_s": peak}
    if tool_run:
        t = tool_rollout(tool_run, repeats)
        print(f"tools ({tool_run}, 64 prompts x 8 samples): with tool calls "
              f"{t['tools_tokens_per_s']:,.0f} tok/s, without {t['plain_tokens_per_s']:,.0f} "
              f"tok/s: {t['tools_vs_plain']:.2f}x; {t['tool_calls_per_response']:.2f} calls per "
              f"response, {t['extra_seconds_per_call'] * 1e3:.1f} ms more per call")
        out.update(t)
        print(json.dumps(out))
        return
    if long_only:
        out.update(long_context(3 if quick else 5))
        print(json.dumps(out))
        return
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
    out.update(long_context(3 if quick else 5))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
