"""Tiny random Hugging Face models written by transformers itself (the independent reference)."""

import numpy as np
import torch
import transformers

from o1jax.tokenizer import byte_tokenizer

VOCAB = 259  # the byte tokenizer's size: every id decodes to text


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
    else:
        raise ValueError(arch)
    torch.manual_seed(seed)
    model = cls(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_((0.3 if "bias" in name else 0.08) * torch.randn_like(p))
    return model


def save_tiny_model(path, arch: str, **overrides) -> str:
    model = tiny_hf_model(arch, **overrides)
    model.save_pretrained(str(path))
    byte_tokenizer().save(str(path))
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
