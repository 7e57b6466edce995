"""The reasoning-trace view: per-token values are the value model's, step importance equals a
plain-Python loop's, attention weights are the ones the forward pass uses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o1jax import trace as trace_lib
from o1jax import workdir as wd
from o1jax.data.pipeline import render_prompt
from o1jax.models import Transformer, positions_from_mask, preset
from o1jax.models.layers.attention import attend, attention_probs
from o1jax.rollout.decoding import SamplingConfig
from o1jax.rollout.sampler import make_sampler, pad_prompts
from o1jax.search import verifiers

SOLUTION = "5+7=12, write 2, carry 1\n1+2+1=4, write 4\n\\boxed{42}"


def fake_verify(texts, references):
    """Deterministic stand-in for the checker: 'correct' when the text holds an even digit
    count, so that random continuations are sometimes right and sometimes wrong."""
    return [sum(ch.isdigit() for ch in t) % 2 == 0 for t in texts]


def test_values_and_importance_match_plain_computations(smoke_run, monkeypatch):
    workdir, _ = smoke_run
    monkeypatch.setattr(trace_lib, "verify_batch", fake_verify)
    policy, params, tok = wd.load_policy(workdir)
    # digits and spaces stop a continuation too: this barely trained policy then finishes
    # its continuations at random lengths, some right and some wrong under fake_verify
    tok.stop_ids = tok.stop_ids + tuple(tok.encode("0123456789 ", False))
    critic = verifiers.load("critic", policy, workdir)
    k, seed, template = 6, 3, "{question}\n"
    tr = trace_lib.trace(policy, params, tok, "15+27=?", "42", template,
                         (critic.model, critic.params), k=k, max_new=16, seed=seed,
                         solution=SOLUTION, layers=(0,), heads=(0, 1))

    # the steps are the solution's lines; values are the value model's at each response token
    lines = SOLUTION.split("\n")
    assert tr.steps == lines and "".join(tr.tokens) == SOLUTION
    prompt = tok.encode(render_prompt("15+27=?", tok, template))
    seq = jnp.asarray([prompt + tok.encode(SOLUTION, False) + [tok.stop_ids[0]]])
    mask = jnp.ones_like(seq, bool)
    values, _ = critic.model.apply(critic.params, seq, positions_from_mask(mask), mask)
    np.testing.assert_allclose(tr.values, np.asarray(values[0, len(prompt):-1]), rtol=1e-5,
                               atol=1e-6)

    # importance: a plain loop over the prefixes built from the text, K samples each
    prefixes = [render_prompt("15+27=?", tok, template) + "".join(x + "\n" for x in lines[:j])
                for j in range(len(lines))]
    length = len(tok.encode(prefixes[-1]))
    sampler = make_sampler(policy, SamplingConfig(
        max_new_tokens=min(16, policy.cfg.max_seq_len - length), num_samples=k,
        stop_ids=tok.stop_ids, pad_id=tok.pad_id), gather=True)
    key = jax.random.fold_in(jax.random.key(seed), 1)
    rates = []
    for j, text in enumerate(prefixes):
        toks, m = pad_prompts([tok.encode(text)], tok.pad_id, length)
        roll = sampler(params, toks, m, jax.random.fold_in(key, j))
        correct = 0
        for i in range(k):
            ids = [int(t) for t, r in zip(roll.tokens[i], roll.response_mask[i]) if r]
            if roll.finished[i]:
                whole = "".join(x + "\n" for x in lines[:j]) + tok.decode(ids[:-1])
                correct += fake_verify([whole], ["42"])[0]
        rates.append(correct / k)
    assert tr.before == pytest.approx(rates) and 0 < np.mean(rates) < 1, rates
    final = float(fake_verify([SOLUTION], ["42"])[0])
    assert tr.after == pytest.approx(rates[1:] + [final])
    assert tr.importance == pytest.approx([a - b for a, b in zip(rates[1:] + [final], rates)])
    assert len(tr.labels) == seq.shape[1] and set(tr.attention) == {"0/0", "0/1"}
    att = np.asarray(tr.attention["0/1"])
    np.testing.assert_allclose(att.sum(-1), 1.0, rtol=1e-5)
    assert np.allclose(np.triu(att, 1), 0.0)          # causal


def test_attention_weights_are_the_ones_attend_uses():
    model = Transformer(preset("tiny", max_seq_len=32))
    params = model.init(jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (2, 7), 1, 100)
    mask = jnp.ones_like(tokens, bool).at[0, :2].set(False)
    maps = trace_lib.attention_maps(model, params, tokens, mask, [1])
    q = jax.random.normal(jax.random.key(2), (2, 7, 4, 16))
    k = jax.random.normal(jax.random.key(3), (2, 2, 16, 7))
    v = jax.random.normal(jax.random.key(4), (2, 2, 7, 16))
    key_mask = jnp.tril(jnp.ones((7, 7), bool))[None].repeat(2, 0)
    probs = attention_probs(q, k, key_mask)                     # [B, H, T, S]
    v_per_head = jnp.repeat(v, 2, axis=1)                       # head h reads KV head h // 2
    manual = jnp.einsum("bhts,bhsd->bthd", probs, v_per_head)
    np.testing.assert_allclose(manual, attend(q, k, v, key_mask), rtol=1e-5, atol=1e-6)
    assert maps.shape == (1, 2, 4, 7, 7)
    np.testing.assert_allclose(np.asarray(maps[0, 0, :, 2:, :2]), 0.0)  # padding gets nothing


def test_cli_errors_are_clear(smoke_run, capsys):
    workdir, _ = smoke_run
    assert trace_lib.main(["--workdir", str(workdir), "--problem", "1+1=?" * 40,
                           "--answer", "2"]) == 2
    assert "shorten the problem" in capsys.readouterr().err
    assert trace_lib.main(["--workdir", str(workdir), "--problem", "hello"]) == 2
    assert "give --answer" in capsys.readouterr().err
    assert trace_lib.main(["--workdir", str(workdir), "--problem", "1+2=?",
                           "--layers", "5"]) == 2
    assert "--layers" in capsys.readouterr().err
