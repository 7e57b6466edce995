"""Held-out evaluation end to end on a policy whose answer is known by construction: its layers
are switched off and its head maps each token of "\\n\\boxed{42}" to the next one, so it writes
``\\boxed{42}</s>`` after any prompt. Accuracy must be the share of examples whose answer is 42."""

import json

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
import pytest

from o1jax.evaluation import evaluate, evaluate_stage, majority_choice
from o1jax.experiment import Experiment
from o1jax.models import Transformer, preset
from o1jax.tokenizer import byte_tokenizer

CHAIN = "\n\\boxed{42}"


def _answers_42():
    tok = byte_tokenizer()
    model = Transformer(preset("tiny", vocab_size=320, max_seq_len=64, tie_embeddings=False))
    params = model.init(jax.random.key(0))
    layers = dict(params["layers"], wo=jnp.zeros_like(params["layers"]["wo"]),
                  w_down=jnp.zeros_like(params["layers"]["w_down"]))
    ids = [tok.encode(ch, add_special_tokens=False)[0] for ch in CHAIN] + [tok.stop_ids[0]]
    d = params["embed"].shape[1]
    basis = np.linalg.qr(np.random.RandomState(0).randn(d, len(ids)))[0].T  # orthonormal rows
    embed = np.asarray(params["embed"]).copy()
    head = np.zeros((d, 320), np.float32)
    for i, (a, b) in enumerate(zip(ids[:-1], ids[1:])):
        embed[a] = basis[i]
        head[:, b] = 10.0 * basis[i]   # logit margin 10 * sqrt(d) = 80 nats
    return model, dict(params, layers=layers, embed=jnp.asarray(embed),
                       lm_head=jnp.asarray(head)), tok


@pytest.fixture(scope="module")
def answers_42():
    return _answers_42()


EXAMPLES = [{"question": f"{a}+{b}=?", "answer": str(a + b), "task": "arithmetic", "meta": "{}"}
            for a, b in [(40, 2), (1, 1), (21, 21), (6, 7), (30, 12)]]


def test_greedy_maj_and_pass_accuracy_of_a_known_policy(answers_42):
    model, params, tok = answers_42
    out = evaluate(model, params, EXAMPLES, tok, max_prompt_len=12, max_new_tokens=16,
                   maj_k=4, batch_prompts=2)   # 5 examples in batches of 2: a ragged last batch
    assert out["num_examples"] == 5
    assert out["greedy_accuracy"] == pytest.approx(3 / 5)
    assert out["maj4_accuracy"] == pytest.approx(3 / 5)
    assert out["pass4_accuracy"] == pytest.approx(3 / 5)
    assert out["mean_sample_accuracy"] == pytest.approx(3 / 5)


def test_majority_vote_counts_finished_answers_only():
    texts = ["\\boxed{3}", "\\boxed{5}", "\\boxed{5}", "\\boxed{3}", "\\boxed{3}", "no answer"]
    assert majority_choice(texts, [True] * 6) == 0
    assert majority_choice(texts, [False, True, True, False, False, True]) == 1
    assert majority_choice(["no idea here", "still thinking about it"], [True, True]) is None


def test_evaluate_stage_evaluates_once_and_reuses_the_file(answers_42, tmp_path):
    import ml_collections
    model, params, tok = answers_42
    cfg = ml_collections.ConfigDict({
        "seed": 0, "data": {"max_prompt_len": 12, "template": "{question}\n"},
        "eval": {"num_examples": 4, "max_new_tokens": 16, "temperature": 1.0,
                 "batch_prompts": 4}})
    test = [dict(e, meta=e["meta"].encode()) for e in EXAMPLES]  # rows as TFDS stores them
    exp = Experiment(cfg, epath.Path(tmp_path), None, tok, model, {"test": test}, None)
    first = evaluate_stage(exp, "rl", params, 2, step=5)
    assert first["num_examples"] == 4 and first["greedy_accuracy"] == pytest.approx(2 / 4)
    assert json.loads((tmp_path / "eval_rl.json").read_text()) == first
    (tmp_path / "eval_rl.json").write_text(json.dumps({"greedy_accuracy": 0.123, "step": 5}))
    assert evaluate_stage(exp, "rl", params, 2, step=5) == {"greedy_accuracy": 0.123, "step": 5}
    # a run resumed to train longer evaluates its new policy
    assert evaluate_stage(exp, "rl", params, 2, step=8) == dict(first, step=8)
