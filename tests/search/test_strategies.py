"""Selection rules on hand-built generations: a perfect verifier makes best-of-N pass@N;
majority and weighted majority equal plain loops over the blocks (ties to the block's first
answer), and equal weights make weighted majority plain majority."""

import numpy as np
import pytest

from o1jax.models import preset
from o1jax.search import strategies, value_models, voting


def _generation(correct, classes_of=None):
    n, g = correct.shape
    return strategies.Generation(
        texts=[["x"] * g for _ in range(n)], answers=[["1"] * g for _ in range(n)],
        tokens=np.zeros((n * g, 4), np.int32), mask=np.ones((n * g, 4), bool),
        correct=correct.astype(float), finished=np.ones((n, g), bool),
        lengths=np.full((n, g), 3), prompt_lengths=np.full(n, 1), seconds=1.0,
        warmup_seconds=0.0)


def test_best_of_n_with_a_perfect_verifier_is_pass_at_n():
    rng = np.random.default_rng(0)
    correct = (rng.random((40, 8)) < 0.3).astype(float)
    gen = _generation(correct)
    cfg = preset("tiny")
    for k in (1, 2, 4, 8):
        best = strategies.score("best_of_n", k, gen, cfg, verifier_scores=correct,
                                verifier_cost=value_models.forward_costs(cfg, gen))
        # k divides 8: every sample is in one block; a block is solved iff it holds a correct one
        blocks = correct.reshape(40, 8 // k, k).max(axis=2).mean(axis=1)
        np.testing.assert_allclose(best.accuracy, blocks)
    full = strategies.score("best_of_n", 8, gen, cfg, verifier_scores=correct,
                            verifier_cost=value_models.forward_costs(cfg, gen))
    want = [voting.pass_at_k(8, int(c), 8) for c in correct.sum(axis=1)]
    np.testing.assert_allclose(full.accuracy, want)
    assert (full.verifier_flops > 0).all()


def _numbered_rows(rng, shape):
    """Class ids [N][G] as group_answers numbers them: by first appearance in the row, -1 for
    no answer."""
    rows = []
    for raw in rng.integers(-1, 4, size=shape).tolist():
        first = {c: n for n, c in enumerate(dict.fromkeys(c for c in raw if c >= 0))}
        rows.append([first[c] if c >= 0 else -1 for c in raw])
    return rows


def _block_vote_reference(classes, correct, weights, k):
    """Accuracy [N] of (weighted) majority over each problem's disjoint blocks of k samples,
    by plain loops: sum each class's weights in the block, the winner the class with the most
    whose first answer comes first in the block, no answer at all counts as wrong."""
    out = []
    for row, right, w in zip(classes, correct, weights):
        blocks = len(row) // k
        total = 0.0
        for b in range(blocks):
            lo = b * k
            votes = {}
            for j in range(lo, lo + k):
                if row[j] != -1:
                    votes[row[j]] = votes.get(row[j], 0.0) + w[j]
            if votes:
                best = max(votes.values())
                pick = next(j for j in range(lo, lo + k)
                            if row[j] != -1 and votes[row[j]] == best)
                total += right[pick]
        out.append(total / blocks)
    return np.array(out)


def test_majority_and_weighted_majority_against_a_plain_loop():
    rng = np.random.default_rng(1)
    classes = _numbered_rows(rng, (60, 8))
    good = rng.integers(0, 4, size=60)   # the class that is right for each problem
    correct = np.array([[float(c == good[i]) for c in row] for i, row in enumerate(classes)])
    weights = rng.choice([0.25, 0.5, 1.0], size=(60, 8))   # exact sums: weighted ties occur
    gen = _generation(correct)
    cfg = preset("tiny")
    for k in (1, 2, 4, 8):
        plain = strategies.score("majority", k, gen, cfg, classes)
        np.testing.assert_allclose(plain.accuracy, _block_vote_reference(
            classes, correct, np.ones((60, 8)), k))
        weighted = strategies.score("weighted_majority", k, gen, cfg, classes, weights,
                                    value_models.forward_costs(cfg, gen))
        np.testing.assert_allclose(weighted.accuracy, _block_vote_reference(
            classes, correct, weights, k))
        equal = strategies.score("weighted_majority", k, gen, cfg, classes,
                                 np.full((60, 8), 0.7), value_models.forward_costs(cfg, gen))
        np.testing.assert_allclose(equal.accuracy, plain.accuracy)


def test_a_verifier_strategy_without_scores_is_an_error():
    gen = _generation(np.ones((2, 2)))
    with pytest.raises(ValueError, match="needs a verifier"):
        strategies.score("best_of_n", 2, gen, preset("tiny"))


def test_chosen_generation_lays_out_and_verifies_what_a_search_chose():
    """The closing step of beam search and MCTS, against values written out by hand: a finished
    right answer, a finished wrong one, a cut-off one (no stop token: not finished, not right)
    and an empty response."""
    from o1jax.tokenizer import byte_tokenizer
    tok = byte_tokenizer()
    stop, enc = tok.stop_ids[0], lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    examples = [{"question": q, "answer": "4", "task": "arithmetic", "meta": "{}"}
                for q in ("2+2", "1+3", "3+1", "0+4")]
    prompts = [[1, 2, 3], [4, 5], [6, 7, 8, 9, 10], [11]]
    responses = [enc("\\boxed{4}") + [stop], enc("\\boxed{5}") + [stop], enc("\\boxed{4}"), []]
    ledger = {"tokens": np.arange(4.0)}
    gen, out = strategies.chosen_generation(examples, prompts, responses, tok, 4, 8.0, ledger)
    assert [t[0] for t in gen.texts] == ["\\boxed{4}", "\\boxed{5}", "\\boxed{4}", ""]
    assert gen.finished[:, 0].tolist() == [True, True, False, False]
    assert gen.correct[:, 0].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert gen.answers[0][0] == "4" and gen.answers[1][0] == "5"
    assert gen.lengths[:, 0].tolist() == [10, 10, 9, 0]
    assert gen.prompt_lengths.tolist() == [3, 2, 5, 1] and gen.seconds == 8.0
    # the sampler's layout: prompts cut to their last 4 tokens (the first kept) and left-padded
    # to 4 columns, each response right after them, padded to the longest (10)
    pad = tok.pad_id
    cut = [[1, 2, 3], [4, 5], [6, 8, 9, 10], [11]]
    for i, (p, r) in enumerate(zip(cut, responses)):
        left, right = 4 - len(p), 10 - len(r)
        assert gen.tokens[i].tolist() == [pad] * left + p + r + [pad] * right, i
        assert gen.mask[i].tolist() == [False] * left + [True] * (len(p) + len(r)) + [False] * right
    np.testing.assert_array_equal(out["tokens"], np.arange(4.0))
    np.testing.assert_array_equal(out["prompt_tokens"], [3, 2, 5, 1])
    np.testing.assert_array_equal(out["seconds"], np.full(4, 2.0))


def test_confidence_is_each_samples_geometric_mean_token_probability():
    """``generate``'s confidence (the ``confidence`` verifier's scores) against a full forward
    pass over each sampled row, its log-softmax taken in numpy: exp(mean log p) of the tokens
    the policy wrote, stop token included, padding and prompt left out."""
    import jax
    from o1jax.data.prompts import PromptFormat
    from o1jax.models import Transformer
    from o1jax.rollout import SamplingConfig
    from o1jax.tokenizer import byte_tokenizer
    tok = byte_tokenizer()
    model = Transformer(preset("tiny", vocab_size=320, max_seq_len=64))
    params = model.init(jax.random.key(1))
    examples = [{"question": q, "answer": "4", "task": "arithmetic", "meta": "{}"}
                for q in ("2+2", "1+3", "30+1")]
    sampling = SamplingConfig(12, 1.0, num_samples=3, stop_ids=tok.stop_ids, pad_id=tok.pad_id)
    fmt = PromptFormat(max_prompt_len=8)
    gen = strategies.generate(model, params, examples, tok, sampling, fmt, batch_prompts=2)
    assert gen.confidence.shape == (3, 3)
    mask = gen.mask.astype(bool)
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    logits = np.asarray(model.apply(params, gen.tokens, positions, mask)[0], np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    for r in range(9):
        wrote = [t for t in range(8, mask.shape[1]) if mask[r, t]]
        assert len(wrote) == gen.lengths.reshape(-1)[r]
        mean = np.mean([logp[r, t - 1, gen.tokens[r, t]] for t in wrote])
        assert gen.confidence.reshape(-1)[r] == pytest.approx(np.exp(mean), rel=1e-4)
    assert len(set(np.round(gen.confidence.reshape(-1), 6))) > 1   # the rows differ
