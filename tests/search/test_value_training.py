"""Value-model training: the loss falls where the label is a known function of the prefix;
Math-Shepherd labels equal a plain loop's, continuation by continuation, on a policy whose
continuations disagree; exact step labels (solvable; no slip so far) equal the replay of each
step end's complete lines, on hand-written searches and with tokens that merge a newline with
its neighbours; the pairwise loss equals a loop over right/wrong pairs."""

import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tokenizers
from tokenizers import decoders, models, pre_tokenizers

from o1jax import tokenizer as tokenizer_lib
from o1jax.data import search_tasks, sudoku
from o1jax.data.prompts import PromptFormat
from o1jax.models import Transformer, preset
from o1jax.models import positions_from_mask, value_params_from_policy
from o1jax.rollout import SamplingConfig
from o1jax.search import strategies, value_models, value_training
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



def test_value_training_learns_a_label_only_the_picture_holds():
    """Rows alike in their tokens, labelled 1 where their picture is bright and 0 where dark:
    only a model that reads each row's image can fit it (the labels' variance is 0.25)."""
    from tests.search.test_beam import vision_models
    _, _, verifier = vision_models()
    rng = np.random.default_rng(0)
    bright = rng.integers(0, 2, 128)
    images = np.where(bright[:, None, None, None], 200, 40) + rng.integers(
        0, 40, (128, 8, 8, 3))
    tokens = np.tile(np.asarray([[257] + [259] * 4 + [72, 63]], np.int32), (128, 1))
    targets = np.repeat(bright[:, None], tokens.shape[1], 1).astype(np.float32)
    weights = np.zeros_like(targets)
    weights[:, -1] = 1.0
    data = Labelled(tokens, np.ones_like(tokens, bool), targets, weights,
                    images.astype(np.uint8))
    start = jax.tree.map(jnp.copy, verifier.params)      # train_value donates its params
    _, losses = value_training.train_value(verifier.model, start, data, steps=120,
                                           lr=3e-3, batch_size=32)
    assert np.mean(losses[-10:]) < 0.05, (losses[:3], losses[-3:])
    blind = data._replace(images=np.full_like(data.images, 120))     # the same grey for all
    _, losses = value_training.train_value(verifier.model, verifier.params, blind, steps=120,
                                           lr=3e-3, batch_size=32)
    assert np.mean(losses[-10:]) > 0.15, losses[-3:]


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


COUNTDOWN = {"task": "countdown_search", "question": "Use 12, 3, 7 to make 33", "answer": "33",
             "meta": json.dumps({"numbers": [12, 3, 7], "target": 33})}
SUDOKU = {"task": "sudoku", "question": "Sudoku 4x4: ...4/...2/2..3/.42.",
          "answer": "1234/4312/2143/3421",
          "meta": json.dumps({"puzzle": "...4/...2/2..3/.42.", "size": 4})}
# (problem, response, finished, outcome, the label of each step end before the last token, with
# one token per character: whether the state the line leads to can still be solved, by hand)
CASES = [
    (COUNTDOWN, "7*3=21 (12 21)\n21+12=33 goal\n\\boxed{(7*3)+12}", True, 1, [1, 1]),
    (COUNTDOWN, "12-7=5 (3 5)\n5*3=15 dead\n5+3=8 dead\nback (3 7 12)\n7*3=21 (12 21)\n"
     "21+12=33 goal\n\\boxed{(7*3)+12}", True, 1, [0, 0, 0, 1, 1, 1]),
    (COUNTDOWN, "12+7=19 (3 19)\n19+3=22 dead\n\\boxed{19+3}", True, 0, [0, 0]),
    # a wrong result, a wrong state, a back-up off the path, a valid move, stray text, a blank
    (COUNTDOWN, "12*7=85 (3 85)\n7*3=21 (3 21)\nback (3 5)\n7*3=21 (12 21)\nhmm\n\n\\boxed{12}",
     True, 0, [0, 0, 0, 1, 0, 0]),
    (COUNTDOWN, "12-7=5 (3 5)\n5*3=1", False, 0, [0]),            # cut off by the budget
    (COUNTDOWN, "", True, 0, []),
    (SUDOKU, "...4/3..2/2..3/.42. open\n...4/3..2/2..3/.421 dead\n...4/...2/2..3/.42. back\n"
     "...4/4..2/2..3/.42. open\n..34/4..2/2..3/.42. open\n..34/4..2/2..3/342. open\n"
     "..34/4..2/21.3/342. open\n..34/4..2/21.3/3421 open\n..34/4.12/21.3/3421 open\n"
     ".234/4.12/21.3/3421 open\n.234/4.12/2143/3421 open\n1234/4.12/2143/3421 open\n"
     "1234/4312/2143/3421 goal\n\\boxed{1234/4312/2143/3421}", True, 1, [0, 0] + [1] * 11),
    # a digit that clashes, a valid move, a back-up to the puzzle, a line that fills no blank
    (SUDOKU, "4..4/...2/2..3/.42. open\n...4/4..2/2..3/.42. open\n...4/...2/2..3/.42. back\n"
     "...4/...2/2..3/.42. open\n\\boxed{1234/4312/2143/3421}", True, 0, [0, 1, 1, 0]),
]


def _merging_tokenizer():
    """A byte-level BPE whose merges put a newline inside longer tokens: ")\\n" (a step end
    that ends a line), "\\n." (one that starts the next line too) and "\\n\\n" (two lines)."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet(), key=tokenizer_lib._byte_of)
    vocab = {ch: i for i, ch in enumerate(alphabet + ["Ċ.", "ĊĊ", ")Ċ"])}
    tok = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=[("Ċ", "."), ("Ċ", "Ċ"),
                                                               (")", "Ċ")]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<pad>", "</s>"])
    return tokenizer_lib.Tokenizer(tok, eos_token="</s>", pad_token="<pad>")


def _generation(tok, cases, g, prompt_len):
    """The cases as a Generation of G responses per problem (rows in the sampler's layout)."""
    responses = [tok.encode(text, add_special_tokens=False) + list(tok.stop_ids[:done])
                 for _, text, done, _, _ in cases]
    tokens, mask = strategies.rows_of([tok.encode(c[0]["question"] + "\n") for c in cases],
                                      responses, prompt_len, tok.pad_id)
    col = lambda i: np.array([c[i] for c in cases]).reshape(-1, g)  # noqa: E731
    texts = col(1).tolist()
    return strategies.Generation(texts, texts, tokens, mask, col(3).astype(float), col(2),
                                 col(2), np.full(len(cases) // g, prompt_len), 0.0, 0.0), \
        responses


def _replayed_labels(case, tok, ids, rule="exact"):
    """(response index, label) at each step end, the plain way: decode the response up to the
    step end, keep its complete lines, replay them, take the last line's label (rule "exact")
    or whether no line so far is invalid ("valid"); the last token gets the outcome."""
    problem, _, _, outcome, _ = case
    meta = json.loads(problem["meta"])
    out = []
    for i, t in enumerate(ids):
        if i == len(ids) - 1:
            out.append((i, float(outcome)))
        elif "\n" in tok.decode([t]):
            prefix = tok.decode(ids[:i + 1])
            lines = prefix[:prefix.rfind("\n") + 1]
            replayed = search_tasks.replay(meta["numbers"], meta["target"], lines) \
                if problem["task"] == "countdown_search" else sudoku.replay(meta["puzzle"], lines)
            if replayed and rule == "exact":
                out.append((i, float(replayed[-1].solvable)))
            elif replayed:
                out.append((i, 0.0 if any(not s.valid for s in replayed) else 1.0))
    return out


def test_exact_labels_are_the_replays_verdict_on_each_line_a_step_end_completes():
    p = 32
    for tok in (byte_tokenizer(), _merging_tokenizer()):
        gen, responses = _generation(tok, CASES, 2, p)
        labels = value_training.exact_labels([c[0] for c in CASES[::2]], tok, gen, p)
        assert len({len(r) for r in responses}) > 1   # responses of several lengths, padded
        for r, (case, ids) in enumerate(zip(CASES, responses)):
            got = [(c - p, float(labels.targets[r, c])) for c in np.flatnonzero(labels.weights[r])]
            assert got == _replayed_labels(case, tok, ids), (tok.vocab_size, case[1])
            if tok.vocab_size == 259:   # one token per character: the hand-written labels
                assert [y for _, y in got] == case[4] + [case[3]], case[1]
        assert labels.weights[:, :p].sum() == 0
        valid = value_training.exact_labels([c[0] for c in CASES[::2]], tok, gen, p, "valid")
        for r, (case, ids) in enumerate(zip(CASES, responses)):
            got = [(c - p, float(valid.targets[r, c])) for c in np.flatnonzero(valid.weights[r])]
            assert got == _replayed_labels(case, tok, ids, "valid"), (tok.vocab_size, case[1])
            if tok.vocab_size == 259 and r == 1:   # dead ends and a back-up, no slip
                assert [y for _, y in got] == [1.0] * 7
            if tok.vocab_size == 259 and r == 3:   # a slip on the first line: 0 from there on
                assert [y for _, y in got] == [0.0] * 7
    with pytest.raises(ValueError,
                       match="arithmetic has no replay .*countdown_search, countdown_nested, sudoku"):
        value_training.check_replayable([COUNTDOWN, EXAMPLES[0]])


def test_bradley_terry_equals_a_loop_over_right_wrong_pairs():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(5, 4)).round(1) * 3       # ties and large margins
    correct = (rng.random((5, 4)) < 0.5).astype(np.float32)
    correct[0] = 1                                       # a problem with no pair
    terms = [-math.log(1 / (1 + math.exp(-(scores[b, i] - scores[b, j]))))
             for b in range(5) for i in range(4) for j in range(4)
             if correct[b, i] == 1 and correct[b, j] == 0]
    assert len(terms) > 5
    got = value_training.bradley_terry(jnp.asarray(scores), jnp.asarray(correct))
    assert float(got) == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    assert float(value_training.bradley_terry(jnp.zeros((2, 3)), jnp.ones((2, 3)))) == 0.0


def test_pairwise_loss_reads_each_rows_last_token_and_training_ranks_within_a_problem():
    """Rows of ragged length in problems of G = 4; a right row ends with a 5 (5s appear anywhere
    else in any row). The loss is the loop's over the model's raw values at each row's last
    real token; training on it ranks a problem's right rows above its wrong ones."""
    rng = np.random.default_rng(1)
    g, rows, t = 4, 64, 10
    tokens = rng.integers(5, 16, size=(rows, t)).astype(np.int32)
    right = rng.random(rows) < 0.5
    lengths = rng.integers(6, t + 1, size=rows)
    last = tokens[np.arange(rows), lengths - 1]
    tokens[np.arange(rows), lengths - 1] = np.where(right, 5, np.where(last == 5, 6, last))
    mask = np.arange(t)[None, :] < lengths[:, None]
    targets = np.where(mask, right[:, None], 0).astype(np.float32)
    data = Labelled(tokens, mask, targets, mask.astype(np.float32))
    model = Transformer(preset("tiny", vocab_size=16, max_seq_len=16, num_layers=1),
                        head="value")
    params = jax.jit(model.init)(jax.random.key(0))   # jitted: op by op is slower
    raw = np.asarray(jax.jit(model.apply)(params, tokens, positions_from_mask(mask), mask)[0])
    s = [raw[i, lengths[i] - 1] for i in range(rows)]
    terms = [math.log(1 + math.exp(-(s[b * g + i] - s[b * g + j])))
             for b in range(rows // g) for i in range(g) for j in range(g)
             if right[b * g + i] and not right[b * g + j]]
    got = jax.jit(functools.partial(value_training.pairwise_loss, model, group=g))(
        params, jax.tree.map(jnp.asarray, data))
    assert float(got) == pytest.approx(np.mean(terms), rel=1e-4)
    trained, losses = value_training.train_value(model, params, data, steps=30, lr=1e-2,
                                                 batch_size=32, loss="pairwise", group=g)
    v = value_models.ValueModel("orm", model, trained, "", "logit")
    scores = value_models.outcome_scores(v, tokens, mask).reshape(-1, g)
    done = np.ones_like(scores, bool)
    assert value_models.within_problem_auc(scores, right.reshape(-1, g), done) > 0.9
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10]), (losses[:3], losses[-3:])
    with pytest.raises(ValueError, match="needs a problem with both right and wrong"):
        value_training.train_value(model, params, data._replace(targets=0 * targets), steps=1,
                                   lr=1e-3, batch_size=8, loss="pairwise", group=g)
