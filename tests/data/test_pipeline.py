"""The prompt pipeline: seeded order, exact resume, per-process shares, templates."""

import numpy as np
import pytest

from o1jax.data import tasks
from o1jax.data.pipeline import PromptPipeline, render_prompt
from o1jax.tokenizer import byte_tokenizer


@pytest.fixture(scope="module")
def source():
    return list(tasks.generate("arithmetic", "train", 53, difficulty=2))


def _pipe(source, **kw):
    args = dict(tokenizer=byte_tokenizer(), global_batch=8, max_prompt_len=24, seed=3)
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
    p = _pipe(source, max_prompt_len=6)
    b = p.next_batch()
    assert b.tokens.shape == (8, 6) and p.truncated_prompts == 8


def test_chat_template_is_rendered_in_a_sandbox():
    tok = byte_tokenizer()
    tok.chat_template = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    out = render_prompt("1+1?", tok, use_chat_template=True, system="Think.")
    assert out == "<|system|>Think.\n<|user|>1+1?\n<|assistant|>"
    tok.chat_template = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(Exception, match="unsafe|not safely|access"):
        render_prompt("x", tok, use_chat_template=True)
    with pytest.raises(ValueError, match="no chat_template"):
        render_prompt("x", byte_tokenizer(), use_chat_template=True)


def test_image_placeholders_go_where_the_template_marks_them_else_after_bos():
    from o1jax.data.pipeline import prompt_ids
    from o1jax.tokenizer import byte_tokenizer
    tok = byte_tokenizer(image_token=True)
    bos, img = tok.token_id("<s>"), tok.image_id
    text = tok.encode("Hi?\n", add_special_tokens=False)
    ex = {"question": "Hi?", "image": None}
    assert prompt_ids(ex, tok, "{question}\n", image_tokens=3) == [bos, img, img, img] + text
    assert prompt_ids(ex, tok, "{question}\n<image>", image_tokens=3) == \
        [bos] + text + [img, img, img]
    with pytest.raises(ValueError, match="holds 2 image tokens"):
        prompt_ids(ex, tok, "<image>{question}\n<image>", image_tokens=3)


def test_truncation_drops_the_earliest_text_and_keeps_bos_and_the_image():
    from o1jax.data.pipeline import truncate_prompt
    img = 99
    # image after <s>, or at the end: a plain loop's answer either way
    for ids in ([1, img, img, 5, 6, 7, 8], [1, 5, 6, 7, 8, img, img]):
        want = [ids[0]] + [t for t in ids[1:] if t == img]
        text = [t for t in ids[1:] if t != img][-2:]
        got = truncate_prompt(ids, 5, img)
        assert [t for t in got if t == img] == want[1:] and got[0] == 1
        assert [t for t in got[1:] if t != img] == text and len(got) == 5
    assert truncate_prompt([1, 5, 6, 7], 2) == [6, 7]            # text: the last tokens
    with pytest.raises(ValueError, match="does not fit"):
        truncate_prompt([1, img, img, img, 5], 3, img)
