"""The prompt encoder: the chat template in a sandbox, image placeholders, truncation that keeps
the first token (against a plain loop), left padding, and the training demo's prompts unchanged."""

import numpy as np
import pytest

from o1jax.data import tasks
from o1jax.data.prompts import (PromptFormat, encode_prompt, fit, pad_prompts, prompt_ids,
                                render_prompt, truncate_prompt)
from o1jax.tokenizer import byte_tokenizer
from tests import hf_fixtures


def test_chat_template_is_rendered_in_a_sandbox():
    tok = byte_tokenizer()
    tok.chat_template = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    out = render_prompt("1+1?", tok, PromptFormat("Q: {question}\n", True, system="Think."))
    assert out == "<|system|>Think.\n<|user|>Q: 1+1?\n<|assistant|>"
    assert render_prompt("1+1?", tok, PromptFormat("Q: {question}\n")) == "Q: 1+1?\n"
    tok.chat_template = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(Exception, match="unsafe|not safely|access"):
        render_prompt("x", tok, PromptFormat(use_chat_template=True))
    with pytest.raises(ValueError, match="no chat_template"):
        render_prompt("x", byte_tokenizer(), PromptFormat(use_chat_template=True))


def test_qwen3_chat_prompt_opens_the_assistant_turn_and_its_end_of_thinking_is_one_token():
    """Qwen3's template (shortened, tests/hf_fixtures.py): the user's turn, then the assistant's,
    left open for the model's <think>; </think> is one token of the vocabulary."""
    tok = hf_fixtures.chat_tokenizer()
    text = render_prompt("1+1?", tok, PromptFormat("Q: {question}\n", True))
    assert text == "<|im_start|>user\nQ: 1+1?<|im_end|>\n<|im_start|>assistant\n"
    ids = tok.encode(text, add_special_tokens=False)
    assert ids[0] == tok.token_id("<|im_start|>") == 259 and ids.count(260) == 1
    assert tok.end_of_thinking == "</think>" and tok.encode("</think>", False) == [262]
    assert tok.decode([262]) == "</think>"          # not special: responses keep it
    assert byte_tokenizer().end_of_thinking is None


def test_a_format_is_a_frozen_value():
    with pytest.raises(Exception, match="cannot assign"):
        PromptFormat().use_chat_template = True


def test_image_placeholders_go_where_the_template_marks_them_else_after_bos():
    tok = byte_tokenizer(image_token=True)
    bos, img = tok.token_id("<s>"), tok.image_id
    text = tok.encode("Hi?\n", add_special_tokens=False)
    ex = {"question": "Hi?", "image": None}
    assert prompt_ids(ex, tok, PromptFormat(image_tokens=3)) == [bos, img, img, img] + text
    assert prompt_ids(ex, tok, PromptFormat("{question}\n<image>", image_tokens=3)) == \
        [bos] + text + [img, img, img]
    with pytest.raises(ValueError, match="holds 2 image tokens"):
        prompt_ids(ex, tok, PromptFormat("<image>{question}\n<image>", image_tokens=3))


def _plain_cut(ids, length, image_id):
    """The rule by hand: the first token, every image placeholder, and as many of the last
    text tokens as fit, in their order."""
    if len(ids) <= length:
        return list(ids)
    rest = [(i, t) for i, t in enumerate(ids) if i > 0 and t != image_id]
    room = length - 1 - sum(1 for t in ids[1:] if t == image_id)
    kept = {i for i, _ in rest[len(rest) - room:]} if room > 0 else set()
    return [t for i, t in enumerate(ids) if i == 0 or t == image_id or i in kept]


def test_truncation_keeps_the_first_token_and_the_image_like_a_plain_loop():
    assert truncate_prompt([1, 5, 6, 7, 8], 3) == [1, 7, 8]        # text prompts keep <s> too
    img = 99
    rng = np.random.default_rng(0)
    for _ in range(300):
        n, n_img = int(rng.integers(2, 20)), int(rng.integers(0, 4))
        ids = [1] + rng.integers(2, 50, n).tolist()
        at = int(rng.integers(1, len(ids) + 1))
        ids = ids[:at] + [img] * n_img + ids[at:]
        length = int(rng.integers(n_img + 2, len(ids) + 3))
        for image_id in ((img,) if n_img else (None, img)):
            got = truncate_prompt(ids, length, image_id)
            assert got == _plain_cut(ids, length, image_id), (ids, length)
            assert len(got) == min(length, len(ids)) and got[0] == 1
    with pytest.raises(ValueError, match="does not fit"):
        truncate_prompt([1, img, img, img, 5], 3, img)


def test_fit_cuts_to_the_format_length_and_keeps_the_image():
    tok = byte_tokenizer(image_token=True)
    ex = {"question": "a long question?", "image": None}
    fmt = PromptFormat(image_tokens=4, max_prompt_len=10)
    whole = prompt_ids(ex, tok, fmt)
    got = encode_prompt(ex, tok, fmt)
    assert got == fit(whole, tok, fmt) == _plain_cut(whole, 10, tok.image_id)
    assert got[:5] == [tok.token_id("<s>")] + [tok.image_id] * 4
    assert fit(whole, tok, PromptFormat(image_tokens=4)) == whole    # no length: never cut


def test_left_padding_like_a_plain_loop():
    prompts = [[3, 4, 5], [6], [7, 8]]
    tokens, mask = pad_prompts(prompts, pad_id=0, length=4)
    for row, m, p in zip(tokens.tolist(), mask.tolist(), prompts):
        assert row == [0] * (4 - len(p)) + p and m == [False] * (4 - len(p)) + [True] * len(p)
    assert pad_prompts(prompts, 9)[0].shape == (3, 3)
    with pytest.raises(ValueError, match="longer than the maximum"):
        pad_prompts(prompts, 0, length=2)
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        pad_prompts([[1], []], 0)


def test_the_demo_prompts_are_the_ids_the_old_encoder_gave():
    """configs/arithmetic_ppo.py's prompts: <s> + the bytes of "{question}\\n" (the byte
    tokenizer with no merges), none cut at data.max_prompt_len: exactly what training fed
    before the encoder moved here."""
    from configs import arithmetic_ppo
    cfg = arithmetic_ppo.get_config()
    tok = byte_tokenizer()
    fmt = PromptFormat(cfg.data.template, max_prompt_len=cfg.data.max_prompt_len)
    examples = list(tasks.generate(cfg.data.task, "train", 300, difficulty=cfg.data.difficulty,
                                   seed=cfg.data.seed))
    for ex in examples:
        old = tok.encode(cfg.data.template.format(question=ex["question"]))
        assert len(old) <= cfg.data.max_prompt_len
        assert encode_prompt(ex, tok, fmt) == old
        assert old == [257] + list(cfg.data.template.format(question=ex["question"]).encode())
