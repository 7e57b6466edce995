"""SFT: the encoding (by hand), the loss (a numpy NLL from the logits), a step that learns, and
a non-finite step skipped."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o1jax.data.prompts import PromptFormat
from o1jax.models import Transformer, positions_from_mask, preset
from o1jax.optim import make_optimizer, warmup_cosine
from o1jax.sft import encode_sft, init_sft_state, sft_loss, sft_step
from o1jax.tokenizer import byte_tokenizer

EXAMPLES = [{"question": "2+3=?", "solution": "\\boxed{5}"},
            {"question": "10-7=?", "solution": "10-7=3 \\boxed{3}"}]


def test_encode_sft_by_hand():
    tok = byte_tokenizer()
    enc = encode_sft(EXAMPLES, tok, length=20, fmt=PromptFormat("Q: {question}\n"))
    prompt = [257] + list(b"Q: 2+3=?\n")
    answer = list(b"\\boxed{5}") + [tok.stop_ids[0]]
    ids = prompt + answer
    assert enc["tokens"][0, :len(ids)].tolist() == ids
    assert (enc["tokens"][0, len(ids):] == tok.pad_id).all()
    assert enc["mask"][0].tolist() == [True] * len(ids) + [False] * (20 - len(ids))
    assert enc["target"][0].tolist() == ([False] * len(prompt) + [True] * len(answer) +
                                         [False] * (20 - len(ids)))
    # the second row is cut at 20 tokens: the stop token is gone, the cut solution is the target
    assert enc["mask"][1].all() and enc["target"][1, -1]
    assert tok.stop_ids[0] not in enc["tokens"][1].tolist()
    with pytest.raises(ValueError, match="leaves no room for its solution in sft.max_len=10"):
        encode_sft(EXAMPLES, tok, length=10, fmt=PromptFormat("Q: {question}\n"))


def test_tool_outputs_are_not_targets():
    """A demonstration's <output>...</output> is what the rollout's tool writes: in the input,
    never a target."""
    tok = byte_tokenizer()
    solution = "<tool>print(6*7)</tool><output>42</output>\n\\boxed{42}"
    enc = encode_sft([{"question": "6*7=?", "solution": solution}], tok, length=64,
                     fmt=PromptFormat("{question}\n"))
    prompt = [257] + list(b"6*7=?\n")
    ids = prompt + list(solution.encode()) + [tok.stop_ids[0]]
    assert enc["tokens"][0, :len(ids)].tolist() == ids
    start = len(prompt) + solution.index("<output>")
    end = len(prompt) + solution.index("</output>") + len("</output>")
    want = [False] * len(prompt) + [True] * (start - len(prompt)) + [False] * (end - start) + \
        [True] * (len(ids) - end) + [False] * (64 - len(ids))
    assert enc["target"][0].tolist() == want


def _setup():
    tok = byte_tokenizer()
    model = Transformer(preset("tiny", vocab_size=320, max_seq_len=64))
    batch = {k: jnp.asarray(v) for k, v in encode_sft(EXAMPLES, tok, 32).items()}
    return model, model.init(jax.random.key(0)), batch


def test_loss_is_the_mean_nll_of_the_target_tokens():
    model, params, batch = _setup()
    loss, aux = sft_loss(model, params, batch)
    logits, _ = model.apply(params, batch["tokens"], positions_from_mask(batch["mask"]),
                            batch["mask"])
    logits = np.asarray(logits, np.float64)
    tokens, target = np.asarray(batch["tokens"]), np.asarray(batch["target"])
    nll, right, n = 0.0, 0, 0
    for b in range(tokens.shape[0]):
        for t in range(1, tokens.shape[1]):
            if target[b, t]:
                row = logits[b, t - 1]
                nll += np.log(np.sum(np.exp(row - row.max()))) + row.max() - row[tokens[b, t]]
                right += int(np.argmax(row) == tokens[b, t])
                n += 1
    np.testing.assert_allclose(float(loss), nll / n, rtol=1e-5)
    np.testing.assert_allclose(float(aux["token_accuracy"]), right / n)


def test_steps_lower_the_loss_and_a_non_finite_step_is_skipped():
    model, params, batch = _setup()
    opt = make_optimizer(warmup_cosine(1e-2, steps=20, warmup=1))
    step = jax.jit(functools.partial(sft_step, policy=model, opt=opt))
    state = init_sft_state(params, opt)
    losses = []
    for _ in range(15):
        state, m = step(state, batch)
        losses.append(float(m["loss"]))
    assert losses[-1] < 0.5 * losses[0] and int(state["step"]) == 15
    assert int(state["skipped_updates"]) == 0
    bad = dict(state, params=dict(state["params"], final_norm=state["params"]["final_norm"]
                                  * jnp.nan))
    after, m = step(bad, batch)
    assert float(m["skipped_updates"]) == 1.0 and int(after["skipped_updates"]) == 1
    np.testing.assert_array_equal(after["params"]["embed"], bad["params"]["embed"])
