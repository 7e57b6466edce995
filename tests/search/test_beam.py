"""Beam search and DVTS on a policy that writes random lines of a and b, with a hand-made value
function that rewards one known path (lines of a only, the more a the better, any b ruins it):
the search must find it, where sampling the same policy does not."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o1jax.data.prompts import PromptFormat
from o1jax.models import Transformer, preset
from o1jax.search import beam, value_models
from o1jax.tokenizer import byte_tokenizer

A, B, NL = ord("a"), ord("b"), ord("\n")


def _random_lines_policy():
    """Next token a, b or newline (about 30% each) or the stop token (about 10%), after any
    prefix: layers off, every embedding one vector, the head rigged on four columns."""
    tok = byte_tokenizer()
    model = Transformer(preset("tiny", vocab_size=320, max_seq_len=96, tie_embeddings=False))
    params = model.init(jax.random.key(0))
    layers = dict(params["layers"], wo=jnp.zeros_like(params["layers"]["wo"]),
                  w_down=jnp.zeros_like(params["layers"]["w_down"]))
    e = np.random.RandomState(0).randn(params["embed"].shape[1]).astype(np.float32)
    h = e / np.sqrt(np.mean(e ** 2))                     # the final norm's output (scale ~1)
    head = np.zeros(params["lm_head"].shape, np.float32)
    for t, logit in ((A, 20.0), (B, 20.0), (NL, 20.0), (tok.stop_ids[0], 18.9)):
        head[:, t] = logit * h / np.dot(h, h)
    return model, dict(params, layers=layers, embed=jnp.tile(jnp.asarray(e), (320, 1)),
                       lm_head=jnp.asarray(head)), tok


@dataclasses.dataclass(frozen=True)
class NoB:
    """A hand-made value model: the count of a so far / 20 while the sequence holds no b, else 0."""
    cfg: object

    def apply(self, params, tokens, positions, mask):
        bad = jnp.cumsum((tokens == B) & mask, axis=1) > 0
        a = jnp.cumsum((tokens == A) & mask, axis=1)
        return jnp.where(bad, 0.0, jnp.minimum(a / 20, 1.0)), None


@pytest.mark.parametrize("diverse", [False, True])
def test_search_finds_the_path_the_value_function_rewards(diverse):
    model, params, tok = _random_lines_policy()
    verifier = value_models.ValueModel("prm", NoB(model.cfg), {}, "hand-made")
    examples = [{"question": "?" * (i + 1), "answer": "0", "task": "arithmetic", "meta": "{}"}
                for i in range(6)]
    gen, ledger = beam.search(model, params, examples, tok, verifier, beams=3, width=4,
                              diverse=diverse, fmt=PromptFormat(max_prompt_len=8),
                              max_new_tokens=40,
                              step_tokens=8, temperature=1.0, batch_rows=16, seed=0)
    texts = [t[0] for t in gen.texts]
    assert all("b" not in t for t in texts), texts
    assert np.mean([t.count("a") for t in texts]) >= 3, texts
    assert gen.finished.all()
    assert (ledger["decode_flops"] > 0).all() and (ledger["verifier_flops"] > 0).all()
    assert (ledger["prefill_flops"] > 0).all()


def test_plain_sampling_of_that_policy_writes_b():
    from o1jax.rollout import SamplingConfig, make_sampler, pad_prompts
    model, params, tok = _random_lines_policy()
    tokens, mask = pad_prompts([[63] * 3] * 6, tok.pad_id)
    r = make_sampler(model, SamplingConfig(40, 1.0, stop_ids=tok.stop_ids, pad_id=tok.pad_id))(
        params, tokens, mask, jax.random.key(0))
    lengths = np.asarray(r.lengths)
    has_b = [(np.asarray(r.tokens[i])[np.asarray(r.response_mask[i])] == B).any()
             for i in range(6)]
    assert sum(has_b) >= 4 and lengths.mean() > 5   # the path is not what it writes by itself


def test_zero_beams_or_width_is_an_error():
    model, params, tok = _random_lines_policy()
    verifier = value_models.ValueModel("prm", NoB(model.cfg), {}, "hand-made")
    with pytest.raises(ValueError, match="beams and width >= 1"):
        beam.search(model, params, [], tok, verifier, 0, 4, False,
                    PromptFormat(max_prompt_len=8), 40, 8, 1.0)


def test_mcts_finds_the_path_the_value_function_rewards():
    from o1jax.search import mcts
    model, params, tok = _random_lines_policy()
    verifier = value_models.ValueModel("prm", NoB(model.cfg), {}, "hand-made")
    examples = [{"question": "?" * (i + 1), "answer": "0", "task": "arithmetic", "meta": "{}"}
                for i in range(6)]
    gen, ledger = mcts.search(model, params, examples, tok, verifier, simulations=8, width=4,
                              fmt=PromptFormat(max_prompt_len=8), max_new_tokens=40,
                              step_tokens=8,
                              temperature=1.0, batch_rows=16, seed=0)
    texts = [t[0] for t in gen.texts]
    assert all("b" not in t for t in texts) and gen.finished.sum() >= 4, texts
    assert (ledger["prefill_flops"] > 0).all() and (ledger["verifier_flops"] > 0).all()


def test_more_simulations_than_the_tree_holds_is_an_error():
    from o1jax.search import mcts
    model, params, tok = _random_lines_policy()
    verifier = value_models.ValueModel("prm", NoB(model.cfg), {}, "hand-made")
    assert mcts.max_simulations(2, 3) == 2 + 4 + 8
    with pytest.raises(ValueError, match="more than a tree of 1 actions"):
        mcts.search(model, params, [], tok, verifier, 100, 1,
                    PromptFormat(max_prompt_len=8), 40, 8, 1.0)
