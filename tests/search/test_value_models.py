"""Value-model checkpoints round-trip (in the policy's shapes or their own, value- or
logit-valued) and refuse another model; AUC against counting pairs."""

import itertools
import json
import math

import jax
import numpy as np
import pytest

from o1jax.models import Transformer, preset
from o1jax.models.layouts import value_params_from_policy
from o1jax.search import value_models


def test_a_saved_value_model_loads_for_its_policy_and_refuses_another(tmp_path):
    policy = Transformer(preset("tiny", vocab_size=320, max_seq_len=64))
    params = value_params_from_policy(policy.init(jax.random.key(0)), jax.random.key(1))
    value_models.save(tmp_path / "orm", "orm", policy.cfg, params, {"note": "test"})
    v = value_models.load(f"orm:{tmp_path / 'orm'}", policy)
    tokens = np.tile(np.arange(1, 9, dtype=np.int32), (3, 1))
    mask = np.ones_like(tokens, bool)
    want = np.clip(np.asarray(v.model.apply(params, tokens, np.tile(np.arange(8), (3, 1)),
                                            mask)[0])[:, -1], 0, 1)
    np.testing.assert_allclose(value_models.outcome_scores(v, tokens, mask), want, atol=1e-6)
    other = Transformer(preset("tiny", vocab_size=320, max_seq_len=64, num_layers=3))
    with pytest.raises(ValueError, match="trained for another model .*num_layers"):
        value_models.load(f"orm:{tmp_path / 'orm'}", other)
    with pytest.raises(ValueError, match="holds a orm value model"):
        value_models.load(f"prm:{tmp_path / 'orm'}", policy)
    with pytest.raises(ValueError, match="holds no value model"):
        value_models.load(f"prm:{tmp_path}", policy)
    with pytest.raises(ValueError,
                       match="expected critic, confidence, orm:PATH, prm:PATH or genrm:PATH"):
        value_models.load("orm", policy)
    with pytest.raises(ValueError, match="needs --workdir"):
        value_models.load("critic", policy)


def test_auc_counts_correct_over_wrong_pairs():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 40) / 4          # ties on purpose
    labels = rng.random(40) < 0.4
    pairs = [(1.0 if p > q else 0.5 if p == q else 0.0)
             for p, q in itertools.product(scores[labels], scores[~labels])]
    assert value_models.auc(scores, labels) == pytest.approx(np.mean(pairs))
    assert value_models.auc(scores, np.ones(40)) is None
    # within a problem: pairs of the same row only
    s = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.8]])
    c = np.array([[1, 0, 0], [1, 0, 1]])
    done = np.ones_like(c, bool)
    assert value_models.within_problem_auc(s, c, done) == pytest.approx((1 + 1 + 0 + 0.5) / 4)


def test_a_value_model_of_its_own_shapes_and_logit_output_round_trips(tmp_path):
    """Larger than its policy (other SHAPES, the policy's vocabulary and context): saved with
    both configs, loaded in its own shapes, scored through a sigmoid; a checkpoint written
    before value models had shapes of their own (no "policy", no "output") still loads."""
    policy = Transformer(preset("tiny", vocab_size=320, max_seq_len=64, num_layers=1))
    bigger = value_models.value_config(policy.cfg, "num_layers=3,hidden_size=96,mlp_dim=256")
    assert (bigger.num_layers, bigger.hidden_size, bigger.mlp_dim) == (3, 96, 256)
    assert bigger.replace(num_layers=1, hidden_size=64, mlp_dim=192) == policy.cfg
    assert value_models.value_config(policy.cfg, "policy") == policy.cfg
    assert value_models.value_config(policy.cfg, "small25m").hidden_size == 512
    assert value_models.value_config(policy.cfg, "small25m").vocab_size == 320
    for bad in ("vocab_size=9", "num_layers=two", "huge"):
        with pytest.raises(ValueError, match="expected policy, a preset"):
            value_models.value_config(policy.cfg, bad)
    model = Transformer(bigger, head="value")
    params = jax.jit(model.init)(jax.random.key(2))
    value_models.save(tmp_path / "orm", "orm", policy.cfg, params, {}, bigger, "logit")
    v = value_models.load(f"orm:{tmp_path / 'orm'}", policy)
    assert v.model.cfg == bigger and v.output == "logit"
    tokens = np.tile(np.arange(1, 9, dtype=np.int32), (3, 1))
    mask = np.ones_like(tokens, bool)
    raw = np.asarray(jax.jit(model.apply)(params, tokens, np.tile(np.arange(8), (3, 1)),
                                          mask)[0])[:, -1]
    np.testing.assert_allclose(value_models.outcome_scores(v, tokens, mask),
                               [1 / (1 + math.exp(-x)) for x in raw], atol=1e-6)
    with pytest.raises(ValueError, match="trained for another model .*num_layers"):
        value_models.load(f"orm:{tmp_path / 'orm'}", Transformer(bigger))
    with pytest.raises(ValueError, match="only its .* may differ"):
        value_models.save(tmp_path / "x", "orm", policy.cfg, params, {},
                          bigger.replace(vocab_size=512))
    # as the checkpoint of a policy in the larger shapes was written before
    meta = json.loads((tmp_path / "orm" / value_models.META).read_text())
    (tmp_path / "orm" / value_models.META).write_text(json.dumps(dict(kind="orm",
                                                                      model=meta["model"])))
    v = value_models.load(f"orm:{tmp_path / 'orm'}", Transformer(bigger))
    assert v.model.cfg == bigger and v.output == "value"
    np.testing.assert_allclose(value_models.outcome_scores(v, tokens, mask),
                               np.clip(raw, 0, 1), atol=1e-6)


def test_values_read_each_rows_own_image_as_one_forward_per_row_does():
    """G = 3 rows per picture, scored in batches of 4 (rows of different pictures in one batch,
    the last batch padded): each row's last value equals one forward of that row alone with its
    picture; ``outcome_scores`` (one batch) agrees."""
    from o1jax.models import positions_from_mask
    from o1jax.rollout import pad_prompts
    from tests.search.test_beam import vision_models
    _, _, verifier = vision_models()
    verifier = verifier._replace(output="logit")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 8, 8, 3)).astype(np.uint8)
    rows = [[257] + [259] * 4 + rng.integers(60, 120, size=rng.integers(1, 6)).tolist()
            for _ in range(9)]
    tokens, mask = pad_prompts(rows, 0)
    got = value_models.values(verifier, tokens, mask, 4, images, group=3)[:, -1]  # left-padded
    want = []
    for r, row in enumerate(rows):
        t, m = pad_prompts([row], 0)
        model, params = verifier.model, verifier.params
        out, _ = model.apply(params, t, positions_from_mask(m), m,
                             **model.image_inputs(params, images[r // 3:r // 3 + 1]))
        want.append(value_models.squash("logit", np.asarray(out[0, -1])))
    np.testing.assert_allclose(got, want, atol=3e-5)
    np.testing.assert_allclose(value_models.outcome_scores(verifier, tokens, mask, images, 3),
                               want, atol=3e-5)
    blind = value_models.outcome_scores(verifier, tokens, mask, images[::-1], group=3)
    assert np.abs(blind - got).max() > 1e-3          # another picture, another score


def test_the_confidence_verifier_needs_no_model_and_refuses_partial_solutions():
    from o1jax.search.evaluation import evaluate
    from o1jax.search.spec import EvalSpec
    from o1jax.tokenizer import byte_tokenizer
    policy = Transformer(preset("tiny", vocab_size=320))
    v = value_models.load("confidence", policy)
    assert v.kind == "confidence" and v.model is None
    for bad in ("confidence:/tmp/x", "orm", "judge"):
        with pytest.raises(ValueError, match="expected critic, confidence"):
            value_models.parse(bad)
    with pytest.raises(ValueError, match="finished samples only"):
        value_models.load("confidence", policy, steps=True)
    spec = EvalSpec(max_prompt_len=8, max_new_tokens=8, strategies=("beam",), budgets=(4,))
    example = {"question": "1+1", "answer": "2", "task": "arithmetic", "meta": "{}"}
    with pytest.raises(ValueError, match="beam score partial solutions"):
        evaluate(policy, policy.init(jax.random.key(0)), [example], byte_tokenizer(), spec, v)
