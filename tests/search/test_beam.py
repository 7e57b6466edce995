"""Beam search and DVTS on a policy that writes random lines of a and b, with a hand-made value
function that rewards one known path (lines of a only, the more a the better, any b ruins it):
the search must find it, where sampling the same policy does not. At temperature near 0 they
choose what the implementation before KV caches chose (recorded), with the ledger a brute force
gives, from one compiled program; and the search caches score and continue a path exactly as a
forward over the whole sequence does."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o1jax import flops
from o1jax.data.prompts import PromptFormat, encode_prompt, pad_prompts
from o1jax.models import Transformer, preset
from o1jax.models import positions_from_mask, value_params_from_policy
from o1jax.rollout import SamplingConfig, decode_params
from o1jax.search import beam, cached, steps, value_models
from o1jax.tokenizer import byte_tokenizer

A, B, NL = ord("a"), ord("b"), ord("\n")


def _random_lines_policy():
    """Next token a, b or newline (about 30% each) or the stop token (about 10%), after any
    prefix: layers off, every embedding one vector, the head rigged on four columns."""
    tok = byte_tokenizer()
    model = Transformer(preset("tiny", vocab_size=320, max_seq_len=96, tie_embeddings=False))
    params = model.init(jax.random.key(0))
    layers = dict(params["layers"], wo=jnp.zeros_like(params["layers"]["wo"]),
                  w_down=jnp.zeros_like(params["layers"]["w_down"]))
    e = np.random.RandomState(0).randn(params["embed"].shape[1]).astype(np.float32)
    h = e / np.sqrt(np.mean(e ** 2))                     # the final norm's output (scale ~1)
    head = np.zeros(params["lm_head"].shape, np.float32)
    for t, logit in ((A, 20.0), (B, 20.0), (NL, 20.0), (tok.stop_ids[0], 18.9)):
        head[:, t] = logit * h / np.dot(h, h)
    return model, dict(params, layers=layers, embed=jnp.tile(jnp.asarray(e), (320, 1)),
                       lm_head=jnp.asarray(head)), tok


@dataclasses.dataclass(frozen=True)
class NoB(Transformer):
    """A hand-made value model: the count of a so far / 20 while the sequence holds no b, else 0.
    Its KV cache keeps the tokens themselves (in the first layer's keys)."""

    def hidden(self, params, tokens, positions, mask, cache=None, image_embeds=None,
               image_grid=None):
        mask = mask.astype(bool)
        if cache is None:
            return self._counts(tokens, mask), None
        start, t = cache["index"], tokens.shape[1]
        kv_mask = jax.lax.dynamic_update_slice(cache["mask"], mask, (0, start))
        k0 = cache["k"][0]
        ids = jnp.broadcast_to(tokens[:, None, None, :], k0.shape[:3] + (t,)).astype(k0.dtype)
        k0 = jax.lax.dynamic_update_slice(k0, ids, (0, 0, 0, start))
        counts = self._counts(k0[:, 0, 0].astype(jnp.int32), kv_mask)
        new = dict(cache, k=(k0,) + tuple(cache["k"][1:]), mask=kv_mask, index=start + t)
        return jax.lax.dynamic_slice_in_dim(counts, start, t, axis=1), new

    @staticmethod
    def _counts(tokens, mask):
        """[B, T, 2]: a so far, b so far, of the real tokens."""
        return jnp.stack([jnp.cumsum((tokens == A) & mask, axis=1),
                          jnp.cumsum((tokens == B) & mask, axis=1)], -1).astype(jnp.float32)

    def head_out(self, params, x):
        return jnp.where(x[..., 1] > 0, 0.0, jnp.minimum(x[..., 0] / 20, 1.0))


def _no_b(model):
    vmodel = NoB(model.cfg, head="value")
    return value_models.ValueModel("prm", vmodel, vmodel.init(jax.random.key(1)), "hand-made")


def _problems(questions):
    return [{"question": q, "answer": "0", "task": "arithmetic", "meta": "{}"} for q in questions]


@pytest.mark.parametrize("diverse", [False, True])
def test_search_finds_the_path_the_value_function_rewards(diverse):
    model, params, tok = _random_lines_policy()
    examples = _problems(["?" * (i + 1) for i in range(6)])
    gen, ledger = beam.search(model, params, examples, tok, _no_b(model), beams=3, width=4,
                              diverse=diverse, fmt=PromptFormat(max_prompt_len=8),
                              max_new_tokens=40,
                              step_tokens=8, temperature=1.0, batch_rows=16, seed=0)
    texts = [t[0] for t in gen.texts]
    assert all("b" not in t for t in texts), texts
    assert np.mean([t.count("a") for t in texts]) >= 3, texts
    # the value model rewards a's, not stopping: a search may spend its 40 tokens on them (one
    # of six in 3 of 8 seeds; 2 of 8 with every row in every decoding batch, before 2026-12-05)
    assert gen.finished.sum() >= 5
    assert (ledger["decode_flops"] > 0).all() and (ledger["verifier_flops"] > 0).all()
    assert (ledger["prefill_flops"] > 0).all()


def test_plain_sampling_of_that_policy_writes_b():
    from o1jax.rollout import make_sampler
    model, params, tok = _random_lines_policy()
    tokens, mask = pad_prompts([[63] * 3] * 6, tok.pad_id)
    r = make_sampler(model, SamplingConfig(40, 1.0, stop_ids=tok.stop_ids, pad_id=tok.pad_id))(
        params, tokens, mask, jax.random.key(0))
    lengths = np.asarray(r.lengths)
    has_b = [(np.asarray(r.tokens[i])[np.asarray(r.response_mask[i])] == B).any()
             for i in range(6)]
    assert sum(has_b) >= 4 and lengths.mean() > 5   # the path is not what it writes by itself


def test_zero_beams_or_width_is_an_error():
    model, params, tok = _random_lines_policy()
    with pytest.raises(ValueError, match="beams and width >= 1"):
        beam.search(model, params, [], tok, _no_b(model), 0, 4, False,
                    PromptFormat(max_prompt_len=8), 40, 8, 1.0)


def test_dvts_gives_a_finished_subtrees_rows_to_those_still_searching():
    """Each round every row of a problem decodes but one per finished subtree (its answer),
    counted from the program's own record of the tokens each row wrote; the subtrees finish at
    different rounds here (stop token ~10% a token), so some round has between 1 and B - 1
    finished, where rows kept per subtree (M each) would leave M idle per finished one."""
    model, params, tok = _random_lines_policy()
    b, m, n = 3, 4, 4
    cfg = SamplingConfig(8, 1.0, stop_ids=tok.stop_ids + steps.step_end_ids(tok),
                         pad_id=tok.pad_id)
    verifier = _no_b(model)
    run = beam.make_program(model, verifier.model, cfg, tuple(tok.stop_ids), b, m, True, 40,
                            "value")
    tokens, mask = pad_prompts([[63] * (i + 1) for i in range(n)], tok.pad_id, 8)
    _, _, _, written = run(params, verifier.params, tokens, mask, jax.random.key(3))
    writing = (np.asarray(written).reshape(-1, n, b * m) > 0).sum(axis=2)   # [round, problem]
    assert set(writing[writing > 0].tolist()) <= set(range(b * m - b + 1, b * m + 1)), writing
    assert ((writing > b * m - b) & (writing < b * m)).any(), writing   # a subtree finished first
    assert (writing == 0).any(axis=0).all()                                # every problem ended


def _subtree_rows_reference(pool, subtree, done, b):
    """``beam.subtree_rows`` in plain Python, problem by problem."""
    parents, firsts, subs = [], [], []
    for pl, sb, dn in zip(pool.tolist(), subtree.tolist(), done.tolist()):
        r = len(pl)
        kept = [max((i for i in range(r) if sb[i] == k), key=lambda i: (pl[i], -i))
                for k in range(b)]
        fin = [k for k in range(b) if dn[kept[k]]]
        live = [k for k in range(b) if not dn[kept[k]]]
        sub = fin + ([live[(q * len(live)) // (r - len(fin))] for q in range(r - len(fin))]
                     if live else [fin[q % b] for q in range(len(fin), r)])
        parents.append([kept[k] for k in sub])
        firsts += [q < len(fin) for q in range(r)]
        subs.append(sub)
    return np.array(parents), np.array(firsts), np.array(subs)


def test_subtree_rows_against_a_plain_loop():
    rng = np.random.default_rng(0)
    b, m, n = 3, 4, 50
    for _ in range(20):
        subtree = np.stack([rng.permutation(np.arange(b * m) % b) for _ in range(n)])
        pool = rng.normal(size=(n, b * m)).astype(np.float32)
        done = rng.random((n, b * m)) < rng.random((n, 1))
        got = beam.subtree_rows(jnp.asarray(pool), jnp.asarray(subtree), jnp.asarray(done), b)
        for g, w in zip(got, _subtree_rows_reference(pool, subtree, done, b)):
            np.testing.assert_array_equal(np.asarray(g), w)


def random_models(attention="xla"):
    """A tiny random policy (greedy: newlines, then runs of ";") and a random value model."""
    model = Transformer(preset("tiny", vocab_size=320, max_seq_len=96, attention=attention))
    params = model.init(jax.random.key(1))
    vmodel = Transformer(model.cfg, head="value")
    verifier = value_models.ValueModel("orm", vmodel,
                                       value_params_from_policy(params, jax.random.key(2)), "rnd")
    return model, params, byte_tokenizer(), verifier


QUESTIONS = ["1+2", "what?", "a\nb", "zz top", "9"]
# beam.search(..., beams=2, width=3, max_new_tokens=40, step_tokens=8, temperature=1e-5) before
# KV caches (commit 0380a43), DVTS the same: greedy decoding, whatever the value model says
OLD_CHOSEN = [[NL] * 40, [NL] * 40, [NL] * 25 + [59] * 15, [NL] * 40, [NL] * 17 + [59] * 23]


def _brute_force_ledger(mcfg, vcfg, prompt_len, response, candidates, n_new, s):
    """Every round all ``candidates`` write the same step of ``response`` (near-greedy)."""
    out = dict(tokens=0.0, decode_flops=0.0, verifier_flops=flops.verifier_flops(vcfg, prompt_len))
    pos = 0
    while pos < len(response):
        window = response[pos:pos + min(s, n_new - pos)]
        g = next((i + 1 for i, t in enumerate(window) if t == NL), len(window))
        p = prompt_len + pos
        out["tokens"] += candidates * g
        out["decode_flops"] += candidates * flops.decode_flops(mcfg, p, g + 1)
        out["verifier_flops"] += candidates * (flops.verifier_flops(vcfg, p + g)
                                               - flops.verifier_flops(vcfg, p))
        pos += g
    return out


@pytest.mark.parametrize("diverse", [False, True])
def test_near_greedy_search_chooses_what_the_old_one_did_in_one_program(diverse):
    model, params, tok, verifier = random_models()
    fmt = PromptFormat(max_prompt_len=8)
    run = lambda questions: beam.search(  # noqa: E731
        model, params, _problems(questions), tok, verifier, 2, 3, diverse, fmt, 40, 8, 1e-5,
        batch_rows=8)
    gen, ledger = run(QUESTIONS)
    assert [r[8:][m[8:]].tolist() for r, m in zip(gen.tokens, gen.mask)] == OLD_CHOSEN
    for i, q in enumerate(QUESTIONS):
        p = len(encode_prompt(_problems([q])[0], tok, fmt))
        assert ledger["prefill_flops"][i] == flops.prefill_flops(model.cfg, p)  # once
        want = _brute_force_ledger(model.cfg, verifier.model.cfg, p, OLD_CHOSEN[i], 6, 40, 8)
        for k, v in want.items():
            np.testing.assert_allclose(ledger[k][i], v, rtol=1e-12, err_msg=k)
    run(["a much longer question", "?"])   # other prompt lengths, fewer problems
    cfg = SamplingConfig(8, 1e-5, stop_ids=tok.stop_ids + steps.step_end_ids(tok),
                         pad_id=tok.pad_id)
    program = beam.make_program(model, verifier.model, cfg, tuple(tok.stop_ids), 2, 3, diverse,
                                40, "value")
    assert program._cache_size() == 1


@pytest.mark.parametrize("attention", ["xla", "gpu"])
def test_cached_rows_continue_and_score_as_a_full_forward_does(attention):
    """Two sampled steps through ``cached`` (rows copied and shuffled between them, then packed)
    against one forward of each whole sequence: next-token log-probs and value score."""
    model, params, tok, verifier = random_models(attention)
    vmodel, vparams = verifier.model, verifier.params
    cfg = SamplingConfig(6, 1.0, stop_ids=(NL, 258), pad_id=tok.pad_id)
    ends = jnp.asarray(cfg.stop_ids)
    tokens, mask = pad_prompts([[257, 50, 51], [257, 52], [257, 53, 54, 55]], tok.pad_id, 5)
    dp, dv = decode_params(model, params), decode_params(vmodel, vparams)
    order = jnp.asarray([5, 0, 0, 3, 1, 4])

    @jax.jit
    def two_steps(tokens, mask):
        rows = cached.start(model, dp, vmodel, dv, tokens, mask, 40, cfg, "value", 2)
        rows, first = cached.extend(model, dp, vmodel, dv, rows, jnp.ones(6, bool), 6,
                                    jax.random.key(0), cfg, ends, ends, "value")
        rows = cached.align(model, vmodel, cached.take_rows(rows, order), jnp.int32(17))
        rows, second = cached.extend(model, dp, vmodel, dv, rows, jnp.ones(6, bool), 6,
                                     jax.random.key(1), cfg, ends, ends, "value")
        return rows, first, second

    rows, first, second = two_steps(tokens, mask)
    seqs = [list(t[m]) for t, m in zip(tokens, mask) for _ in range(2)]
    seqs = [seqs[i] + first.tokens[i, :first.length[i]].tolist() for i in order.tolist()]
    seqs = [q + t[:g].tolist() for q, t, g in zip(seqs, np.asarray(second.tokens),
                                                  np.asarray(second.length))]
    assert_rows_continue_the_sequences(rows, seqs, model, params, verifier, tok.pad_id)


def assert_rows_continue_the_sequences(rows, seqs, model, params, verifier, pad_id):
    """Each row's next-token log-probs and value score (``cached.Rows``) equal one forward of
    its whole sequence ``seqs`` [R] (token lists) in the policy and the value model."""
    full, fmask = pad_prompts(seqs, pad_id)
    forward = jax.jit(lambda m, p, t, k: m.apply(p, t, positions_from_mask(k), k)[0][:, -1],
                      static_argnums=0)
    want = jax.nn.log_softmax(forward(model, params, full, fmask), axis=-1)
    np.testing.assert_allclose(rows.logp, want, atol=2e-5)
    values = value_models.squash("value", forward(verifier.model, verifier.params, full, fmask))
    np.testing.assert_allclose(rows.score, values, atol=2e-5)


def vision_models(mrope_section=None):
    """A tiny random vision policy (8 x 8 images: 4 image tokens, the byte tokenizer's
    placeholder 259) and a random value model started from it (its own copy of the encoder)."""
    from o1jax.models.vision_config import VisionConfig
    vis = VisionConfig(image_size=8, patch_size=2, hidden_size=16, num_layers=1, num_heads=2,
                       mlp_dim=32, merge_size=2)
    model = Transformer(preset("tiny", vocab_size=320, max_seq_len=96, vision=vis,
                               image_token_id=259, mrope_section=mrope_section,
                               tie_embeddings=False))
    params = model.init(jax.random.key(3))
    verifier = value_models.ValueModel(
        "orm", Transformer(model.cfg, head="value"),
        value_params_from_policy(params, jax.random.key(4)), "rnd")
    return model, params, verifier


@pytest.mark.parametrize("mrope_section", [None, (2, 3, 3)])
def test_cached_rows_read_the_prompt_images_as_a_full_forward_does(mrope_section):
    """Prompts with an image each, prefilled into both caches and continued one step: the
    policy's next-token log-probs and the value model's score equal one forward of each whole
    sequence with its image, and another image gives another score."""
    model, params, verifier = vision_models(mrope_section)
    vmodel, vparams = verifier.model, verifier.params
    cfg = SamplingConfig(6, 1.0, stop_ids=(NL, 258), pad_id=0)
    ends = jnp.asarray(cfg.stop_ids)
    tokens, mask = pad_prompts([[257, 259, 259, 259, 259, 50], [257, 52] + [259] * 4 + [53]],
                               0, 8)
    images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    dp, dv = decode_params(model, params), decode_params(vmodel, vparams)

    @jax.jit
    def one_step(tokens, mask, images):
        rows = cached.start(model, dp, vmodel, dv, tokens, mask, 40, cfg, "logit", 1, images)
        return cached.extend(model, dp, vmodel, dv, rows, jnp.ones(2, bool), 6,
                             jax.random.key(0), cfg, ends, ends, "logit")

    rows, step = one_step(tokens, mask, images)
    seqs = [list(t[m]) + s[:g].tolist() for t, m, s, g in zip(
        tokens, mask, np.asarray(step.tokens), np.asarray(step.length))]
    full, fmask = pad_prompts(seqs, 0)

    def forward(m, p, imgs):
        out, _ = m.apply(p, full, positions_from_mask(fmask), fmask, **m.image_inputs(p, imgs))
        return out[:, -1]
    want = jax.nn.log_softmax(forward(model, params, images), axis=-1)
    np.testing.assert_allclose(rows.logp, want, atol=3e-5)
    values = value_models.squash("logit", forward(vmodel, vparams, images))   # not clipped
    np.testing.assert_allclose(rows.score, values, atol=3e-5)
    other = value_models.squash("logit", forward(vmodel, vparams, 255 - images))
    assert np.abs(np.asarray(other) - np.asarray(values)).max() > 1e-3


def vision_problems(n):
    """``n`` counting questions, each with a random 8 x 8 picture of its own."""
    rng = np.random.default_rng(5)
    return [dict(_problems(["How many?"])[0], image=rng.integers(0, 256, (8, 8, 3), np.uint8))
            for _ in range(n)]


@pytest.mark.parametrize("strategy", ["beam", "dvts", "mcts"])
def test_a_near_greedy_search_of_one_path_writes_the_greedy_sample_of_each_image(strategy):
    """One beam of one candidate (one MCTS action) at temperature near 0 is greedy decoding:
    it must write, problem by problem, what the sampler writes greedily with the same image
    (and the pictures make the greedy samples differ, so a search that lost them would not)."""
    from o1jax.search import mcts, strategies
    model, params, verifier = vision_models()
    tok = byte_tokenizer(image_token=True)
    examples = vision_problems(6)
    fmt = PromptFormat(max_prompt_len=24, image_tokens=4)
    greedy = strategies.generate(model, params, examples, tok, SamplingConfig(
        24, greedy=True, stop_ids=tok.stop_ids, pad_id=tok.pad_id), fmt, 3)
    if strategy == "mcts":
        gen, _ = mcts.search(model, params, examples, tok, verifier, 1, 1, fmt, 24, 8, 1e-5,
                             batch_rows=3)
    else:
        gen, _ = beam.search(model, params, examples, tok, verifier, 1, 1, strategy == "dvts",
                             fmt, 24, 8, 1e-5, batch_rows=3)
    assert len({t[0] for t in greedy.texts}) > 1, greedy.texts
    assert [t[0] for t in gen.texts] == [t[0] for t in greedy.texts]
