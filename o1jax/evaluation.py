"""Held-out evaluation: greedy accuracy and majority vote over k samples (maj@k), the simplest
form of test-time compute.

With several processes every process runs the same loop over the same examples: each puts only
its own devices' rows into the sampler, verifies only its share of the responses, and the
scores are gathered; process 0 writes the result file.
"""

from __future__ import annotations

import collections
import json
from typing import Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

from o1jax import sharding
from o1jax.data.pipeline import PLAIN_TEMPLATE, decode_example, render_prompt
from o1jax.models.transformer import Params, Transformer
from o1jax.rewards.functions import correctness
from o1jax.rewards.api import default_pool
from o1jax.rewards.parsing import ParseError
from o1jax.rewards.answers import extract_answer, normalize
from o1jax.rollout import SamplingConfig, make_sampler, pad_prompts
from o1jax.tokenizer import Tokenizer, response_texts
from o1jax.workdir import is_writer, read_json, write_text


def sample_responses(policy: Transformer, params: Params, examples: Sequence[dict],
                     tokenizer: Tokenizer, sampling: SamplingConfig, max_prompt_len: int,
                     batch_prompts: int = 64, seed: int = 0, template: str = PLAIN_TEMPLATE
                     ) -> tuple[list[list[str]], list[list[bool]]]:
    """G = sampling.num_samples responses per example: (texts, finished), each [N][G]."""
    sampler = make_sampler(policy, sampling, gather=True)
    texts, finished = [], []
    key = jax.random.key(seed)
    for start in range(0, len(examples), batch_prompts):
        chunk = list(examples[start:start + batch_prompts])
        n = len(chunk)
        chunk += [chunk[-1]] * (batch_prompts - n)  # fixed shape: one compilation
        prompts = [tokenizer.encode(render_prompt(e["question"], tokenizer, template))
                   [-max_prompt_len:] for e in chunk]
        tokens, mask = pad_prompts(prompts, tokenizer.pad_id, max_prompt_len)
        roll = sampler(params, tokens, mask, jax.random.fold_in(key, start))
        rows = response_texts(roll.tokens, roll.response_mask, roll.finished, tokenizer)
        fin = roll.finished.tolist()
        g = sampling.num_samples
        for i in range(n):
            texts.append(rows[i * g:(i + 1) * g])
            finished.append(fin[i * g:(i + 1) * g])
    return texts, finished


def _answer_key(text: str) -> str | None:
    ans = extract_answer(text)
    if ans is None:
        return None
    try:
        return normalize(ans)
    except ParseError:
        return None


def majority_choice(texts: Sequence[str], finished: Sequence[bool]) -> int | None:
    """Index of a response carrying the most frequent final answer (ties: first seen), among
    finished responses with an answer."""
    keys = [(_answer_key(t) if f else None) for t, f in zip(texts, finished)]
    counts = collections.Counter(k for k in keys if k is not None)
    if not counts:
        return None
    best = max(counts.values())
    winner = next(k for k in keys if k is not None and counts[k] == best)
    return keys.index(winner)


def score(texts: Sequence[str], examples: Sequence[dict], finished: Sequence[bool]) -> np.ndarray:
    """Correctness [N] of each response; each process verifies a contiguous 1/process_count
    share and the shares are gathered."""
    n, count, index = len(texts), jax.process_count(), jax.process_index()
    if count == 1:
        return correctness(list(texts), list(examples), list(finished), default_pool())
    per = -(-n // count)
    mine = slice(index * per, min(n, (index + 1) * per))
    share = np.zeros(per, np.float32)
    done = correctness(list(texts[mine]), list(examples[mine]), list(finished[mine]),
                       default_pool())
    share[:len(done)] = done
    return np.asarray(multihost_utils.process_allgather(share)).reshape(-1)[:n]


def evaluate(policy: Transformer, params: Params, examples: Sequence[dict],
             tokenizer: Tokenizer, max_prompt_len: int, max_new_tokens: int,
             maj_k: int = 16, temperature: float = 1.0, batch_prompts: int = 64,
             seed: int = 0, template: str = PLAIN_TEMPLATE) -> dict:
    """{greedy_accuracy, maj{k}_accuracy, pass{k}_accuracy, mean_sample_accuracy}."""
    common = dict(stop_ids=tokenizer.stop_ids, pad_id=tokenizer.pad_id,
                  max_new_tokens=max_new_tokens)
    out = {"num_examples": len(examples)}
    texts, fin = sample_responses(policy, params, examples, tokenizer,
                                  SamplingConfig(greedy=True, **common), max_prompt_len,
                                  batch_prompts, seed, template)
    out["greedy_accuracy"] = float(np.mean(score([t[0] for t in texts], examples,
                                                 [f[0] for f in fin])))
    if maj_k:
        per_batch = max(1, batch_prompts // maj_k)
        texts, fin = sample_responses(policy, params, examples, tokenizer,
                                      SamplingConfig(temperature=temperature, num_samples=maj_k,
                                                     **common), max_prompt_len, per_batch,
                                      seed + 1, template)
        flat = score([t for row in texts for t in row],
                     [e for e in examples for _ in range(maj_k)],
                     [f for row in fin for f in row]).reshape(len(examples), maj_k)
        picks = [majority_choice(t, f) for t, f in zip(texts, fin)]
        out[f"maj{maj_k}_accuracy"] = float(np.mean(
            [flat[i, j] if j is not None else 0.0 for i, j in enumerate(picks)]))
        out[f"pass{maj_k}_accuracy"] = float(np.mean(flat.max(axis=1)))
        out["mean_sample_accuracy"] = float(np.mean(flat))
    return out


def evaluate_stage(exp, name: str, params: Params, maj_k: int, step: int) -> dict:
    """Held-out evaluation of a run's policy at training ``step`` (``exp``: an
    ``experiment.Experiment``), cached in WORKDIR/eval_{name}.json so that a resumed run
    reuses it; a file written at another step (a run resumed to train longer) is redone."""
    cfg = exp.cfg
    path = exp.workdir / f"eval_{name}.json"
    cached = read_json(path) if path.exists() else None
    if sharding.process_0_value(cached is not None and cached.get("step") == step):
        return cached
    test = exp.sources["test"]
    examples = [decode_example(test[i]) for i in range(min(len(test), cfg.eval.num_examples))]
    result = evaluate(exp.policy, params, examples, exp.tokenizer, cfg.data.max_prompt_len,
                      cfg.eval.max_new_tokens, maj_k=maj_k, temperature=cfg.eval.temperature,
                      batch_prompts=cfg.eval.batch_prompts, seed=cfg.seed,
                      template=cfg.data.template)
    result["step"] = step
    if is_writer():
        write_text(path, json.dumps(result, indent=2))
    return result

