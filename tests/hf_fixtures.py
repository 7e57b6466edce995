"""Tiny random Hugging Face models written by transformers itself (the independent reference)."""

import numpy as np
import torch
import transformers

from o1jax.tokenizer import Tokenizer, byte_tokenizer

VOCAB = 259  # the byte tokenizer's size: every id decodes to text
CHAT_TOKENS = ["<|im_start|>", "<|im_end|>", "<think>", "</think>"]   # ids 259-262
CHAT_VOCAB = VOCAB + len(CHAT_TOKENS)
# Qwen3's chat template, shortened to what a one-turn prompt uses (no tools, no history of
# thinking): the user's turn, then the assistant's, which thinks unless enable_thinking=False.
QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages %}{{ '<|im_start|>' + message.role + '\\n' + message.content"
    " + '<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{%- if enable_thinking is defined and enable_thinking is "
    "false %}{{ '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}")


def chat_tokenizer():
    """The byte tokenizer with Qwen3's chat tokens (special) and thinking tokens (added, not
    special: decoded text keeps them, as Qwen3's does), its chat template, and <|im_end|> as the
    end of a turn (the stop token)."""
    tok = byte_tokenizer()
    tok.tok.add_special_tokens(CHAT_TOKENS[:2])
    tok.tok.add_tokens(CHAT_TOKENS[2:])
    return Tokenizer(tok.tok, bos_token="<s>", eos_token="<|im_end|>", pad_token="<pad>",
                     chat_template=QWEN3_CHAT_TEMPLATE)


def tiny_hf_model(arch: str, seed: int = 0, **overrides):
    """A transformers model with every weight (biases and norms included) drawn at random."""
    kw = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
              bos_token_id=257, eos_token_id=258, pad_token_id=256)
    if arch == "llama":
        kw.update(tie_word_embeddings=False, rope_theta=5000.0)
        kw.update(overrides)
        cfg, cls = transformers.LlamaConfig(**kw), transformers.LlamaForCausalLM
    elif arch == "qwen2":
        kw.update(tie_word_embeddings=True)
        kw.update(overrides)
        cfg, cls = transformers.Qwen2Config(**kw), transformers.Qwen2ForCausalLM
    elif arch == "qwen3":   # head_dim 24, not hidden / heads = 16: Qwen3 states it explicitly
        kw.update(vocab_size=CHAT_VOCAB, head_dim=24, tie_word_embeddings=False, eos_token_id=260)
        kw.update(overrides)
        cfg, cls = transformers.Qwen3Config(**kw), transformers.Qwen3ForCausalLM
    elif arch == "qwen3_moe":   # 4 experts of 32 hidden units, 2 per token
        kw.update(vocab_size=CHAT_VOCAB, head_dim=24, tie_word_embeddings=False, eos_token_id=260,
                  num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                  norm_topk_prob=True)
        kw.update(overrides)
        cfg, cls = transformers.Qwen3MoeConfig(**kw), transformers.Qwen3MoeForCausalLM
    else:
        raise ValueError(arch)
    torch.manual_seed(seed)
    return _randomize(cls(cfg).eval())


def _randomize(model):
    """Every weight drawn at random (from torch's current seed): norms near 1, biases and
    matrices around 0."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_q" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_((0.3 if "bias" in name else 0.08) * torch.randn_like(p))
    return model


# Qwen2.5-VL's chat template as its Hub checkpoints ship it (tokenizer_config.json): an image
# part of a message is rendered as <|vision_start|><|image_pad|><|vision_end|>
QWEN25VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
VL_CHAT_TOKENS = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>"]
VL_CHAT_IDS = {t: VOCAB + i for i, t in enumerate(VL_CHAT_TOKENS)}     # 259-263
VL_CHAT_VOCAB = VOCAB + len(VL_CHAT_TOKENS)


def vl_chat_tokenizer():
    """The byte tokenizer with Qwen2.5-VL's chat and vision tokens (special), its chat
    template and <|im_end|> as the end of a turn; saved beside ``tiny_qwen25vl(chat=True)``,
    whose config.json names the image placeholder and the vision markers."""
    tok = byte_tokenizer()
    tok.tok.add_special_tokens(VL_CHAT_TOKENS)
    return Tokenizer(tok.tok, bos_token="<s>", eos_token="<|im_end|>", pad_token="<pad>",
                     chat_template=QWEN25VL_CHAT_TEMPLATE, image_token="<|image_pad|>",
                     vision_markers=("<|vision_start|>", "<|vision_end|>"))


VL_IMAGE_SIZE = 112   # 8 x 8 patches of 14 pixels: 4 x 4 = 16 image tokens
VL_PIXEL_MEAN, VL_PIXEL_STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)   # not CLIP's: read from file


def tiny_qwen25vl(seed: int = 0, window_size: int = 56, tie: bool = True, chat: bool = False):
    """A tiny random Qwen2.5-VL: 2 decoder layers (M-RoPE sections 2, 3, 3), a 3-block vision
    tower whose blocks 0 and 2 attend within windows of ``window_size`` pixels (56: 2 x 2
    merged patches, four windows of a 112-pixel image; 84: 3 x 3, uneven windows) and block 1
    fully; the byte tokenizer's ids plus <image> (259), or with ``chat`` the ids of
    ``vl_chat_tokenizer`` (Qwen2.5-VL's chat and vision tokens, <|im_end|> ending a turn)."""
    vocab, image, eos = (VL_CHAT_VOCAB, VL_CHAT_IDS["<|image_pad|>"],
                         VL_CHAT_IDS["<|im_end|>"]) if chat else (VOCAB + 1, VOCAB, 258)
    markers = dict(vision_start_token_id=VL_CHAT_IDS["<|vision_start|>"],
                   vision_end_token_id=VL_CHAT_IDS["<|vision_end|>"]) if chat else {}
    cfg = transformers.Qwen2_5_VLConfig(
        text_config=dict(vocab_size=vocab, hidden_size=64, intermediate_size=96,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, rms_norm_eps=1e-5,
                         rope_parameters={"rope_type": "default", "rope_theta": 5000.0,
                                          "mrope_section": [2, 3, 3]},
                         bos_token_id=257, eos_token_id=eos, pad_token_id=256),
        vision_config=dict(depth=3, hidden_size=32, intermediate_size=48, num_heads=2,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                           window_size=window_size, out_hidden_size=64,
                           fullatt_block_indexes=[1]),
        image_token_id=image, tie_word_embeddings=tie, **markers)
    torch.manual_seed(seed)
    return _randomize(transformers.Qwen2_5_VLForConditionalGeneration(cfg).eval())


def vl_processor():
    """transformers' Qwen2-VL image processor (PIL backend) with the fixture's normalisation;
    a 112 x 112 image is kept at its size (a multiple of 28, within min/max pixels)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil)
    return Qwen2VLImageProcessorPil(image_mean=list(VL_PIXEL_MEAN), image_std=list(VL_PIXEL_STD),
                                    patch_size=14, merge_size=2, temporal_patch_size=2)


def save_tiny_qwen25vl(path, **kw) -> str:
    """``tiny_qwen25vl`` saved by transformers with its preprocessor_config.json, the byte
    tokenizer (with <image>; with ``chat=True`` ``vl_chat_tokenizer``) and a generation
    config."""
    model = tiny_qwen25vl(**kw)
    model.save_pretrained(str(path))
    vl_processor().save_pretrained(str(path))
    (vl_chat_tokenizer() if kw.get("chat") else byte_tokenizer(image_token=True)).save(str(path))
    model.generation_config.save_pretrained(str(path))
    return str(path)


def save_tiny_model(path, arch: str, **overrides) -> str:
    model = tiny_hf_model(arch, **overrides)
    model.save_pretrained(str(path))
    (chat_tokenizer() if arch.startswith("qwen3") else byte_tokenizer()).save(str(path))
    model.generation_config.save_pretrained(str(path))
    return str(path)


def hf_logits(model, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """transformers' logits with explicit position ids that skip left padding."""
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    with torch.no_grad():
        out = model(input_ids=torch.tensor(tokens, dtype=torch.long),
                    attention_mask=torch.tensor(mask, dtype=torch.long),
                    position_ids=torch.tensor(positions, dtype=torch.long))
    return out.logits.float().numpy()
