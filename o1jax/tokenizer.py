"""Tokenizers: Hugging Face ``tokenizer.json`` files through the ``tokenizers`` library.

A directory holds ``tokenizer.json`` and optionally ``tokenizer_config.json`` (special tokens,
chat template), ``generation_config.json`` (stop token ids) and ``config.json`` (a
vision-language model's ``image_token_id``: its image placeholder, and ``vision_start_token_id``
/ ``vision_end_token_id``: the markers around an image's placeholders), as Hugging Face writes
them.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import tokenizers
from etils import epath
from tokenizers import decoders, models, pre_tokenizers, processors

END_OF_THINKING = "</think>"


def _token_str(tok) -> str | None:
    """tokenizer_config.json stores special tokens as strings or AddedToken dicts."""
    if isinstance(tok, dict):
        return tok.get("content")
    return tok


class Tokenizer:
    """Text <-> token ids, plus the special ids the sampler and trainer need."""

    def __init__(self, tok: tokenizers.Tokenizer, *, bos_token: str | None = None,
                 eos_token: str | None = None, pad_token: str | None = None,
                 extra_stop_ids: Sequence[int] = (), chat_template: str | None = None,
                 image_token: str | None = None, vision_markers: tuple[str, str] | None = None):
        self.tok = tok
        self.image_token = image_token   # the placeholder an image's tokens replace
        self.vision_markers = vision_markers   # (start, end) around an image's placeholders
        self.bos_token, self.eos_token, self.pad_token = bos_token, eos_token, pad_token
        self.chat_template = chat_template
        stop = [self.token_id(eos_token)] if eos_token else []
        stop += [i for i in extra_stop_ids if i not in stop]
        self.stop_ids = tuple(i for i in stop if i is not None)
        pad = self.token_id(pad_token) if pad_token else None
        self.pad_id = pad if pad is not None else (self.stop_ids[0] if self.stop_ids else 0)

    @property
    def end_of_thinking(self) -> str | None:
        """The token that closes a thinking model's reasoning (Qwen3's ``</think>``) where the
        vocabulary holds it as one token, else None."""
        return END_OF_THINKING if self.token_id(END_OF_THINKING) is not None else None

    @property
    def image_id(self) -> int | None:
        return self.token_id(self.image_token)

    @property
    def image_text(self) -> str | None:
        """An image's place in prompt text: its placeholder between the vision markers (Qwen2.5-VL:
        ``<|vision_start|><|image_pad|><|vision_end|>``), or the placeholder alone."""
        if self.image_token is None:
            return None
        start, end = self.vision_markers or ("", "")
        return start + self.image_token + end

    @property
    def vision_ids(self) -> tuple[int, ...]:
        """The ids a vision prompt must keep when it is cut: the placeholder and the markers."""
        names = (self.image_token,) + tuple(self.vision_markers or ())
        return tuple(i for i in map(self.token_id, names) if i is not None)

    def token_id(self, token: str | None) -> int | None:
        return None if token is None else self.tok.token_to_id(token)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    @classmethod
    def from_dir(cls, path: str) -> "Tokenizer":
        path = epath.Path(path)  # a local directory or gs://
        if not (path / "tokenizer.json").exists():
            raise FileNotFoundError(f"{path}: no tokenizer.json")
        tok = tokenizers.Tokenizer.from_str((path / "tokenizer.json").read_text())
        cfg = _read_json(path / "tokenizer_config.json")
        gen = _read_json(path / "generation_config.json")
        eos_ids = gen.get("eos_token_id", [])
        eos_ids = [eos_ids] if isinstance(eos_ids, int) else list(eos_ids)
        model = _read_json(path / "config.json")
        image_id = model.get("image_token_id")
        names = tuple(tok.id_to_token(i) for i in (model.get("vision_start_token_id"),
                                                   model.get("vision_end_token_id"))
                      if i is not None)
        markers = names if image_id is not None and len(names) == 2 and None not in names \
            else None
        return cls(tok, bos_token=_token_str(cfg.get("bos_token")),
                   eos_token=_token_str(cfg.get("eos_token")),
                   pad_token=_token_str(cfg.get("pad_token")),
                   extra_stop_ids=eos_ids, chat_template=cfg.get("chat_template"),
                   image_token=None if image_id is None else tok.id_to_token(image_id),
                   vision_markers=markers)

    def save(self, path: str) -> None:
        """Writes tokenizer.json and a tokenizer_config.json that transformers loads."""
        os.makedirs(path, exist_ok=True)
        self.tok.save(os.path.join(path, "tokenizer.json"))
        cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": self.bos_token,
               "eos_token": self.eos_token, "pad_token": self.pad_token,
               "clean_up_tokenization_spaces": False}
        if self.chat_template:
            cfg["chat_template"] = self.chat_template
        with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
            json.dump(cfg, f, indent=2)


def _read_json(path: epath.Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def byte_tokenizer(image_token: bool = False) -> Tokenizer:
    """A byte-level tokenizer with no merges: 256 byte tokens then <pad>, <s>, </s> (ids 256-258),
    and with ``image_token`` the image placeholder <image> (id 259).

    Encodes any text; ``encode`` prepends <s>. Used for models trained from scratch.
    """
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    byte_order = sorted(alphabet, key=lambda ch: _byte_of(ch))
    vocab = {ch: i for i, ch in enumerate(byte_order)}
    tok = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<pad>", "<s>", "</s>"] + (["<image>"] if image_token else []))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 257)])
    return Tokenizer(tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                     image_token="<image>" if image_token else None)


def _byte_of(ch: str) -> int:
    """Inverse of GPT-2's bytes_to_unicode map."""
    code = ord(ch)
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    if code in printable:
        return code
    missing = [b for b in range(256) if b not in printable]
    return missing[code - 256]


def response_texts(tokens, response_mask, finished, tokenizer: "Tokenizer") -> list[str]:
    """Decodes each row's response tokens ([R, T] arrays), without its final stop token."""
    import numpy as np
    tokens, response_mask = np.asarray(tokens), np.asarray(response_mask).astype(bool)
    out = []
    for row, m, fin in zip(tokens, response_mask, np.asarray(finished)):
        ids = row[m].tolist()
        if fin and ids:
            ids = ids[:-1]
        out.append(tokenizer.decode(ids))
    return out
