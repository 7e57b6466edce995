"""MCTS with KV caches per node: it finds the path a hand-made value function rewards, chooses
at temperature near 0 what the implementation before KV caches chose (recorded), from one pair
of compiled programs whatever the prompts."""

import jax
import numpy as np
import pytest

from o1jax import flops
from o1jax.data.prompts import PromptFormat, encode_prompt
from o1jax.rollout import SamplingConfig, pad_prompts
from o1jax.search import mcts, steps
from tests.search.test_beam import (NL, QUESTIONS, _no_b, _problems, _random_lines_policy,
                                    random_models)

# mcts.search(..., simulations=6, width=3, max_new_tokens=40, step_tokens=8, temperature=1e-5)
# before KV caches (commit 0380a43): greedy decoding for 17 moves (the depth), one newline each
OLD_CHOSEN = [[NL] * 17] * 5


def test_mcts_finds_the_path_the_value_function_rewards():
    model, params, tok = _random_lines_policy()
    examples = _problems(["?" * (i + 1) for i in range(6)])
    gen, ledger = mcts.search(model, params, examples, tok, _no_b(model), simulations=8,
                              width=4, fmt=PromptFormat(max_prompt_len=8), max_new_tokens=40,
                              step_tokens=8, temperature=1.0, batch_rows=16, seed=1)
    texts = [t[0] for t in gen.texts]
    assert all("b" not in t for t in texts) and gen.finished.sum() >= 4, texts
    assert (ledger["prefill_flops"] > 0).all() and (ledger["verifier_flops"] > 0).all()


def test_near_greedy_mcts_chooses_what_the_old_one_did_in_one_program():
    model, params, tok, verifier = random_models()
    fmt = PromptFormat(max_prompt_len=8)
    run = lambda questions: mcts.search(  # noqa: E731
        model, params, _problems(questions), tok, verifier, 6, 3, fmt, 40, 8, 1e-5,
        batch_rows=6)
    gen, ledger = run(QUESTIONS)
    assert [r[8:][m[8:]].tolist() for r, m in zip(gen.tokens, gen.mask)] == OLD_CHOSEN
    for i, q in enumerate(QUESTIONS):
        p = len(encode_prompt(_problems([q])[0], tok, fmt))
        assert ledger["prefill_flops"][i] == flops.prefill_flops(model.cfg, p)   # once
        # the root's 3 candidates and 6 nodes x 3 per move (the chosen child is the tree's),
        # each candidate one newline at most 17 + 1 tokens after the prompt
        assert 3 * 18 <= ledger["tokens"][i] <= 3 * 18 + 17 * 6 * 3 * 8
        assert ledger["decode_flops"][i] >= ledger["tokens"][i] * flops.decode_flops(
            model.cfg, p, 2)
    run(["a much longer question"])
    cfg = SamplingConfig(8, 1e-5, num_samples=3, stop_ids=tok.stop_ids + steps.step_end_ids(tok),
                         pad_id=tok.pad_id)
    start, move = mcts.make_programs(model, verifier.model, cfg, tuple(tok.stop_ids), 6, 17, 40,
                                     "value")
    # one start; a move per batch size: 2, and 1 for the last batch (one problem, one padding)
    assert start._cache_size() == 1 and move._cache_size() == 2
    # the chosen child is the tree's node, not made again: six simulations visit all 3 actions
    tokens, mask = pad_prompts([[257, 50], [257, 51, 52]], tok.pad_id, 8)
    root = start(params, verifier.params, tokens, mask, jax.random.key(0))
    child, made, prefix, _ = move(params, verifier.params, root, jax.random.key(1))
    assert not np.asarray(made).any() and (np.asarray(prefix) > 0).all()
    assert (np.asarray(child.prefix) > np.asarray(root.prefix)).all()
    # below a finished solution nothing is decoded: every node under the terminal root writes
    # no candidate, so it cannot hold the live row's decoding loop (junk before: 8 tokens each)
    done = root._replace(terminal=np.array([True, False]))
    _, made, prefix, cand_len = move(params, verifier.params, done, jax.random.key(1))
    cand_len = np.asarray(cand_len)
    assert (cand_len[0] == 0).all() and (cand_len[1] > 0).any() and not np.asarray(made)[0]


def test_more_simulations_than_the_tree_holds_is_an_error():
    model, params, tok = _random_lines_policy()
    assert mcts.max_simulations(2, 3) == 2 + 4 + 8
    with pytest.raises(ValueError, match="more than a tree of 1 actions"):
        mcts.search(model, params, [], tok, _no_b(model), 100, 1,
                    PromptFormat(max_prompt_len=8), 40, 8, 1.0)


def test_fewer_rows_keeps_the_live_roots_and_collects_the_finished():
    model, params, tok, verifier = random_models()
    fmt = PromptFormat(max_prompt_len=8)
    cfg = SamplingConfig(8, 1.0, num_samples=3, stop_ids=tok.stop_ids + steps.step_end_ids(tok),
                         pad_id=tok.pad_id)
    start, _ = mcts.make_programs(model, verifier.model, cfg, tuple(tok.stop_ids), 6, 17, 40,
                                  "value")
    prompts = [encode_prompt(e, tok, fmt) for e in _problems(["1+2", "what?", "a", "zz", "9"])]
    tokens, mask = pad_prompts(prompts, tok.pad_id, 8, 8)
    root = start(params, verifier.params, tokens, mask, jax.random.key(0))
    root = root._replace(terminal=np.array([True, False, True, True, True, False, True, True]),
                         length=root.length + np.arange(8))
    slots, chosen = np.array([10, 11, 12, 13, 14, -1, -1, -1]), {}
    live = ~np.asarray(root.terminal) & (slots >= 0)
    small, small_slots, small_live = mcts._fewer_rows(root, slots, live, chosen)
    # live problems: row 1 only (row 5 is padding): a batch of 1; rows 0, 2-4 finished
    assert small_slots.tolist() == [11] and small_live.tolist() == [True]
    assert sorted(chosen) == [10, 12, 13, 14]
    response, length = np.asarray(root.response), np.asarray(root.length)
    assert chosen[13] == response[3, :length[3]].tolist()
    for a, b in zip(jax.tree.leaves(small), jax.tree.leaves(root)):
        np.testing.assert_array_equal(np.asarray(a)[0], np.asarray(b)[1])
    assert not np.asarray(small.terminal)[0]
    # three live of eight: a batch of four, its last row a finished copy
    live3 = root._replace(terminal=np.array([False] * 3 + [True] * 5))
    four, four_slots, four_live = mcts._fewer_rows(live3, np.arange(8), ~live3.terminal, {})
    assert four_slots.tolist() == [0, 1, 2, -1] and np.asarray(four.terminal).tolist() == [
        False, False, False, True] and four_live.tolist() == [True, True, True, False]
    # five live of eight do not fit in half: unchanged
    live5 = root._replace(terminal=np.array([False] * 5 + [True] * 3))
    same, same_slots, _ = mcts._fewer_rows(live5, np.arange(8), ~live5.terminal, {})
    assert same is live5 and same_slots.tolist() == list(range(8))
