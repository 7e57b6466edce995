"""Verifier training: the loss falls where the label is a known function of the prefix;
Math-Shepherd labels equal a plain loop's, continuation by continuation."""

import jax
import numpy as np

from o1jax.data.prompts import PromptFormat
from o1jax.models import Transformer, preset
from o1jax.models.transformer import value_params_from_policy
from o1jax.rollout import SamplingConfig, make_sampler, pad_prompts
from o1jax.search import strategies, verifier_training
from o1jax.search.verifier_training import Labelled
from o1jax.rewards.api import verify
from tests.test_evaluate import EXAMPLES, _answers_42


def test_value_loss_falls_when_the_label_is_a_function_of_the_prefix():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 8, size=(256, 16)).astype(np.int32)
    mask = np.ones_like(tokens, bool)
    targets = (np.cumsum(tokens == 5, axis=1) > 0).astype(np.float32)  # a 5 seen so far
    data = Labelled(tokens, mask, targets, np.ones_like(targets))
    model = Transformer(preset("tiny", vocab_size=16, max_seq_len=32), head="value")
    policy = Transformer(preset("tiny", vocab_size=16, max_seq_len=32))
    init = value_params_from_policy(policy.init(jax.random.key(0)), jax.random.key(1))
    _, losses = verifier_training.train_value(model, init, data, steps=150, lr=3e-3,
                                              batch_size=32)
    assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:10]), (losses[:3], losses[-3:])


def test_math_shepherd_labels_equal_a_plain_loop():
    """After a prompt ending in "?" the policy writes "7\\n\\boxed{42}</s>": one step end (the
    newline) before the last token. From it, K continuations; the label is the share that end
    correct."""
    model, params, tok = _answers_42("?7\n\\boxed{42}")
    g, k = 2, 3
    sampling = SamplingConfig(16, 1.0, num_samples=g, stop_ids=tok.stop_ids, pad_id=tok.pad_id)
    gen = strategies.generate(model, params, EXAMPLES, tok, sampling,
                              PromptFormat("{question}", max_prompt_len=12), 2)
    assert gen.texts[0][0] == "7\n\\boxed{42}"
    labels = verifier_training.math_shepherd_labels(model, params, EXAMPLES, tok, gen, 12, k, 16,
                                                    batch_prompts=4)
    # the plain loop: every row, every newline of its response but the last token, K samples
    want_t = np.zeros(gen.tokens.shape, np.float32)
    want_w = np.zeros(gen.tokens.shape, np.float32)
    cont = make_sampler(model, SamplingConfig(16, 1.0, num_samples=k, stop_ids=tok.stop_ids,
                                              pad_id=tok.pad_id), gather=True)
    for r in range(len(gen.tokens)):
        cols = [c for c in range(12, gen.tokens.shape[1]) if gen.mask[r, c]]
        want_t[r, cols[-1]], want_w[r, cols[-1]] = gen.correct.reshape(-1)[r], 1.0
        for c in cols[:-1]:
            if gen.tokens[r, c] != ord("\n"):
                continue
            prefix = gen.tokens[r, :c + 1][gen.mask[r, :c + 1]].tolist()
            t, m = pad_prompts([prefix], tok.pad_id)
            roll = cont(params, t, m, jax.random.key(7))
            texts = [tok.decode(roll.tokens[j][roll.response_mask[j]].tolist())
                     for j in range(k)]
            answer = EXAMPLES[r // g]["answer"]
            want_t[r, c] = np.mean([verify(x, answer) and bool(f)
                                    for x, f in zip(texts, roll.finished)])
            want_w[r, c] = 1.0
    np.testing.assert_array_equal(labels.weights, want_w)
    np.testing.assert_allclose(labels.targets, want_t)
    assert want_w.sum() == 2 * len(gen.tokens)   # a step end and the last token in every row
    assert set(np.unique(want_t[want_w > 0])) == {0.0, 1.0}
