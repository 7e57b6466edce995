"""Step-level search guided by a value model (``--verifier``): beam search and DVTS.

A step ends at a token with a newline (``o1jax.search.steps``). Each round, every live beam of a
problem is continued with M sampled next steps (one compiled sampler call for all beams of all
problems: the beam's prefix is the prompt, a step's end or a stop token ends the sample), every
candidate is scored by the value model at its last token, and the best are kept: beam search keeps
the top B of all B x M candidates of a problem; DVTS (diverse verifier tree search) keeps B
independent subtrees, each its own best candidate. Finished beams are carried and compete by
score; when every beam is finished (or out of tokens) the highest-scoring finished beam is the
answer.

Prefixes are recomputed each round (the sampler prefills each beam's prefix once and shares it
with its M samples), and the ledger counts that: prefill of every prefix, decode of every
candidate token, and a value-model forward over every candidate (``verifier_flops``).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import jax
import numpy as np

from o1jax import flops
from o1jax.data.prompts import PromptFormat, encode_prompt, pad_prompts, truncate_prompt
from o1jax.models.transformer import Params, Transformer
from o1jax.rollout import SamplingConfig, make_sampler
from o1jax.search import steps, strategies, value_models
from o1jax.tokenizer import Tokenizer


@dataclasses.dataclass
class Beam:
    tokens: list          # response tokens so far
    score: float = 0.0
    finished: bool = False  # ended with a stop token
    dead: bool = False      # out of tokens without finishing


def _round_up(n: int, to: int = 16) -> int:
    return -(-n // to) * to


def search(policy: Transformer, params: Params, examples: Sequence[dict], tokenizer: Tokenizer,
           value_model: value_models.ValueModel, beams: int, width: int, diverse: bool,
           fmt: PromptFormat, max_new_tokens: int, step_tokens: int, temperature: float,
           batch_rows: int = 64, seed: int = 0) -> tuple[strategies.Generation, dict]:
    """Beam search (``diverse`` False) or DVTS (True) with ``beams`` beams (subtrees) of
    ``width`` candidates each: (one chosen response per problem as a Generation, the ledger:
    per-problem arrays tokens, prompt_tokens, prefill_flops, decode_flops, verifier_flops,
    seconds)."""
    if beams < 1 or width < 1:
        raise ValueError(f"beam search needs beams and width >= 1, got {beams} and {width}")
    mcfg = policy.cfg
    step_end = steps.step_end_ids(tokenizer)
    stop = tuple(tokenizer.stop_ids)
    max_prompt_len = fmt.max_prompt_len
    prompts = [encode_prompt(e, tokenizer, fmt) for e in examples]
    n = len(examples)
    state = [[Beam([]) for _ in range(beams)] for _ in range(n)]  # B x M candidates at the root
    ledger = {k: np.zeros(n) for k in ("tokens", "prefill_flops", "decode_flops",
                                       "verifier_flops")}
    samplers: dict = {}
    key = jax.random.key(seed)
    start = time.perf_counter()
    for rnd in range(max_new_tokens):
        live = [(i, b) for i in range(n) for b, beam in enumerate(state[i])
                if not (beam.finished or beam.dead)]
        if not live:
            break
        used = max(len(state[i][b].tokens) for i, b in live)
        room = min(step_tokens, max_new_tokens - used)  # prompt + used + room <= max_seq_len
        length = min(_round_up(max_prompt_len + used), mcfg.max_seq_len - room)
        cfg = SamplingConfig(room, temperature, num_samples=width, stop_ids=stop + step_end,
                             pad_id=tokenizer.pad_id)
        if cfg not in samplers:  # one compiled sampler per step length, kept across rounds
            samplers[cfg] = make_sampler(policy, cfg, gather=True)
        sampler = samplers[cfg]
        per = max(1, batch_rows // width)
        cands: dict[tuple[int, int], list] = {}
        for lo in range(0, len(live), per):
            chunk = live[lo:lo + per]
            rows = [truncate_prompt(prompts[i] + state[i][b].tokens, length) for i, b in chunk]
            tokens, mask = pad_prompts(rows + [rows[-1]] * (per - len(rows)), tokenizer.pad_id,
                                       length)
            roll = sampler(params, tokens, mask, jax.random.fold_in(key, rnd * 100003 + lo))
            for j, (i, b) in enumerate(chunk):
                parent = state[i][b]
                p = len(prompts[i]) + len(parent.tokens)
                ledger["prefill_flops"][i] += flops.prefill_flops(mcfg, p)
                for s in range(width):
                    r = j * width + s
                    new = roll.tokens[r][roll.response_mask[r]].tolist()
                    ledger["tokens"][i] += len(new)
                    ledger["decode_flops"][i] += flops.decode_flops(mcfg, p, len(new))
                    ended = bool(new) and new[-1] in stop
                    total = len(parent.tokens) + len(new)
                    cands.setdefault((i, b), []).append(Beam(
                        parent.tokens + new, finished=ended,
                        dead=not ended and total >= max_new_tokens))
        _score(value_model, prompts, cands, ledger)
        for i in range(n):
            state[i] = _select(state[i], {b: c for (k, b), c in cands.items() if k == i},
                               beams, diverse)
    chosen = [max(s, key=lambda b: (b.finished, b.score)).tokens for s in state]
    return strategies.chosen_generation(examples, prompts, chosen, tokenizer, max_prompt_len,
                                        time.perf_counter() - start, ledger)


def _score(value_model, prompts, cands, ledger) -> None:
    """Each candidate's value-model score at its last token (and its cost in the ledger)."""
    flat = [(i, beam) for (i, _), group in cands.items() for beam in group]
    if not flat:
        return
    width = min(_round_up(max(len(prompts[i]) + len(b.tokens) for i, b in flat)),
                value_model.model.cfg.max_seq_len)
    seqs = [truncate_prompt(prompts[i] + b.tokens, width) for i, b in flat]
    tokens, mask = pad_prompts(seqs, 0, width)
    for (i, _), seq in zip(flat, seqs):
        ledger["verifier_flops"][i] += flops.verifier_flops(value_model.model.cfg, len(seq))
    for (_, b), s in zip(flat, value_models.outcome_scores(value_model, tokens, mask)):
        b.score = float(s)


def _select(current: list, cands: dict, beams: int, diverse: bool) -> list:
    """The beams kept: beam search the top ``beams`` of finished beams and all candidates;
    DVTS per subtree its best candidate (a finished subtree stays)."""
    if diverse:
        return [max(cands[b], key=lambda c: c.score) if b in cands else beam
                for b, beam in enumerate(current)]
    pool = [b for b in current if b.finished or b.dead] + [c for g in cands.values() for c in g]
    return sorted(pool, key=lambda c: -c.score)[:beams]
