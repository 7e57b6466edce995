"""The GenRM's rows checked against the answer checker (o1jax/rewards/countdown.py) on random
answers, its check texts by hand, and a tiny GenRM trained on rows whose verdict is learnable in
a few steps, scored through the greedy sampler."""

import random
import re
from collections import Counter
from fractions import Fraction

import jax
import numpy as np
import pytest

from o1jax.models.config import ModelConfig
from o1jax.models.transformer import Transformer
from o1jax.rewards.countdown import countdown_score
from o1jax.rewards.parsing import ParseError, parse_expression
from o1jax.search import genrm
from o1jax.sft import fit
from o1jax.tokenizer import byte_tokenizer


def _fractions_cancel(leaves, steps) -> bool:
    """Whether some value on the way is a fraction while the answer is an integer."""
    values = [Fraction(n) for n in leaves]
    for a, op, b in steps:
        values.append(genrm._apply(values[a], op, values[b]))
    return values[-1] is not None and values[-1].denominator == 1 and any(
        v is not None and v.denominator != 1 for v in values)


def test_synthetic_values_agree_with_the_answer_checker():
    """A row's value is the answer's value under the answer checker's own parser where the
    checker accepts its numbers, else x."""
    rng, values = random.Random(0), set()
    for i in range(2000):
        row = genrm.synthetic_example(rng, 1 + i % 2)
        shown, answer = row["question"].split("\n")
        numbers = [int(n) for n in shown.removeprefix("Use ").split(", ")]
        leaves = [int(n) for n in re.findall(r"\d+", answer)]
        if Counter(leaves) - Counter(numbers):          # a number not given, or given once
            assert row["value"] == "x" and "-\n=x" in row["solution"]
            assert countdown_score(f"\\boxed{{{answer}}}", numbers, 10 ** 9) == 0.0
            continue
        try:
            value = parse_expression(answer)
        except ParseError:                             # division by zero
            value = None
        if value is not None and value.is_integer:
            if not _fractions_cancel(leaves, genrm._steps_of(answer, leaves)):
                assert row["value"] == str(int(value)), row
        else:
            assert row["value"] == "x", row
        values.add(row["value"])
        assert row["solution"].endswith("\n=" + row["value"])
    assert len(values) > 50


def test_check_texts():
    steps = genrm._steps_of("19+(8-2)", [19, 8, 2])
    assert genrm.check_text([2, 8, 19], [19, 8, 2], steps) == "19+ 8+ 2+\n8-2=6\n19+6=25\n=25"
    # a number not given, or a given one twice, ends the check
    assert genrm.check_text([2, 8, 19], [19, 9, 2], []) == "19+ 9-\n=x"
    assert genrm.check_text([2, 8, 19], [19, 19], []) == "19+ 19-\n=x"
    # operations innermost first, left before right; fractions are x, and stay x
    assert genrm._steps_of("((7*3)+12)-(4/2)", [7, 3, 12, 4, 2]) == [
        (0, "*", 1), (5, "+", 2), (3, "/", 4), (6, "-", 7)]
    assert genrm.check_text([2, 3, 19], [19, 2, 3], genrm._steps_of("(19/2)*3", [19, 2, 3])
                            ).endswith("19/2=x\nx*3=x\n=x")


def test_check_tasks_refuses_other_tasks():
    genrm.check_tasks([{"task": "countdown_search"}])
    with pytest.raises(ValueError, match="checks countdown_search answers, not gsm8k"):
        genrm.check_tasks([{"task": "countdown_search"}, {"task": "gsm8k"}])


def test_a_tiny_genrm_learns_a_value_and_scores_answers():
    """Rows whose value is 2 exactly when the answer is 1+1: a few steps teach it, and a score
    is the probability of the target after the check's last "=" (0 for no answer or one too
    long)."""
    tok = byte_tokenizer()
    cfg = ModelConfig(vocab_size=320, hidden_size=32, num_layers=1, num_heads=2,
                      num_kv_heads=1, head_dim=16, mlp_dim=64, max_seq_len=genrm.MAX_ROW)
    model = Transformer(cfg, head="policy", mesh=None)
    rng = random.Random(0)

    def rows(_):
        out = []
        for _ in range(16):
            good = rng.random() < 0.5
            answer = "1+1" if good else rng.choice(["2*3", "7-5", "(1+1)*2", "9/3"])
            out.append({"question": genrm.prompt_text("Use 1, 1", answer),
                        "solution": f"{answer}\n={2 if good else 7}"})
        return out

    params, losses = fit(model, model.init(jax.random.key(0)), rows, tok, genrm.FORMAT, 32,
                         steps=120, lr=1e-2, warmup=10)
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    answers = [["1+1", "2*3", None], ["7-5", "1" * (genrm.MAX_ANSWER + 1), "1+1"]]
    s, cost = genrm.scores(model, params, tok, ["Use 1, 1 to make 2"] * 2, answers, batch=4)
    assert s.shape == cost.shape == (2, 3) and ((s >= 0) & (s <= 1)).all()
    assert s[0, 2] == s[1, 1] == cost[0, 2] == cost[1, 1] == 0     # nothing checked
    assert (cost[[0, 0, 1, 1], [0, 1, 0, 2]] > 0).all()
    assert min(s[0, 0], s[1, 2]) > 0.8 and max(s[0, 1], s[1, 0]) < 0.2
    long = "Use " + ", ".join(["1"] * 26) + " to make 2"     # its prompt leaves no room
    assert genrm.scores(model, params, tok, [long], [["1+1"]])[0].tolist() == [[0.0]]
    with pytest.raises(ValueError, match="is not 'Use A, B, ... to make T'"):
        genrm.scores(model, params, tok, ["What is 1+1?"], [["2"]])
