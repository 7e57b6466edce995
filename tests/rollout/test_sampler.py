"""The rollout engine against independent references: full forward, transformers, softmax."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from o1jax import sharding
from o1jax.models import Transformer, hf, preset
from o1jax.rollout import SamplingConfig, make_sampler, pad_prompts, sample, token_logprobs
from o1jax.rollout.decoding import filter_logits
from o1jax.rollout import sampler as sampler_lib
from o1jax.rollout.sampler import segment_ends

PROMPTS = [[257, 49, 50, 43], [257, 55], [257, 104, 105, 32, 116, 104, 101, 114, 101], [257, 50]]


def _tiny_model(vocab=512, **kw):
    model = Transformer(preset("tiny", vocab_size=vocab, **kw))
    return model, model.init(jax.random.key(0))


@pytest.mark.parametrize("attention", ["xla", "gpu"])
def test_rollout_logprobs_equal_full_forward_at_every_position(attention):
    """(``gpu``: its cache layout, the decode kernel in interpret mode, grown segment by
    segment, against XLA's form of the cuDNN call.)"""
    model, params = _tiny_model(attention=attention)
    tokens, mask = pad_prompts(PROMPTS, pad_id=0)
    cfg = SamplingConfig(max_new_tokens=12, temperature=0.7, num_samples=3, stop_ids=(7,))
    r = make_sampler(model, cfg)(params, tokens, mask, jax.random.key(1))
    assert r.tokens.shape == (12, tokens.shape[1] + 12)
    full, _ = token_logprobs(model, params, r.tokens, r.mask, temperature=0.7)
    resp = np.asarray(r.response_mask)
    assert resp.sum() > 50
    np.testing.assert_allclose(np.asarray(r.logprobs)[resp], np.asarray(full)[resp], atol=2e-5)
    assert np.all(np.asarray(r.logprobs)[~resp] == 0)
    # the G samples of a prompt share the prompt and are adjacent
    np.testing.assert_array_equal(r.tokens[0, :tokens.shape[1]], r.tokens[2, :tokens.shape[1]])


def test_greedy_equals_transformers_generate_with_mixed_length_prompts(llama_dir):
    model, params = hf.load(llama_dir)
    ref = transformers.AutoModelForCausalLM.from_pretrained(llama_dir)
    tokens, mask = pad_prompts(PROMPTS, pad_id=256)
    n = 70                         # two decode loops (sampler.segment_ends), the cache grown once
    assert len(segment_ends(n)) == 2
    r = make_sampler(model, SamplingConfig(max_new_tokens=n, greedy=True, pad_id=256))(
        params, tokens, mask, jax.random.key(0))
    with torch.no_grad():
        out = ref.generate(torch.tensor(tokens, dtype=torch.long),
                           attention_mask=torch.tensor(mask, dtype=torch.long),
                           max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=256)
    np.testing.assert_array_equal(np.asarray(r.tokens), out.numpy())
    assert np.asarray(r.lengths).tolist() == [n] * 4
    assert not np.asarray(r.finished).any()


def test_greedy_stops_per_row_like_transformers(qwen2_dir):
    model, params = hf.load(qwen2_dir)
    ref = transformers.AutoModelForCausalLM.from_pretrained(qwen2_dir)
    tokens, mask = pad_prompts(PROMPTS, pad_id=256)
    free = make_sampler(model, SamplingConfig(max_new_tokens=10, greedy=True, pad_id=256))(
        params, tokens, mask, jax.random.key(0))
    # make row 0's 4th token a stop token: row 0 finishes early, the others may too
    stop = int(free.tokens[0, tokens.shape[1] + 3])
    cfg = SamplingConfig(max_new_tokens=10, greedy=True, stop_ids=(stop,), pad_id=256)
    r = make_sampler(model, cfg)(params, tokens, mask, jax.random.key(0))
    with torch.no_grad():
        out = ref.generate(torch.tensor(tokens, dtype=torch.long),
                           attention_mask=torch.tensor(mask, dtype=torch.long),
                           max_new_tokens=10, do_sample=False, eos_token_id=stop,
                           pad_token_id=256).numpy()
    ours = np.asarray(r.tokens)[:, :out.shape[1]]
    np.testing.assert_array_equal(ours, out)
    assert bool(r.finished[0]) and int(r.lengths[0]) <= 4


def test_sampling_frequencies_match_softmax():
    vocab = 8
    model, params = _tiny_model(vocab=vocab)
    params = jax.tree.map(lambda x: x * 4 if x.ndim >= 2 else x, params)  # a peakier softmax
    prompt = np.array([[1, 2, 3]])
    logits, _ = model.apply(params, jnp.asarray(prompt), jnp.arange(3)[None], jnp.ones((1, 3)))
    n = 6000
    for temp, top_k, top_p in [(1.0, 0, 1.0), (0.6, 0, 1.0), (1.0, 3, 1.0), (1.3, 0, 0.7)]:
        cfg = SamplingConfig(max_new_tokens=1, temperature=temp, top_k=top_k, top_p=top_p,
                             num_samples=n)
        r = make_sampler(model, cfg)(params, prompt, np.ones((1, 3), bool), jax.random.key(5))
        freq = np.bincount(np.asarray(r.tokens[:, 3]), minlength=vocab) / n
        # reference: numpy softmax with the filters written out by hand
        z = np.asarray(logits[0, -1], np.float64) / temp
        order = np.argsort(-z)
        keep = np.zeros(vocab, bool)
        if top_k:
            keep[order[:top_k]] = True
        elif top_p < 1:
            p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            before = np.cumsum(p[order]) - p[order]
            keep[order[before < top_p]] = True
        else:
            keep[:] = True
        p = np.where(keep, np.exp(z - z.max()), 0)
        p /= p.sum()
        assert np.all(freq[~keep] == 0)
        # 6000 draws: binomial std <= 0.0065; 0.03 is a loose, fixed-seed bound
        assert np.abs(freq - p).max() < 0.03, (temp, top_k, top_p, freq, p)
        assert 0.05 < p.max() < 0.99  # a distribution worth testing


def test_filter_logits_keeps_top_token():
    logits = jnp.array([[0.0, 5.0, 1.0, -2.0]])
    np.testing.assert_array_equal(jnp.isfinite(filter_logits(logits, 0, 0.01)),
                                  [[False, True, False, False]])
    np.testing.assert_array_equal(jnp.isfinite(filter_logits(logits, 2, 1.0)),
                                  [[False, True, True, False]])


def test_early_exit_runs_only_the_needed_steps():
    model, params = _tiny_model()
    params = jax.tree.map(lambda x: x * 5 if x.ndim >= 2 else x, params)  # less repetitive
    free = make_sampler(model, SamplingConfig(max_new_tokens=3, greedy=True))
    for first in range(20):  # a prompt whose 3rd greedy token is new
        prompt = np.array([[first, 6, 7]])
        gen = np.asarray(free(params, prompt, np.ones((1, 3), bool), jax.random.key(0))
                         .tokens[0, 3:]).tolist()
        if gen[2] not in gen[:2]:
            break
    assert gen[2] not in gen[:2]
    cfg = SamplingConfig(max_new_tokens=200, greedy=True, stop_ids=(gen[2],))
    r = make_sampler(model, cfg)(params, prompt, np.ones((1, 3), bool), jax.random.key(0))
    assert int(r.num_steps) == 3
    assert int(r.lengths[0]) == 3 and bool(r.finished[0])
    np.testing.assert_array_equal(np.asarray(r.tokens[0, 3:6]), gen)
    assert np.all(np.asarray(r.response_mask[0, 6:]) == 0)


def test_decode_loops_over_growing_caches_equal_one_loop_over_the_whole_cache(monkeypatch):
    """The sampler's decode loops (each over a cache as long as its steps need) give one loop
    over the whole cache's tokens and, up to the order of the attention's sums, its log-probs:
    rows that stop in different loops, G samples."""
    model, params = _tiny_model()
    tokens, mask = pad_prompts(PROMPTS, pad_id=0)
    cfg = SamplingConfig(max_new_tokens=128, temperature=1.3, num_samples=2,
                         stop_ids=tuple(range(1, 8)))
    assert segment_ends(128) == [32, 64, 96, 128]
    r = make_sampler(model, cfg)(params, tokens, mask, jax.random.key(5))
    monkeypatch.setattr(sampler_lib, "SEGMENTS", 1)
    ref = make_sampler(model, cfg)(params, tokens, mask, jax.random.key(5))
    lengths = np.asarray(ref.lengths)
    assert lengths.min() < 32 and np.any((lengths > 64) & (lengths < 128))   # stops in 3 loops
    for name in ("tokens", "mask", "response_mask", "lengths", "finished", "num_steps"):
        np.testing.assert_array_equal(np.asarray(getattr(r, name)), np.asarray(getattr(ref, name)))
    np.testing.assert_allclose(np.asarray(r.logprobs), np.asarray(ref.logprobs), rtol=0,
                               atol=2e-6)


def test_decode_loops_read_at_most_twice_the_response_or_the_first_steps():
    """Brute force over budgets: the loops end at the budget, in order; the loop holding a
    response's last token ends at most at twice its length or 2 * FIRST_STEPS (so a long
    budget's early answers decode over short caches); where the first of the equal loops is
    under 2 * FIRST_STEPS (budgets under about 2,048) they are the loops of before."""
    for n in list(range(1, 2100)) + [4064, 4096, 10_000, 32_768]:
        ends = segment_ends(n)
        assert ends[-1] == n and all(a < b for a, b in zip(ends, ends[1:])), (n, ends)
        for length in range(1, n + 1, 1 if n < 2100 else 37):
            loop_end = next(e for e in ends if e >= length)
            assert loop_end <= max(2 * length, 2 * sampler_lib.FIRST_STEPS), (n, length, ends)
        k = max(1, min(4, n // 32))
        equal = [-(-n * j // k) for j in range(1, k + 1)]
        if equal[0] < 2 * sampler_lib.FIRST_STEPS:
            assert ends == equal, (n, ends)
    assert segment_ends(4064) == [256, 512, 1016, 2032, 3048, 4064]


def test_rows_done_in_an_early_loop_equal_one_loop_routing_included(monkeypatch):
    """A mixture of experts sampled over several decode loops, every row done in the first
    (the later loops skipped, their caches never grown) and, with another key, rows ending in
    later loops: tokens, log-probs and the routing record equal one loop's."""
    model = Transformer(preset("tiny", architecture="qwen3_moe", qk_norm=True, num_experts=4,
                               experts_per_token=2, moe_mlp_dim=32, vocab_size=64,
                               max_seq_len=160))
    params = model.init(jax.random.key(0))
    prompts = jax.random.randint(jax.random.key(1), (4, 6), 1, 64)
    mask = jnp.ones((4, 6), bool).at[1, :2].set(False)
    cfg = SamplingConfig(max_new_tokens=128, num_samples=2, stop_ids=(1, 2, 3))
    assert len(segment_ends(128)) == 4
    rolls = {}
    for loops in (4, 1):
        monkeypatch.setattr(sampler_lib, "SEGMENTS", loops)
        run = jax.jit(lambda p, t, m, k: sample(model, p, t, m, k, cfg))
        rolls[loops] = [run(params, prompts, mask, jax.random.key(k)) for k in range(12)]
    steps = [int(r.num_steps) for r in rolls[4]]
    assert min(steps) <= 32 < max(steps), steps        # done in the first loop, and later
    for r, ref in zip(rolls[4], rolls[1]):
        assert r.experts.shape == ref.experts.shape == (8, 6 + 128, 2, 2)
        for name in ("tokens", "mask", "lengths", "finished", "num_steps", "experts"):
            np.testing.assert_array_equal(np.asarray(getattr(r, name)),
                                          np.asarray(getattr(ref, name)))
        np.testing.assert_allclose(np.asarray(r.logprobs), np.asarray(ref.logprobs), atol=2e-6)


def test_deterministic_given_key():
    model, params = _tiny_model()
    tokens, mask = pad_prompts(PROMPTS, pad_id=0)
    cfg = SamplingConfig(max_new_tokens=6, num_samples=2)
    s = make_sampler(model, cfg)
    a = s(params, tokens, mask, jax.random.key(3))
    b = s(params, tokens, mask, jax.random.key(3))
    c = s(params, tokens, mask, jax.random.key(4))
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert not np.array_equal(a.tokens, c.tokens)


@pytest.mark.parametrize("shape,attention", [((8, 1, 1), "xla"), ((2, 2, 2), "xla"),
                                             ((1, 2, 4), "xla"), ((2, 2, 2), "gpu")])
def test_sharded_rollout_equals_single_device(shape, attention):
    """(``gpu``: the kernels per device under shard_map, rows and heads split.)"""
    cfg_m = preset("tiny", num_heads=8, num_kv_heads=4, head_dim=8, attention=attention)
    single = Transformer(cfg_m)
    params = single.init(jax.random.key(0))
    tokens, mask = pad_prompts(PROMPTS * 2, pad_id=0)
    cfg = SamplingConfig(max_new_tokens=10, temperature=0.9, top_k=50, num_samples=2,
                         stop_ids=(11,))
    ref = make_sampler(single, cfg)(params, tokens, mask, jax.random.key(2))
    mesh = sharding.make_mesh(shape)
    model = Transformer(cfg_m, mesh=mesh)
    sharded_params = jax.device_put(params, model.shardings())
    r = make_sampler(model, cfg)(sharded_params, tokens, mask, jax.random.key(2))
    assert len(r.tokens.sharding.device_set) == 8
    np.testing.assert_array_equal(np.asarray(r.tokens), np.asarray(ref.tokens))
    np.testing.assert_allclose(np.asarray(r.logprobs), np.asarray(ref.logprobs), atol=2e-5)
    np.testing.assert_array_equal(np.asarray(r.finished), np.asarray(ref.finished))


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_new_tokens=0), "max_new_tokens must be >= 1"),
    (dict(max_new_tokens=4, num_samples=0), "num_samples"),
    (dict(max_new_tokens=4, temperature=0.0), "temperature"),
    (dict(max_new_tokens=4, top_p=0.0), "top_p"),
])
def test_bad_sampling_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SamplingConfig(**kwargs)


def test_bad_prompts_fail_before_compiling(monkeypatch):
    model, params = _tiny_model()
    s = make_sampler(model, SamplingConfig(max_new_tokens=8))
    compiled = []
    monkeypatch.setattr(jax, "jit", lambda *a, **k: compiled.append(1))
    tokens = np.zeros((2, 4), np.int32)
    with pytest.raises(ValueError, match=r"empty prompt\(s\) at row\(s\) \[1\]"):
        s(params, tokens, np.array([[1, 1, 1, 1], [0, 0, 0, 0]], bool), jax.random.key(0))
    too_long = np.ones((1, 510), bool)
    with pytest.raises(ValueError, match="exceeds the model's max_seq_len 512"):
        s(params, np.zeros((1, 510), np.int32), too_long, jax.random.key(0))
    assert compiled == []
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        pad_prompts([[1], []], 0)
    with pytest.raises(ValueError, match="longer than the maximum prompt length 2"):
        pad_prompts([[1, 2, 3]], 0, length=2)


def test_sample_is_pure_and_jittable_inside_a_larger_program():
    """The engine is a plain function: it can sit inside another jitted computation."""
    model, params = _tiny_model()
    tokens, mask = pad_prompts(PROMPTS, pad_id=0)
    cfg = SamplingConfig(max_new_tokens=5, num_samples=2)

    @jax.jit
    def mean_logprob(params, key):
        r = sample(model, params, tokens, mask, key, cfg)
        return jnp.sum(r.logprobs) / jnp.sum(r.response_mask)

    direct = make_sampler(model, cfg)(params, tokens, mask, jax.random.key(9))
    expect = np.sum(np.asarray(direct.logprobs)) / np.sum(np.asarray(direct.response_mask))
    np.testing.assert_allclose(mean_logprob(params, jax.random.key(9)), expect, rtol=1e-5)


def test_the_gathering_sampler_compiles_once_per_model_and_sampling(caplog):
    """Training evaluates at every curve point with new but equal model and sampling objects:
    the sampler compiles once, and a different sampling setting is a program of its own."""
    model, params = _tiny_model()
    tokens, mask = pad_prompts(PROMPTS, pad_id=0)
    out = []
    with jax.log_compiles(), caplog.at_level("WARNING"):
        for n in (4, 4, 5):
            run = sampler_lib.gathering_sampler(Transformer(model.cfg),
                                                SamplingConfig(max_new_tokens=n, greedy=True))
            out.append(run(params, tokens, mask, jax.random.key(0)))
    compiles = [r for r in caplog.records if "Compiling jit(fn)" in r.getMessage()]
    assert len(compiles) == 2, [r.getMessage()[:80] for r in compiles]
    assert isinstance(out[0].tokens, np.ndarray)          # gathered to the host
    np.testing.assert_array_equal(out[0].tokens, out[1].tokens)
    np.testing.assert_array_equal(out[2].tokens[:, :-1], out[0].tokens)   # greedy, one more
