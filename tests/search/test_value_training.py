"""Value-model training: the loss falls where the label is a known function of the prefix;
Math-Shepherd labels equal a plain loop's, continuation by continuation, on a policy whose
continuations disagree."""

import jax
import jax.numpy as jnp
import numpy as np

from o1jax.data.prompts import PromptFormat
from o1jax.models import Transformer, preset
from o1jax.models.transformer import value_params_from_policy
from o1jax.rollout import SamplingConfig
from o1jax.search import strategies, value_training
from o1jax.search.value_training import Labelled
from o1jax.rewards.api import verify
from o1jax.tokenizer import byte_tokenizer
from tests.test_evaluate import EXAMPLES


def test_value_loss_falls_when_the_label_is_a_function_of_the_prefix():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 8, size=(256, 16)).astype(np.int32)
    mask = np.ones_like(tokens, bool)
    targets = (np.cumsum(tokens == 5, axis=1) > 0).astype(np.float32)  # a 5 seen so far
    data = Labelled(tokens, mask, targets, np.ones_like(targets))
    model = Transformer(preset("tiny", vocab_size=16, max_seq_len=32), head="value")
    policy = Transformer(preset("tiny", vocab_size=16, max_seq_len=32))
    init = value_params_from_policy(policy.init(jax.random.key(0)), jax.random.key(1))
    _, losses = value_training.train_value(model, init, data, steps=150, lr=3e-3,
                                           batch_size=32)
    assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:10]), (losses[:3], losses[-3:])


def _branching_policy():
    """A bigram policy (layers off, orthonormal embeddings, the head rigged per token): after
    "?" it writes "7\\n\\boxed{4", then "2" or "1" with probability 1/2 each, then "}</s>".
    A solution's one step end (the newline) is followed by continuations that disagree."""
    tok = byte_tokenizer()
    model = Transformer(preset("tiny", vocab_size=320, max_seq_len=64, tie_embeddings=False))
    params = model.init(jax.random.key(0))
    layers = dict(params["layers"], wo=jnp.zeros_like(params["layers"]["wo"]),
                  w_down=jnp.zeros_like(params["layers"]["w_down"]))
    byte = lambda ch: tok.encode(ch, add_special_tokens=False)[0]  # noqa: E731
    chain = "?7\n\\boxed{4"
    nexts = {byte(a): [byte(b)] for a, b in zip(chain, chain[1:])}
    nexts[byte("4")] = [byte("2"), byte("1")]
    nexts[byte("2")] = nexts[byte("1")] = [byte("}")]
    nexts[byte("}")] = [tok.stop_ids[0]]
    d = params["embed"].shape[1]
    basis = np.linalg.qr(np.random.RandomState(0).randn(d, len(nexts)))[0].T
    embed = np.asarray(params["embed"]).copy()
    head = np.zeros((d, 320), np.float32)
    for i, (a, bs) in enumerate(nexts.items()):
        embed[a] = basis[i]
        for b in bs:
            head[:, b] += 10.0 * basis[i]   # equal logits for a branch, 80 nats above the rest
    return model, dict(params, layers=layers, embed=jnp.asarray(embed),
                       lm_head=jnp.asarray(head)), tok


def test_math_shepherd_labels_equal_a_plain_loop(monkeypatch):
    """From each solution's step end (its newline, found on the decoded text) K continuations
    are drawn; half of them on average write 42. The plain loop recomputes every label from the
    continuations the labeller drew (recorded as they leave the sampler): K per step end, each
    checked, averaged; the labels must be fractions strictly between 0 and 1 for some rows
    (the K continuations of a prefix drawn with keys of their own)."""
    model, params, tok = _branching_policy()
    k = 8
    sampling = SamplingConfig(16, 1.0, num_samples=1, stop_ids=tok.stop_ids, pad_id=tok.pad_id)
    gen = strategies.generate(model, params, EXAMPLES, tok, sampling,
                              PromptFormat("{question}", max_prompt_len=12), 2)
    assert {t[0] for t in gen.texts} <= {"7\n\\boxed{42}", "7\n\\boxed{41}"}
    drawn = []
    generate = strategies.generate

    def recording(*args, **kw):
        out = generate(*args, **kw)
        drawn.append((kw["prompts"], out))
        return out
    monkeypatch.setattr(strategies, "generate", recording)
    labels = value_training.math_shepherd_labels(model, params, EXAMPLES, tok, gen, 12, k, 16,
                                                 batch_prompts=4)
    continuations = {}
    for prompts, out in drawn:
        for prefix, texts, finished in zip(prompts, out.texts, out.finished):
            continuations.setdefault(tuple(prefix), []).append((texts, finished))
    want_t = np.zeros(gen.tokens.shape, np.float32)
    want_w = np.zeros(gen.tokens.shape, np.float32)
    for r in range(len(gen.tokens)):
        cols = [c for c in range(12, gen.tokens.shape[1]) if gen.mask[r, c]]
        want_t[r, cols[-1]], want_w[r, cols[-1]] = gen.correct[r, 0], 1.0
        for c in cols[:-1]:
            if "\n" not in tok.decode([int(gen.tokens[r, c])]):
                continue
            prefix = gen.tokens[r, :c + 1][gen.mask[r, :c + 1]].tolist()
            [(texts, finished)] = continuations.pop(tuple(prefix))   # drawn once per step end
            assert len(texts) == k
            want_t[r, c] = np.mean([verify(x, EXAMPLES[r]["answer"]) and bool(f)
                                    for x, f in zip(texts, finished)])
            want_w[r, c] = 1.0
    assert not continuations   # no continuation drawn from anywhere else
    np.testing.assert_array_equal(labels.weights, want_w)
    np.testing.assert_allclose(labels.targets, want_t)
    assert want_w.sum() == 2 * len(gen.tokens)   # a step end and the last token in every row
    steps = labels.targets[(labels.weights > 0) & (gen.tokens != tok.stop_ids[0])]
    np.testing.assert_allclose(steps * k, np.round(steps * k))   # shares of K
    assert ((steps > 0) & (steps < 1)).any(), steps
