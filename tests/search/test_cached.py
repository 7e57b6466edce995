"""The search rows' caches: copying rows by broadcast equals taking them by index; a step
decoded in some rows only (the others left out of its batch) continues as a full forward does."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o1jax.rollout import SamplingConfig, decode_params, pad_prompts
from o1jax.search import cached
from tests.search.test_beam import NL, assert_rows_continue_the_sequences, random_models


def test_repeat_rows_equals_take_rows_of_the_repeated_indices():
    model, params, tok, verifier = random_models()
    tokens, mask = pad_prompts([[257, 50], [257, 51, 52], [257]], tok.pad_id, 8)
    rows = cached.start(model, decode_params(model, params), verifier.model,
                        decode_params(verifier.model, verifier.params), tokens, mask, 24,
                        SamplingConfig(8, 1.0, pad_id=tok.pad_id), "value", 1)
    got = cached.repeat_rows(model, verifier.model, rows, 4)
    want = cached.take_rows(rows, jnp.repeat(jnp.arange(3), 4))
    assert got.logp.shape[0] == 12
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # not a copy of row 0 everywhere: the three prompts' caches differ
    assert not np.array_equal(np.asarray(got.policy["mask"][0]), np.asarray(got.policy["mask"][4]))


@pytest.mark.parametrize("active", [[1, 6], [0, 2, 5], [0, 1, 2, 4, 5, 7]])
def test_a_step_of_some_rows_then_of_all_continues_as_a_full_forward_does(active):
    """Rows 8, a first step in the ``active`` ones only (2 and 3 decode in a batch of half the
    rows from the start, 2 then in a quarter; 6 in all 8 until rows end), then a step in every
    row: each row's log-probs and value score after both steps equal one forward of its whole
    sequence (rows taken out of the batch and put back included), and a row that took no part
    in the first step wrote nothing in it."""
    model, params, tok, verifier = random_models()
    vmodel, vparams = verifier.model, verifier.params
    cfg = SamplingConfig(6, 1.0, stop_ids=(NL, 258), pad_id=tok.pad_id)
    ends = jnp.asarray(cfg.stop_ids)
    prompts = [[257, 50 + i] + [60 + i] * (i % 3) for i in range(4)]
    tokens, mask = pad_prompts(prompts, tok.pad_id, 6)
    dp, dv = decode_params(model, params), decode_params(vmodel, vparams)
    on = jnp.zeros(8, bool).at[jnp.asarray(active)].set(True)

    @jax.jit
    def two_steps(tokens, mask):
        rows = cached.start(model, dp, vmodel, dv, tokens, mask, 24, cfg, "value", 2)
        rows, first = cached.extend(model, dp, vmodel, dv, rows, on, 6, jax.random.key(0), cfg,
                                    ends, ends, "value")
        rows, second = cached.extend(model, dp, vmodel, dv, rows, jnp.ones(8, bool), 6,
                                     jax.random.key(1), cfg, ends, ends, "value")
        return rows, first, second

    rows, first, second = two_steps(tokens, mask)
    length = np.asarray(first.length)
    assert (length[np.asarray(on)] > 0).all() and (length[~np.asarray(on)] == 0).all()
    assert (np.asarray(first.tokens)[~np.asarray(on)] == tok.pad_id).all()
    seqs = [list(t[m]) for t, m in zip(tokens, mask) for _ in range(2)]
    seqs = [q + first.tokens[i, :length[i]].tolist() + second.tokens[i, :second.length[i]].tolist()
            for i, q in enumerate(seqs)]
    assert_rows_continue_the_sequences(rows, seqs, model, params, verifier, tok.pad_id)


def test_a_node_prefix_with_one_step_written_in_equals_that_candidates_whole_cache():
    """MCTS's compact node: the aligned prefix held once plus each candidate's step slots
    (``step_slots``), joined (``with_step``), gives back the candidate's cache as ``extend``
    left it, in both models (k, v, mask, positions)."""
    model, params, tok, verifier = random_models()
    vmodel, dp, dv = verifier.model, decode_params(model, params), decode_params(
        verifier.model, verifier.params)
    cfg = SamplingConfig(6, 1.0, stop_ids=(NL, 258), pad_id=tok.pad_id)
    ends, k, t, s = jnp.asarray(cfg.stop_ids), 3, 24, 6
    tokens, mask = pad_prompts([[257, 50], [257, 51, 52, 53]], tok.pad_id, 6)
    rows = cached.align(model, vmodel, cached.start(model, dp, vmodel, dv, tokens, mask, t, cfg,
                                                    "value", 1), t - s)
    out, step = cached.extend(model, dp, vmodel, dv, cached.repeat_rows(model, vmodel, rows, k),
                              jnp.ones(2 * k, bool), s, jax.random.key(0), cfg, ends, ends,
                              "value")
    assert int(step.length.max()) > 1
    for name, m in (("policy", model), ("value", vmodel)):
        steps = cached.step_slots(getattr(out, name), m, k, t - s)
        prefix = cached.rows_first(getattr(rows, name))
        for c in range(k):
            got = cached.with_step(prefix, jax.tree.map(lambda a: a[:, c], steps), m, t - s)
            want = cached.take_rows(out, jnp.arange(2) * k + c)
            for leaf in ("k", "v", "mask", "positions"):
                for a, b in zip(jax.tree.leaves(got[leaf]),
                                jax.tree.leaves(getattr(want, name)[leaf])):
                    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
