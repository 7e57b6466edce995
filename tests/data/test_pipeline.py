"""The prompt pipeline: seeded order, exact resume, per-process shares, prompts cut and counted
(the encoder itself: tests/data/test_prompts.py)."""

import numpy as np
import pytest

from o1jax.data import tasks
from o1jax.data.pipeline import PromptPipeline
from o1jax.data.prompts import PromptFormat
from o1jax.tokenizer import byte_tokenizer


@pytest.fixture(scope="module")
def source():
    return list(tasks.generate("arithmetic", "train", 53, difficulty=2))


def _pipe(source, **kw):
    args = dict(tokenizer=byte_tokenizer(), global_batch=8, fmt=PromptFormat(max_prompt_len=24),
                seed=3)
    args.update(kw)
    return PromptPipeline(source, **args)


def test_batches_cover_an_epoch_without_repeats(source):
    p = _pipe(source)
    rows = np.concatenate([p.next_batch().indices for _ in range(6)])
    assert len(set(rows.tolist())) == 48          # 53 // 8 full batches, no repeats
    assert p.next_batch().indices.tolist() != rows[:8].tolist()  # epoch 2 reshuffles
    assert p.state()["epoch"] == 1


def test_resume_gives_identical_batches(source):
    a = _pipe(source)
    for _ in range(4):
        a.next_batch()
    saved = a.state()
    expected = [a.next_batch() for _ in range(5)]   # crosses the epoch boundary
    b = _pipe(source)
    b.restore(saved)
    for e in expected:
        got = b.next_batch()
        np.testing.assert_array_equal(got.indices, e.indices)
        np.testing.assert_array_equal(got.tokens, e.tokens)
    with pytest.raises(ValueError, match="seed"):
        _pipe(source, seed=4).restore(saved)


def test_process_shares_partition_the_global_batch(source):
    full = _pipe(source).next_batch()
    shares = [_pipe(source, process_index=i, process_count=4).next_batch() for i in range(4)]
    assert all(len(s.indices) == 2 for s in shares)
    np.testing.assert_array_equal(np.concatenate([s.indices for s in shares]), full.indices)
    with pytest.raises(ValueError, match="not divisible"):
        _pipe(source, process_count=3)


def test_left_padded_tokens_decode_to_prompts(source):
    tok = byte_tokenizer()
    b = _pipe(source).next_batch()
    assert b.tokens.shape == (8, 24) and b.mask.dtype == bool
    for row, m, ex in zip(b.tokens, b.mask, b.examples):
        assert not m[0] or m.all()           # padding only on the left
        assert tok.decode(row[m].tolist()) == ex["question"] + "\n"


def test_long_prompts_are_cut_and_counted(source):
    """A cut prompt keeps <s> and its last tokens (where the question is asked)."""
    tok = byte_tokenizer()
    p = _pipe(source, fmt=PromptFormat(max_prompt_len=6))
    b = p.next_batch()
    assert b.tokens.shape == (8, 6) and p.truncated_prompts == 8 and b.mask.all()
    for row, ex in zip(b.tokens, b.examples):
        whole = tok.encode(ex["question"] + "\n")
        assert row.tolist() == [tok.token_id("<s>")] + whole[-5:]


def test_a_chat_template_reaches_the_batches(source):
    tok = byte_tokenizer()
    tok.chat_template = "{% for m in messages %}[{{ m.content }}]{% endfor %}"
    b = _pipe(source, tokenizer=tok, fmt=PromptFormat("Q {question}", True, max_prompt_len=24)
              ).next_batch()
    for row, m, ex in zip(b.tokens, b.mask, b.examples):
        assert tok.decode(row[m].tolist()) == f"[Q {ex['question']}]"
