"""The step-boundary rule on a BPE vocabulary whose tokens merge newlines with text
(".\\n", "\\nSo", "6}\\n\\nDo"): step ends against a plain loop over the decoded text, and the
Math-Shepherd labeller's step-end columns with it."""

import numpy as np
import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from o1jax.search import steps, value_training
from o1jax.tokenizer import Tokenizer

TEXTS = ["1+2=3.\n\nSo 3+4=7.\n\\boxed{7}", "x = 5.\nThen y = 6}\n\nDone.", "no newline",
         "\n\nSo", "7.\n"]


@pytest.fixture(scope="module")
def merging():
    """A byte-level BPE trained on solution-like lines, merges across newlines allowed."""
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["1+2=3.\n\nSo 3+4=7.\n\\boxed{7}\n", "x = 5.\nThen y = 6}\n\nDone.\n"] * 50
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<pad>", "</s>"], show_progress=False))
    return Tokenizer(tok, eos_token="</s>", pad_token="<pad>")


def _ends_from_text(ids, tokenizer):
    """Plain loop over the decoded response: the character offsets of its newlines, each
    mapped to the token that wrote it; the last token ends the last step."""
    pieces = [tokenizer.decode([t]) for t in ids]
    text = "".join(pieces)
    owner = [i for i, p in enumerate(pieces) for _ in p]   # the token of each character
    ends = sorted({owner[c] for c, ch in enumerate(text) if ch == "\n"})
    if ids and (not ends or ends[-1] != len(ids) - 1):
        ends.append(len(ids) - 1)
    return ends


def test_the_vocabulary_merges_newlines_with_text(merging):
    ids = steps.step_end_ids(merging)
    texts = [merging.decode([i]) for i in ids]
    assert all("\n" in t for t in texts)
    assert {".\n", "}\n", "\nSo"} <= set(texts) and len(texts) > 10
    assert [i for i in range(merging.vocab_size) if i not in ids
            and "\n" in merging.decode([i])] == []


@pytest.mark.parametrize("text", TEXTS)
def test_step_ends_follow_the_decoded_text(merging, text):
    ids = merging.encode(text, add_special_tokens=False)
    assert "".join(merging.decode([t]) for t in ids) == text
    ends = steps.step_ends(ids, set(steps.step_end_ids(merging)))
    assert ends == _ends_from_text(ids, merging)


def test_merged_newline_tokens_end_steps(merging):
    """The first text's newlines are all inside merged tokens: the id of "\\n" alone never
    occurs, yet its three newlines end two steps before the last token (one token holds two)."""
    ids = merging.encode(TEXTS[0], add_special_tokens=False)
    lone = merging.encode("\n", add_special_tokens=False)
    assert not set(lone) & set(ids)
    ends = steps.step_ends(ids, set(steps.step_end_ids(merging)))
    assert len(ends) == 3 and ends[-1] == len(ids) - 1
    assert all(merging.decode([ids[e]]) != "\n" for e in ends)


def test_math_shepherd_step_columns_use_the_rule(merging):
    """Rows as the sampler lays them out (left-padded prompt of P columns, response, padding):
    the labeller's step-end columns are the response's step ends, shifted by P."""
    p = 6
    for text in TEXTS:
        resp = merging.encode(text, add_special_tokens=False) + [merging.stop_ids[0]]
        prompt = merging.encode("Q?", add_special_tokens=False)
        tokens = np.full(p + len(resp) + 3, merging.pad_id, np.int32)
        mask = np.zeros(tokens.shape, bool)
        tokens[p - len(prompt):p], tokens[p:p + len(resp)] = prompt, resp
        mask[p - len(prompt):p + len(resp)] = True
        cols = value_training.step_end_columns(tokens, mask, p,
                                               set(steps.step_end_ids(merging)))
        assert cols == [p + e for e in _ends_from_text(resp, merging)]
