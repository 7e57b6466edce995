"""Reward functions: registry, weights, truncation, and the callback/in-graph versions."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o1jax.data import tasks
from o1jax.rewards import functions
from o1jax.rewards.in_graph import make_reward_callback, suffix_match_reward
from o1jax.rewards.api import default_pool
from o1jax.data.prompts import pad_prompts
from o1jax.rollout.sampler import Rollout
from o1jax.tokenizer import byte_tokenizer

EXAMPLES = [{"task": "arithmetic", "answer": "12", "meta": "{}"},
            {"task": "arithmetic", "answer": "7/2", "meta": "{}"},
            {"task": "countdown", "answer": "24", "meta": '{"numbers": [3, 5, 3], "target": 24}'},
            {"task": "arithmetic", "answer": "5", "meta": "{}"}]
RESPONSES = ["3*4=12\n\\boxed{12}", "\\boxed{3.5}", "\\boxed{(3+5)*3}", "\\boxed{6}"]


def test_weighted_rewards_and_truncation():
    total, metrics = functions.compute_rewards(RESPONSES, EXAMPLES, [True, True, True, False],
                                               {"correctness": 1.0, "format": 0.1})
    # the last one is right-format but truncated: no credit at all
    np.testing.assert_allclose(total, [1.1, 1.1, 1.1, 0.0])
    assert metrics["reward/correctness"] == 0.75 and metrics["reward/format"] == 0.75
    assert metrics["verifier/timeouts"] == 0


def test_plug_in_a_reward_with_one_function():
    @functions.register("short")
    def short(responses, examples, finished, pool):
        return np.array([1.0 if len(r) < 12 else 0.0 for r in responses], np.float32)
    try:
        total, m = functions.compute_rewards(RESPONSES, EXAMPLES, [True] * 4, {"short": 2.0})
        np.testing.assert_allclose(total, [0, 2, 0, 2])
    finally:
        del functions.REWARDS["short"]
    with pytest.raises(ValueError, match="unknown reward"):
        functions.compute_rewards(RESPONSES, EXAMPLES, [True] * 4, {"short": 1.0})


def _encode_responses(tok, texts, stop=True):
    ids = [tok.encode(t, add_special_tokens=False) + ([tok.stop_ids[0]] if stop else [])
           for t in texts]
    n = max(map(len, ids))
    tokens = np.full((len(ids), n + 2), tok.pad_id, np.int32)
    mask = np.zeros_like(tokens, bool)
    tokens[:, :2] = 65  # a two-token "prompt" column block
    for i, row in enumerate(ids):
        tokens[i, 2:2 + len(row)] = row
        mask[i, 2:2 + len(row)] = True
    return tokens, mask


def test_callback_inside_jit_equals_host_rewards():
    tok = byte_tokenizer()
    tokens, mask = _encode_responses(tok, RESPONSES)
    finished = np.array([True, True, True, False])
    weights = {"correctness": 1.0, "format": 0.5}
    fn = make_reward_callback(tok, lambda i: EXAMPLES[i], weights, default_pool())

    @jax.jit
    def program(tokens, mask, finished, ids):
        roll = Rollout(tokens=tokens, mask=mask, response_mask=mask, logprobs=None,
                       lengths=None, finished=finished, num_steps=None)
        rewards, metrics = fn(roll, ids)
        return rewards * 2.0, metrics

    got, metrics = program(tokens, mask, finished, np.arange(4))
    expected, m = functions.compute_rewards(RESPONSES, EXAMPLES, finished, weights)
    np.testing.assert_allclose(np.asarray(got), 2.0 * expected)
    assert float(metrics["reward/format"]) == m["reward/format"]


@pytest.mark.parametrize("mesh_shape", [(2, 2, 2), (1, 8, 1), (1, 2, 4)])
def test_callback_per_device_verifies_each_row_once(mesh_shape):
    """On a mesh the callback runs per device on its rows: the same rewards and metrics as the
    host computation over the whole batch, and every row verified exactly once."""
    from o1jax import sharding
    tok = byte_tokenizer()
    texts = [RESPONSES[i % 4] for i in range(16)]
    examples = [EXAMPLES[i % 4] for i in range(16)]
    tokens, mask = _encode_responses(tok, texts)
    finished = np.array([i % 5 != 3 for i in range(16)])
    weights = {"correctness": 1.0, "format": 0.5}
    seen = []
    fn = make_reward_callback(tok, lambda i: seen.append(i) or examples[i], weights,
                              default_pool(), mesh=sharding.make_mesh(mesh_shape))

    @jax.jit
    def program(tokens, mask, finished, ids):
        roll = Rollout(tokens=tokens, mask=mask, response_mask=mask, logprobs=None,
                       lengths=None, finished=finished, num_steps=None)
        return fn(roll, ids)

    got, metrics = program(tokens, mask, finished, np.arange(16))
    expected, m = functions.compute_rewards(texts, examples, finished, weights)
    np.testing.assert_allclose(np.asarray(got), expected)
    for k in ("reward/correctness", "reward/format", "verifier/timeouts"):
        assert float(metrics[k]) == pytest.approx(m[k]), k
    assert sorted(seen) == list(range(16))


def test_suffix_match_reward_against_python_loop():
    rng = np.random.RandomState(0)
    r, t, L = 64, 12, 3
    tokens = rng.randint(0, 4, (r, t))
    lengths = rng.randint(1, 9, r)
    start = rng.randint(0, t - 8, r)
    mask = np.zeros((r, t), bool)
    for i in range(r):
        mask[i, start[i]:start[i] + lengths[i]] = True
    finished = rng.rand(r) < 0.8
    target_len = rng.randint(1, L + 1, r)
    target = rng.randint(0, 4, (r, L))
    got = np.asarray(jax.jit(suffix_match_reward)(tokens, mask, finished, target, target_len))
    for i in range(r):
        resp = tokens[i][mask[i]].tolist()
        answer = resp[:-1]  # without the stop token
        want = target[i, :target_len[i]].tolist()
        expect = float(finished[i] and len(answer) >= len(want) and answer[-len(want):] == want)
        assert got[i] == expect, i
    assert 0 < got.sum() < r


def test_suffix_match_on_task_answers():
    tok = byte_tokenizer()
    exs = list(tasks.generate("arithmetic", "test", 4, difficulty=1))
    texts = [e["solution"] for e in exs[:2]] + ["\\boxed{-1}", exs[3]["solution"] + "x"]
    tokens, mask = _encode_responses(tok, texts)
    targets = [tok.encode(f"\\boxed{{{e['answer']}}}", add_special_tokens=False) for e in exs]
    tgt, tmask = pad_prompts(targets, 0)
    tgt = np.where(tmask, tgt, 0)
    # pad_prompts left-pads; the reward wants left-aligned targets
    aligned = np.stack([np.roll(row, -(~m).sum()) for row, m in zip(tgt, tmask)])
    got = suffix_match_reward(jnp.asarray(tokens), jnp.asarray(mask), jnp.ones(4, bool),
                              jnp.asarray(aligned), jnp.asarray(tmask.sum(1)))
    assert np.asarray(got).tolist() == [1.0, 1.0, 0.0, 0.0]


def test_code_answers_are_rewarded_by_their_tests_in_the_sandbox():
    tests = ["assert f(1) == 2", "assert f(2) == 4", "assert f(5) == 10"]
    ex = {"task": "code_functions", "answer": "", "meta": json.dumps(
        {"tests": tests, "entry_point": "f"})}
    right = "```python\ndef f(x):\n    return 2 * x\n```"
    partly = "```python\ndef f(x):\n    return x + 1 if x < 2 else 2 * x - 1\n```"  # 1 of 3
    hang = "```python\nwhile True:\n    pass\n```"
    parts, counts = functions.reward_parts([right, partly, hang, right], [ex] * 4,
                                           [True, True, True, False],
                                           ["correctness", "tests_passed"])
    np.testing.assert_allclose(parts["correctness"], [1, 0, 0, 0])
    np.testing.assert_allclose(parts["tests_passed"], [1, 1 / 3, 0, 0], atol=1e-6)
    # each distinct answer is run once for both rewards (the two right ones are the same text)
    assert counts["verifier/code/passed"] == 1 and counts["verifier/code/failed"] == 1
    assert counts.get("verifier/code/cpu", 0) + counts.get("verifier/code/timeout", 0) == 1
