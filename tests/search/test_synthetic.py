"""Synthetic rows for verifiers. Slips: each copy is a sampled search's valid prefix up to a
move line with exactly one digit changed, cut there; its labels are the replay's (a plain
loop's), and on Countdown the slipped line is always invalid. Answer swaps: the other outcome's
answer in the box, checked again by the answer checker."""

import itertools
import json

import numpy as np
import pytest

from o1jax.data import search_tasks
from o1jax.search import synthetic, value_training
from o1jax.tokenizer import byte_tokenizer
from tests.search.test_value_training import CASES, _generation, _replayed_labels


def test_slip_line_changes_one_digit_of_the_line_and_cuts_after_it():
    rng = np.random.default_rng(0)
    text = "12-7=5 (3 5)\n5*3=15 dead\nrest"
    for _ in range(50):
        out = synthetic.slip_line(text, 13, 24, rng)
        assert out.endswith("\n") and out[:13] == text[:13] and len(out) == 25
        diff = [i for i in range(24) if out[i] != text[i]]
        assert len(diff) == 1 and 13 <= diff[0] < 24 and out[diff[0]].isdigit()
    with pytest.raises(ValueError, match="no digit"):
        synthetic.slip_line("back (x)\n", 0, 8, rng)


def test_slipped_copies_are_valid_prefixes_with_one_slip_labelled_by_the_replay():
    tok, p, copies = byte_tokenizer(), 32, 3
    gen, _ = _generation(tok, CASES, 2, p)
    problems = [c[0] for c in CASES[::2]]
    got = synthetic.slipped_generation(problems, tok, gen, p, copies, seed=1)
    assert got.correct.shape == (len(problems), 2 * copies) and not got.correct.any()
    labels = value_training.exact_labels(problems, tok, got, p, "valid")
    empty = 0
    for r, case in enumerate(CASES):
        meta, original = json.loads(case[0]["meta"]), case[1]
        replayed = value_training.REPLAYS[case[0]["task"]](meta, original)
        prefix = itertools.takewhile(lambda s: s.valid, replayed)
        can_slip = any(s.kind == "move" for s in prefix)
        for k in range(copies):
            row = r * copies + k
            copy = got.texts[row // (2 * copies)][row % (2 * copies)]
            assert bool(copy) == can_slip, original
            if not copy:   # no valid move line to slip (an empty response, a first-line slip)
                assert labels.weights[row].sum() == 0
                empty += 1
                continue
            diff = [i for i in range(len(copy) - 1) if copy[i] != original[i]]
            assert len(diff) == 1 and original[diff[0]].isdigit() and copy[diff[0]].isdigit()
            assert original[len(copy) - 1] == "\n" or len(copy) - 1 == len(original)
            ids = tok.encode(copy, add_special_tokens=False)
            want = _replayed_labels((case[0], copy, False, 0, None), tok, ids, "valid")
            columns = np.flatnonzero(labels.weights[row])
            assert [(c - p, float(labels.targets[row, c])) for c in columns] == want
            if case[0]["task"] == "countdown_search":   # any changed digit breaks the line
                assert not search_tasks.replay(meta["numbers"], meta["target"], copy)[-1].valid
                assert want[-1][1] == 0.0 and all(y == 1.0 for _, y in want[:-1])
    assert 0 < empty < len(CASES) * copies


def test_concat_pads_rows_to_one_width():
    a = value_training.Labelled(np.ones((2, 3), np.int32), np.ones((2, 3), bool),
                                np.ones((2, 3), np.float32), np.ones((2, 3), np.float32))
    b = value_training.Labelled(*(np.asarray(x)[:1, :2] for x in a[:4]))
    c = synthetic.concat(a, b, pad_id=7)
    assert c.tokens.shape == (3, 3) and c.tokens[2].tolist() == [1, 1, 7]
    assert c.mask[2].tolist() == [True, True, False] and c.weights[2, 2] == 0
    with pytest.raises(ValueError, match="text rows"):
        synthetic.concat(a._replace(images=np.zeros((2, 4, 4, 3), np.uint8)), b, pad_id=7)


def test_answer_swaps_box_the_other_outcomes_answer_and_are_checked_again():
    tok, p = byte_tokenizer(), 32
    cases = [CASES[0], CASES[2]]                      # one Countdown problem: right, wrong
    gen, _ = _generation(tok, cases, 2, p)
    gen = gen._replace(answers=[["(7*3)+12", "19+3"]])
    got = synthetic.answer_swaps([cases[0][0]], tok, gen, p, copies=2, seed=0)
    assert got.texts == [[CASES[0][1].replace("{(7*3)+12}", "{19+3}")] * 2 +
                         [CASES[2][1].replace("{19+3}", "{(7*3)+12}")] * 2]
    assert got.correct.tolist() == [[0, 0, 1, 1]] and got.finished.all()
    ids = tok.encode(got.texts[0][2], add_special_tokens=False) + [tok.stop_ids[0]]
    assert got.tokens[2, p:p + len(ids)].tolist() == ids and got.mask[2].sum() == \
        got.mask[2, :p].sum() + len(ids)
    labels = synthetic.labelled_rows([cases[0][0]], tok, gen, p, np.array([True]), swaps=2)
    assert (labels.targets[2][labels.weights[2] > 0] == 1).all()
    assert (labels.targets[0][labels.weights[0] > 0] == 0).all()
    none = synthetic.labelled_rows([cases[0][0]], tok, gen, p, np.array([False]), swaps=2)
    assert len(none.tokens) == 0
    # one distinct answer: nothing to swap
    same = synthetic.answer_swaps([cases[0][0]], tok, gen._replace(
        answers=[["19+3", "19+3"]]), p, copies=1)
    assert same.texts == [["", ""]] and not same.finished.any()
