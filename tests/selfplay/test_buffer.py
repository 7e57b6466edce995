"""The buffer and the self-play feed: the gate, first in first out, exact resume, and each
process's rows of one global batch."""

import dataclasses

import numpy as np
import pytest

from o1jax.data.prompts import PromptFormat
from o1jax.data.tasks import generate
from o1jax.selfplay import scenes, search_problems
from o1jax.selfplay.buffer import (BUFFER_ID, ProblemBuffer, SelfPlayFeed, harder_problems,
                                   proposer_demonstrations)
from o1jax.selfplay.config import SelfPlayConfig
from o1jax.selfplay.iteration import selfplay_batch_shapes
from o1jax.selfplay.problems import Bounds, judge
from o1jax.tokenizer import byte_tokenizer

TOK = byte_tokenizer()
SOURCE = list(generate("arithmetic", "train", 64, seed=0))
SP = SelfPlayConfig(enabled=True, proposals=4, examples=2, prompt_len=40, buffer_fraction=0.5,
                    gate_low=0.2, gate_high=0.8)


def _feed(sp=SP):
    return SelfPlayFeed(SOURCE, TOK, sp, batch_prompts=8, fmt=PromptFormat(max_prompt_len=16),
                        seed=0)


def _accepted(n):
    """n accepted problems (questions of the held-out partition are skipped)."""
    out = (judge(f"{10 + i}*{10 + 2 * i}=?") for i in range(100))
    return [p for p in out if p.status == "accepted"][:n]


def test_gate_decides_what_enters_the_buffer_and_every_accepted_form_is_seen():
    feed = _feed()
    problems = _accepted(4)
    assert all(p.status == "accepted" for p in problems)
    feed.record(problems + [None], np.array([0.0, 0.2, 0.5, 1.0, 0.5]), iteration=3)
    assert [e["question"] for e in feed.buffer.entries] == [p.question for p in problems[1:3]]
    assert feed.buffer.seen == {p.key for p in problems}
    assert feed.buffer.stats()["buffer/size"] == 2


def test_buffer_is_first_in_first_out():
    buf = ProblemBuffer(3)
    for i, p in enumerate(_accepted(5)):
        buf.add(p, 0.5, i)
    assert [e["iteration"] for e in buf.entries] == [2, 3, 4]


def test_restore_gives_the_same_batches_and_keeps_the_referees_set():
    a = _feed()
    a.record(_accepted(4), np.full(4, 0.5), 0)
    a.next_batch(0)
    saved = a.state()
    b = _feed()
    seen = b.buffer.seen
    b.restore(saved)
    assert seen is b.buffer.seen and seen == a.buffer.seen  # restored in place
    x, y = a.next_batch(1), b.next_batch(1)
    assert x.keys() == y.keys()
    for k in x:
        np.testing.assert_array_equal(x[k], y[k])


def test_batch_layout_and_buffer_problems():
    feed = _feed()
    b = feed.next_batch(0)
    assert b["propose_tokens"].shape == (4, 40) and b["solve_tokens"].shape == (4, 16)
    assert b["spare_tokens"].shape == (4, 16) and np.all(b["solve_ids"] >= 0)
    prompt = TOK.decode(b["propose_tokens"][0][b["propose_mask"][0]].tolist())
    assert prompt.startswith("New problem like ") and prompt.count("=?") == 2
    feed.record(_accepted(4), np.full(4, 0.5), 0)
    b = feed.next_batch(1)
    assert list(b["solve_ids"]).count(BUFFER_ID) == 2   # half of the 4 non-proposal problems
    buffered = {e["question"] for e in feed.buffer.entries}
    for row, mask, i in zip(b["solve_tokens"], b["solve_mask"], b["solve_ids"]):
        text = TOK.decode(row[mask].tolist())[:-1]
        assert (text in buffered) == (i == BUFFER_ID)


def test_the_batch_has_the_shapes_lowering_compiles_for():
    """``selfplay_batch_shapes`` (what ``lower_rl_step`` lowers) is exactly the feed's batch,
    with and without buffer problems."""
    feed = _feed()
    want = {k: (s.shape, np.dtype(s.dtype)) for k, s in
            selfplay_batch_shapes(SP, batch_prompts=8, prompt_len=16).items()}
    for i in range(2):
        b = feed.next_batch(i)
        assert {k: (v.shape, v.dtype) for k, v in b.items()} == want
        feed.record(_accepted(4), np.full(4, 0.5), i)


def test_every_process_computes_the_same_global_batch():
    """Each host builds the batch on its own and puts its devices' part: the batch must be a
    function of the seed, the iteration and the recorded results only."""
    a, b = _feed(), _feed()
    for feed in (a, b):
        feed.record(_accepted(4), np.full(4, 0.5), 0)
    x, y = a.next_batch(5), b.next_batch(5)
    for k in x:
        np.testing.assert_array_equal(x[k], y[k])
    assert not np.array_equal(x["propose_tokens"], _feed().next_batch(6)["propose_tokens"])


def test_proposer_demonstrations():
    rng = np.random.default_rng(0)
    rows = [{"question": "q", "solution": "s"}] * 400
    out = proposer_demonstrations(rows, SOURCE, SP, rng)
    demos = [r for r in out if r["question"] != "q"]
    assert 0.18 < len(demos) / len(rows) < 0.32          # sft_fraction 0.25
    questions = {ex["question"] for ex in SOURCE}
    for d in demos:
        shown = d["question"][len("New problem like "):].split("; ")
        assert len(shown) == 2 and set(shown) <= questions and d["solution"] in questions
        assert d["solution"] not in shown


def test_countdown_search_demonstrations_write_some_hard_level_problems():
    """On countdown_search (level 1) a quarter of the proposer demonstrations write a 4-number
    problem of the train partition; the arithmetic task has no harder problems."""
    source = list(generate("countdown_search", "train", 64, seed=0, difficulty=1))
    harder = harder_problems("countdown_search", 1, seed=0, num=64)
    assert len(set(harder)) == 64 and harder_problems("arithmetic", 2, seed=0) == []
    for q in harder:
        p = search_problems.judge(q)
        assert (p.status, p.level) == ("accepted", 2), q
    rows = [{"question": "q", "solution": "s"}] * 800
    demos = [r for r in proposer_demonstrations(rows, source, SP, np.random.default_rng(0),
                                                harder=harder) if r["question"] != "q"]
    hard = [d for d in demos if d["solution"] in harder]
    assert 0.17 < len(hard) / len(demos) < 0.33                   # sft_hard_fraction 0.25
    assert {d["solution"] for d in demos} <= set(harder) | {ex["question"] for ex in source}


def test_picture_demonstrations_write_hard_level_pictures_the_referee_accepts():
    """For a picture task the harder problems are specifications one level up (5-6 objects,
    4 bars) within the referee's character bound, each accepted by the scene referee at
    level 2; a count_chart seed gives both kinds."""
    harder = harder_problems("count_chart", 1, seed=0, num=64, pictures=True, max_chars=128)
    assert 20 <= len(harder) <= 64 and all(len(t) <= 128 for t in harder)
    assert {t.split(":")[0] for t in harder} == {"scene", "chart"}
    for t in harder:
        p = scenes.judge(t, Bounds(max_chars=128), held_out_ok=True)
        assert (p.status, p.level) == ("accepted", 2), t
    assert harder_problems("image_qa", 1, seed=0, pictures=True, max_chars=128) == []


def test_answer_balanced_draws_give_each_answer_its_share():
    """Eight buffered problems answer 0 and two answer 3: drawn uniformly, 3 is a fifth of the
    draws; answer-balanced, a half (each answer weighted by 1 / its count), always without
    repeats within a draw."""
    buf = ProblemBuffer(16)
    for i, p in enumerate(_accepted(10)):
        buf.add(p._replace(answer="0" if i < 8 else "3"), 0.5, i)
    rng = np.random.default_rng(0)
    share = {}
    for balance in ("none", "answer"):
        draws = [buf.draw(rng, 2, balance) for _ in range(2000)]
        assert all(a["question"] != b["question"] for a, b in draws)
        share[balance] = np.mean([e["answer"] == "3" for d in draws for e in d])
    assert abs(share["none"] - 0.2) < 0.03
    # without replacement the second draw of a pair leans to what is left, so a little under 1/2
    assert 0.42 < share["answer"] < 0.5


def test_balanced_feed_draws_buffer_rows_by_answer():
    feed = _feed(dataclasses.replace(SP, buffer_balance="answer"))
    problems = _accepted(10)
    feed.record([p._replace(answer="0" if i < 9 else "7") for i, p in enumerate(problems)],
                np.full(10, 0.5), 0)
    rare = problems[9].question
    hits = sum(rare in {TOK.decode(r[m].tolist())[:-1] for r, m in
                        zip(b["solve_tokens"], b["solve_mask"])}
               for b in (feed.next_batch(i) for i in range(1, 201)))
    # 2 of 10 entries drawn each batch: uniformly the rare one is in 20% of the batches (40 of
    # 200), answer-balanced in about 76% (half the weight on it, then 1 against 8/9)
    assert hits > 100


def test_an_unknown_balance_or_form_is_refused():
    with pytest.raises(ValueError, match="buffer_balance='answers'"):
        SelfPlayConfig(buffer_balance="answers")
    with pytest.raises(ValueError, match="proposal_form='stated': one of"):
        SelfPlayConfig(proposal_form="stated")


@pytest.mark.parametrize("form", ["listed", "expression"])
def test_demonstrations_that_state_a_solution(form):
    """With a ``proposal_form`` that states a solution every demonstration writes its problem
    with a solution in place of the target, which the referee judges back to a train problem
    of its level."""
    source = list(generate("countdown_search", "train", 64, seed=0, difficulty=1))
    harder = harder_problems("countdown_search", 1, seed=0, num=64)
    sp = dataclasses.replace(SP, proposal_form=form)
    rows = [{"question": "q", "solution": "s"}] * 200
    demos = [r for r in proposer_demonstrations(rows, source, sp, np.random.default_rng(0),
                                                harder=harder) if r["question"] != "q"]
    judged = [search_problems.judge(d["solution"], Bounds(max_chars=72)) for d in demos]
    assert {p.status for p in judged} == {"accepted"}
    assert {p.question for p in judged} <= set(harder) | {ex["question"] for ex in source}
    assert {p.level for p in judged} == {1, 2}
    assert not any(d["solution"] in harder or d["solution"] == p.question
                   for d, p in zip(demos, judged))
