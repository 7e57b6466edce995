"""The referee as the compiled iteration sees it: duplicates, time limits, and the host
callback that turns proposal tokens into the solver's prompts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o1jax.data.prompts import PromptFormat
from o1jax.data.tasks import split_of
from o1jax.rewards.pool import CheckPool
from o1jax.rollout.sampler import Rollout
from o1jax.selfplay import referee as referee_module
from o1jax.selfplay.problems import CODE, Bounds, judge
from o1jax.selfplay.referee import Referee, decode_question, make_referee_fn, trigram_entropy
from o1jax.tokenizer import byte_tokenizer

TOK = byte_tokenizer()


def _rollout(texts, finished, width=24):
    """Proposal rows as the sampler lays them out: a 2-token prompt, then the response."""
    rows = [TOK.encode("P", add_special_tokens=True)[-2:] + TOK.encode(t, False) +
            ([TOK.stop_ids[0]] if f else []) for t, f in zip(texts, finished)]
    tokens = np.full((len(rows), width), TOK.pad_id, np.int32)
    resp = np.zeros((len(rows), width), bool)
    for i, r in enumerate(rows):
        tokens[i, :len(r)] = r
        resp[i, 2:len(r)] = True
    return Rollout(jnp.asarray(tokens), jnp.asarray(tokens != TOK.pad_id), jnp.asarray(resp),
                   jnp.zeros(tokens.shape), jnp.asarray(resp.sum(1), jnp.int32),
                   jnp.asarray(finished), jnp.asarray(width))


def _train(q):
    assert split_of(q) == "train"
    return q


def test_duplicates_of_earlier_iterations_and_of_the_same_batch():
    seen = {"12+35"}
    referee = Referee(Bounds(), seen)
    out = referee.judge(["35+12=?", _train("21+47=?"), "47+21=?", "21+47=?", "1+"],
                        [True] * 5)
    assert [p.status for p in out] == ["duplicate", "accepted", "duplicate", "duplicate",
                                       "malformed"]
    assert referee.problem("21+47=?").answer == "68"


def test_a_check_over_its_time_limit_is_a_rejection_not_a_crash():
    with CheckPool(num_workers=1, timeout=0.5, preload=("tests.selfplay.slow_judge",)) as pool:
        referee = Referee(Bounds(), set(), timeout=0.5, pool=pool,
                          judge_fn="tests.selfplay.slow_judge:judge")
        out = referee.judge(["17+2=?", _train("12+35=?")], [True, True])
        assert [p.status for p in out] == ["timeout", "accepted"]
        assert pool.stats["timeouts"] == 1


def test_referee_callback_inside_jit():
    referee = Referee(Bounds(), set())
    times = []
    fn = jax.jit(make_referee_fn(referee, TOK, PromptFormat(max_prompt_len=12), 24,
                                 call_times=times))
    texts = [_train("12+35=?"), "import os", _train("Solve 3x+4=13"), "12+35=?", "1/0=?",
             "99+1=?"]
    v = fn(_rollout(texts, [True, True, True, True, True, False]))
    status = np.asarray(v.status)
    assert status.tolist() == [CODE[s] for s in ("accepted", "unsafe", "enormous", "duplicate",
                                                 "non_finite", "unfinished")]
    # "Solve 3x+4=13\n" with <s> is 15 tokens: it does not fit 12, so it is rejected, not cut
    prompt = np.asarray(v.tokens[0])[np.asarray(v.mask[0])]
    assert TOK.decode(prompt.tolist()) == "12+35=?\n"
    np.testing.assert_allclose(np.asarray(v.features[0]), [2, 1, np.log10(48), 0], rtol=1e-6)
    assert np.all(np.asarray(v.features[1:]) == 0)
    assert float(v.diversity[0]) == 1 and float(v.diversity[1]) == 1
    assert float(v.diversity[2]) == pytest.approx(trigram_entropy(texts), rel=1e-6)
    assert len(times) == 1 and times[0][0] <= times[0][1]   # one host call, timed
    # the accepted problem's question rides beside its prompt; the others' rows are empty
    assert [decode_question(q) for q in np.asarray(v.questions)] == ["12+35=?"] + [""] * 5


class _Pool:
    """A stand-in pool that records what it is asked to run."""

    def __init__(self):
        self.jobs = []

    def map(self, fn, args, timeout):
        self.jobs.append((fn, [a[0] for a in args], timeout))
        return [judge(*a) for a in args]


def test_the_pool_is_started_and_warmed_up_on_first_use_not_at_construction(monkeypatch):
    """Building a referee (as lowering the iteration ahead of time does) starts no process;
    its first judgement takes the pool and warms it up (untimed) once."""
    def no_default_pool():
        raise AssertionError("the default pool was taken at construction")
    monkeypatch.setattr(referee_module, "default_pool", no_default_pool)
    Referee(Bounds(), set())
    pool = _Pool()
    referee = Referee(Bounds(), set(), timeout=0.5, pool=pool)
    assert pool.jobs == []
    referee.judge([_train("12+35=?")], [True])
    referee.judge([_train("21+47=?")], [True])
    assert pool.jobs == [("o1jax.selfplay.problems:judge", ["1+2=?"], 120.0),
                         ("o1jax.selfplay.problems:judge", ["12+35=?"], 0.5),
                         ("o1jax.selfplay.problems:judge", ["21+47=?"], 0.5)]


def test_trigram_entropy():
    assert trigram_entropy(["aaaa"]) == 0.0            # one trigram, twice
    assert trigram_entropy(["abcd"]) == 1.0            # two trigrams, once each
    assert trigram_entropy([]) == 0.0


def test_picture_referee_callback_draws_registers_and_prompts():
    """Picture proposals: the accepted ones come back as the solver's prompt (placeholders and
    question, never the specification), their rendering, and a handle the reward resolves."""
    from o1jax.data import visual
    from o1jax.selfplay.referee import SCENES

    tok = byte_tokenizer(image_token=True)
    referee = Referee(Bounds(max_chars=96), set(), timeout=20.0, judge_fn=SCENES, image_size=32)
    fn = jax.jit(make_referee_fn(referee, tok, PromptFormat(max_prompt_len=64,
                                                                image_tokens=4), 208))
    a = "scene: red circle 0 1; blue square 2 3 ? red objects"
    b = "chart: 3 5 2 ? bar 1 - bar 2"
    texts = [a, "scene: red circle 9 9 ? red objects", b, a, "scene: ? circles"]
    for t in (a, b):
        assert referee.judge([t], [True])[0].status == "accepted", "pick train-split examples"
    referee.registry.clear(), referee.handles.clear(), referee.known.clear()
    v = fn(_rollout(texts, [True] * 5, width=72))
    assert np.asarray(v.status).tolist() == [CODE[s] for s in ("accepted", "out_of_range",
                                                               "accepted", "duplicate",
                                                               "empty")]
    ids = np.asarray(v.ids)
    assert ids[0] <= -2 and ids[2] <= -2 and ids[0] != ids[2] and ids[1] == ids[3] == -1
    assert referee.by_id(int(ids[0])).answer == "1" and referee.by_id(int(ids[2])).answer == "-2"
    np.testing.assert_array_equal(np.asarray(v.images[0]), visual.render(visual.parse_spec(
        "scene: red circle 0 1; blue square 2 3")))
    np.testing.assert_array_equal(np.asarray(v.images[2]),
                                  visual.render(visual.parse_spec("chart: 3 5 2")))
    assert not np.asarray(v.images[1]).any()
    prompt = np.asarray(v.tokens[0])[np.asarray(v.mask[0])].tolist()
    assert prompt[:5] == [tok.token_id("<s>")] + [tok.image_id] * 4
    assert tok.decode(prompt[5:]) == "How many red objects are in the image?\n"
    with pytest.raises(ValueError, match="no registered picture problem"):
        referee.by_id(-50)


def test_reward_finds_proposed_problems_whose_prompts_use_a_chat_template(tmp_path):
    """Defect 2: the solver's prompts rendered in the tokenizer's chat template; the reward
    callback finds each proposed problem by the question the referee hands over beside its
    prompt (never by taking the template off the prompt's text) and rewards its answer."""
    import json
    from o1jax.rewards.api import default_pool
    from o1jax.rewards.in_graph import make_reward_callback
    from o1jax.tokenizer import Tokenizer
    byte_tokenizer().save(str(tmp_path))
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config["chat_template"] = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n"
                               "{% endfor %}<|assistant|>")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    tok = Tokenizer.from_dir(str(tmp_path))
    fmt = PromptFormat(template="Q: {question}", use_chat_template=True, max_prompt_len=48)
    referee = Referee(Bounds(), set())
    questions = [_train("12+35=?"), _train("Solve 3x+4=13")]
    v = jax.jit(make_referee_fn(referee, tok, fmt, 24))(_rollout(questions, [True, True]))
    assert np.asarray(v.status).tolist() == [0, 0]
    prompts = [np.asarray(v.tokens[i])[np.asarray(v.mask[i])].tolist() for i in range(2)]
    assert tok.decode(prompts[0]).startswith("<|user|>Q: ")     # the chat template's prompt
    answers = [referee.problem(q).answer for q in questions]
    responses = [f"\\boxed{{{answers[0]}}}", f"\\boxed{{{answers[1]}0}}"]   # right, wrong
    rows = [p + tok.encode(r, add_special_tokens=False) + [tok.stop_ids[0]]
            for p, r in zip(prompts, responses)]
    width = max(map(len, rows))
    tokens = np.full((2, width), tok.pad_id, np.int32)
    resp = np.zeros((2, width), bool)
    for i, (row, p) in enumerate(zip(rows, prompts)):
        tokens[i, :len(row)] = row
        resp[i, len(p):len(row)] = True
    roll = Rollout(jnp.asarray(tokens), jnp.asarray(tokens != tok.pad_id), jnp.asarray(resp),
                   jnp.zeros(tokens.shape), jnp.asarray(resp.sum(1), jnp.int32),
                   jnp.ones(2, bool), jnp.asarray(width))
    reward_fn = make_reward_callback(
        tok, lambda i: {}, {"correctness": 1.0}, default_pool(),
        problem_example=lambda q, i: referee.problem(q).example())
    rewards, _ = jax.jit(reward_fn)(roll, v.ids, v.questions)
    assert np.asarray(rewards).tolist() == [1.0, 0.0]
