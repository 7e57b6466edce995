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


@pytest.fixture(scope="module")
def vl_chat_dir(tmp_path_factory):
    """Qwen2.5-VL's tokenizer files in small (tests/hf_fixtures.py): its chat and vision tokens
    and chat template, and a config.json naming the placeholder and the markers."""
    import json
    path = tmp_path_factory.mktemp("vl_tok")
    hf_fixtures.vl_chat_tokenizer().save(str(path))
    ids = hf_fixtures.VL_CHAT_IDS
    (path / "config.json").write_text(json.dumps({
        "image_token_id": ids["<|image_pad|>"], "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"]}))
    return str(path)


@pytest.mark.parametrize("question, parts", [
    ("In the figure <image> find x.", ["In the figure ", None, " find x."]),   # Geometry3K's mark
    ("<image>Find x.", [None, "Find x."]),
    ("Find x.", [None, "Find x."])])                                    # unmarked: image first
def test_a_qwen25vl_chat_prompt_equals_transformers(vl_chat_dir, question, parts):
    """The checkpoint's own chat template with the image as a part of the user's message:
    ours equals transformers' rendering (its tokenizer's apply_chat_template) with the image's
    placeholder repeated as many times as transformers' image processor makes tokens of it."""
    import transformers
    from PIL import Image

    from o1jax.tokenizer import Tokenizer
    tok = Tokenizer.from_dir(vl_chat_dir)
    assert tok.image_token == "<|image_pad|>"
    assert tok.vision_markers == ("<|vision_start|>", "<|vision_end|>")
    image = np.random.RandomState(0).randint(0, 256, (112, 112, 3)).astype(np.uint8)
    ours = prompt_ids({"question": question, "image": image}, tok,
                      PromptFormat("{question}", True, image_tokens=16))
    theirs = transformers.AutoTokenizer.from_pretrained(vl_chat_dir)
    content = [{"type": "image"} if p is None else {"type": "text", "text": p} for p in parts]
    text = theirs.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                      add_generation_prompt=True)
    grid = hf_fixtures.vl_processor()(images=[Image.fromarray(image)],
                                      return_tensors="np")["image_grid_thw"][0]
    n = int(np.prod(grid)) // 4                                        # merged 2 x 2
    assert n == 16 and "You are a helpful assistant." in text
    assert ours == theirs(text.replace("<|image_pad|>", "<|image_pad|>" * n))["input_ids"]


def test_plain_qwen25vl_prompts_put_the_image_between_its_markers(vl_chat_dir):
    from o1jax.tokenizer import Tokenizer
    tok = Tokenizer.from_dir(vl_chat_dir)
    start, end = (hf_fixtures.VL_CHAT_IDS[t] for t in ("<|vision_start|>", "<|vision_end|>"))
    img, bos = tok.image_id, tok.token_id("<s>")
    fmt = PromptFormat("{question}", image_tokens=3)
    text = tok.encode("Find x.", add_special_tokens=False)
    image = [start, img, img, img, end]
    assert prompt_ids({"question": "Find x.", "image": None}, tok, fmt) == [bos] + image + text
    marked = prompt_ids({"question": "Find<image> x.", "image": None}, tok, fmt)
    assert marked == [bos] + tok.encode("Find", False) + image + tok.encode(" x.", False)
    cut = fit(marked, tok, PromptFormat("{question}", image_tokens=3, max_prompt_len=7))
    assert cut == [bos] + image + tok.encode(".", False)        # markers stay with the image
    plain = PromptFormat("{question}", True, image_tokens=3)
    text_only = Tokenizer(tok.tok, bos_token="<s>", chat_template=hf_fixtures.chat_tokenizer()
                          .chat_template, image_token="<|image_pad|>")
    with pytest.raises(ValueError, match="renders no image placeholder"):
        prompt_ids({"question": "Find x.", "image": None}, text_only, plain)


def _plain_cut(ids, length, keep):
    """The rule by hand: the first token, every kept token (image placeholders and markers),
    and as many of the last text tokens as fit, in their order."""
    if len(ids) <= length:
        return list(ids)
    rest = [(i, t) for i, t in enumerate(ids) if i > 0 and t not in keep]
    room = length - 1 - sum(1 for t in ids[1:] if t in keep)
    kept = {i for i, _ in rest[len(rest) - room:]} if room > 0 else set()
    return [t for i, t in enumerate(ids) if i == 0 or t in keep or i in kept]


def test_truncation_keeps_the_first_token_and_the_image_like_a_plain_loop():
    assert truncate_prompt([1, 5, 6, 7, 8], 3) == [1, 7, 8]        # text prompts keep <s> too
    img, start, end = 99, 97, 98
    rng = np.random.default_rng(0)
    for _ in range(300):
        n, n_img = int(rng.integers(2, 20)), int(rng.integers(0, 4))
        marked = bool(rng.integers(2)) and n_img > 0
        ids = [1] + rng.integers(2, 50, n).tolist()
        at = int(rng.integers(1, len(ids) + 1))
        image = [start] * marked + [img] * n_img + [end] * marked
        ids = ids[:at] + image + ids[at:]
        length = int(rng.integers(len(image) + 2, len(ids) + 3))
        for keep in (((img, start, end),) if n_img else ((), (img, start, end))):
            got = truncate_prompt(ids, length, keep)
            assert got == _plain_cut(ids, length, keep), (ids, length)
            assert len(got) == min(length, len(ids)) and got[0] == 1
    with pytest.raises(ValueError, match="does not fit"):
        truncate_prompt([1, img, img, img, 5], 3, (img,))


def test_fit_cuts_to_the_format_length_and_keeps_the_image():
    tok = byte_tokenizer(image_token=True)
    ex = {"question": "a long question?", "image": None}
    fmt = PromptFormat(image_tokens=4, max_prompt_len=10)
    whole = prompt_ids(ex, tok, fmt)
    got = encode_prompt(ex, tok, fmt)
    assert got == fit(whole, tok, fmt) == _plain_cut(whole, 10, tok.vision_ids)
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
    # a short last batch keeps the batch shape: the last prompt repeated
    tokens, mask = pad_prompts(prompts[:2], 0, length=4, rows=4)
    assert tokens.tolist() == [[0, 3, 4, 5], [0, 0, 0, 6], [0, 0, 0, 6], [0, 0, 0, 6]]
    assert mask.sum(axis=1).tolist() == [3, 1, 1, 1]
    assert pad_prompts(prompts, 0, rows=2)[0].shape == (3, 3)   # never fewer than given


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


def test_images_at_their_own_sizes_fill_at_most_four_buckets():
    """Batches of images of random sizes (Qwen2.5-VL's 28-pixel image tokens): each prompt has
    as many placeholders as its image makes tokens, and every batch is padded to one of at most
    four capacities, the largest the prompt length."""
    from o1jax.data.prompts import image_buckets, stack_images
    fmt = PromptFormat("{question}", image_patch=(14, 2), max_prompt_len=100)
    assert image_buckets(100) == (13, 25, 50, 100)
    tok = byte_tokenizer(image_token=True)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(40):
        sides = rng.integers(1, 8, (int(rng.integers(1, 5)), 2)) * 28
        examples = [{"question": "x?", "image": np.zeros((h, w, 3), np.uint8)} for h, w in sides]
        batch = stack_images(examples, fmt)
        counts = [prompt_ids(e, tok, fmt).count(tok.image_id) for e in examples]
        assert counts == [(h // 28) * (w // 28) for h, w in sides]
        assert batch.grid.tolist() == [[h // 14, w // 14] for h, w in sides]
        capacity = batch.pixels.shape[1] // 4
        assert capacity == min(b for b in image_buckets(100) if b >= max(counts))
        seen.add(capacity)
    assert len(seen) > 1 and seen <= set(image_buckets(100))
    largest = stack_images(examples, fmt, largest=True)
    assert largest.pixels.shape[1] == 100 * 4
    # a short last batch keeps the batch shape: the last image repeated, as pad_prompts does
    filled = stack_images(examples[:1] + examples[-1:], fmt, rows=4)
    h, w = sides[-1]
    assert filled.grid.tolist() == [list(sides[0] // 14)] + [[h // 14, w // 14]] * 3
