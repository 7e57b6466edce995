"""Step-level search guided by a value model (``--verifier``): beam search and DVTS, compiled.

A step ends at a token with a newline (``o1jax.search.steps``). Each round, every live beam of a
problem is continued with M sampled next steps (a step's end or a stop token ends the sample),
every candidate is scored by the value model at its last token, and the best are kept: beam
search keeps the top B of all B x M candidates of a problem; DVTS (diverse verifier tree search)
keeps B independent subtrees, each its own best candidate, and a finished subtree's rows continue
the subtrees still searching (``subtree_rows``: a row that would idle writes another candidate
for them instead, as beam search's rows do). Finished beams are carried and compete by score;
when every beam is finished (or out of tokens) the highest-scoring finished beam is the answer.
As before, a round's steps get at most ``min(step_tokens, max_new_tokens - longest live beam)``
tokens, and at the root the B beams are one prompt (B x M candidates).

One compiled program per (strategy, B, M, step length, token budget) runs every round
(``lax.while_loop``) over B x M rows per problem, each holding its beam's KV caches
(``o1jax.search.cached``): the prompt is prefilled once, each candidate's tokens are decoded from
its beam's cache and read by the value model once, and the kept candidates' rows are copied M
times for the next round. The ledger counts that: one prefill per problem (policy and value
model), decode of every candidate token, the value model over every candidate's new tokens.
"""

from __future__ import annotations

import functools
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from o1jax import flops
from o1jax.data.prompts import (PromptFormat, encode_prompt, pad_prompts, stack_images,
                                truncate_prompt)
from o1jax.models.transformer import Params, Transformer
from o1jax.rollout import SamplingConfig, decode_params
from o1jax.search import cached, steps, strategies, value_models
from o1jax.search.spec import check_memory
from o1jax.tokenizer import Tokenizer


@functools.lru_cache(maxsize=8)
def make_program(policy: Transformer, vmodel: Transformer, cfg: SamplingConfig,
                 stop_ids: tuple[int, ...], beams: int, width: int, diverse: bool,
                 max_new_tokens: int, output: str = "value"):
    """Jitted ``(params, vparams, tokens, mask [n, P] left-padded prompts, key, images) -> (response
    [n, N] of the chosen beam, right-padded; its length [n]; prefix [N, n * B * M] and written
    [N, n * B * M]: each round's candidates' tokens before the step, prompt included, and
    tokens written (0: no candidate))``. ``cfg``: the steps' sampling (max_new_tokens = S,
    stop_ids a step's ends and ``stop_ids``)."""
    b, m, n_new, s = beams, width, max_new_tokens, cfg.max_new_tokens
    ends, stops = jnp.asarray(cfg.stop_ids, jnp.int32), jnp.asarray(stop_ids, jnp.int32)

    @jax.jit
    def run(params, vparams, tokens, mask, key, images=None):
        n, p = tokens.shape
        r = n * b * m
        params, vparams = decode_params(policy, params), decode_params(vmodel, vparams)
        rows = cached.start(policy, params, vmodel, vparams, tokens, mask, p + n_new, cfg,
                            output, b * m, images)
        prompt = jnp.repeat(jnp.sum(mask, axis=1).astype(jnp.int32), b * m)

        def body(c):
            length, done = c["length"], c["finished"] | c["dead"]
            longest = jnp.max(jnp.where(done, 0, length))
            room = jnp.minimum(s, n_new - longest)
            # packed again only when the step would not fit: idle and dropped rows leave gaps
            rows = jax.lax.cond(
                c["rows"].policy["index"] + room > p + n_new,
                lambda rows: cached.align(policy, vmodel, rows,
                                          jnp.max(jnp.where(done, 0, prompt + length))),
                lambda rows: rows, c["rows"])
            key, sub = jax.random.split(c["key"])
            rows, step = cached.extend(policy, params, vmodel, vparams, rows, ~done, room, sub,
                                       cfg, ends, stops, output)
            cols = jnp.where(jnp.arange(s) < step.length[:, None],
                             length[:, None] + jnp.arange(s), n_new)   # n_new: dropped
            new = dict(
                response=c["response"].at[jnp.arange(r)[:, None], cols].set(step.tokens,
                                                                            mode="drop"),
                length=length + step.length, finished=c["finished"] | step.stopped)
            new["dead"] = c["dead"] | (~new["finished"] & (new["length"] >= n_new))
            pool = jnp.where(~done | c["first"], rows.score, -jnp.inf).reshape(n, b * m)
            if diverse:
                parent, first, subtree = subtree_rows(
                    pool, c["subtree"], (new["finished"] | new["dead"]).reshape(n, b * m), b)
            else:
                parent = jnp.repeat(jax.lax.top_k(pool, b)[1], m, axis=1)
                first, subtree = c["first"], c["subtree"]
            parent = (jnp.arange(n)[:, None] * b * m + parent).reshape(-1)
            return dict(jax.tree.map(lambda a: a[parent], new),
                        rows=cached.take_rows(rows, parent), key=key, round=c["round"] + 1,
                        first=first, subtree=subtree,
                        prefix=c["prefix"].at[c["round"]].set(
                            jnp.where(done, 0, prompt + length)),
                        written=c["written"].at[c["round"]].set(step.length))

        c = jax.lax.while_loop(
            lambda c: (c["round"] < n_new) & ~jnp.all(c["finished"] | c["dead"]), body,
            dict(rows=rows, key=key, round=jnp.zeros((), jnp.int32),
                 first=jnp.arange(r) % m == 0,  # a beam's first copy: it alone stands for it
                 subtree=jnp.tile(jnp.arange(b * m) // m, (n, 1)),
                 response=jnp.full((r, n_new), cfg.pad_id, jnp.int32),
                 length=jnp.zeros(r, jnp.int32), finished=jnp.zeros(r, bool),
                 dead=jnp.zeros(r, bool), prefix=jnp.zeros((n_new, r), jnp.int32),
                 written=jnp.zeros((n_new, r), jnp.int32)))
        rank = jnp.where(c["finished"], 2.0, 0.0) + c["rows"].score   # finished first
        rank = jnp.where(c["first"], rank, -jnp.inf).reshape(n, b * m)  # one row a beam
        chosen = jnp.arange(n) * b * m + jnp.argmax(rank, axis=1)
        return c["response"][chosen], c["length"][chosen], c["prefix"], c["written"]

    return run


def subtree_rows(pool: jax.Array, subtree: jax.Array, done: jax.Array, b: int
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """DVTS's next rows for n problems of R rows each: every subtree keeps its best candidate
    (``pool`` [n, R] scores, -inf for no candidate, of the rows ``subtree`` [n, R] says work for
    it); a subtree whose kept beam is ``done`` [n, R] (finished or out of tokens) keeps one row
    that stands for it, and the other rows are shared out among the unfinished subtrees in
    blocks, so that no row idles while a subtree of its problem still searches (with none
    finished: M rows each, the same rows as before). Returns (parent [n, R]: the row each row
    continues, within its problem; first [n * R]: it stands for its finished beam; subtree
    [n, R])."""
    n, r = pool.shape
    mine = subtree[:, None, :] == jnp.arange(b)[None, :, None]                  # [n, B, R]
    kept = jnp.argmax(jnp.where(mine, pool[:, None, :], -jnp.inf), axis=2)    # [n, B]
    at = jnp.arange(n)[:, None]
    finished = done[at, kept]                                                 # [n, B]
    d = jnp.sum(finished, axis=1, keepdims=True)
    order = jnp.argsort(~finished, axis=1, stable=True)      # finished subtrees first
    q = jnp.arange(r)[None, :]
    slot = jnp.where(q < d, q, d + (q - d) * (b - d) // jnp.maximum(r - d, 1))
    slot = jnp.where(d == b, q % b, slot)                   # all finished: copies
    sub = order[at, slot]
    return kept[at, sub], (q < d).reshape(-1), sub


def search(policy: Transformer, params: Params, examples: Sequence[dict], tokenizer: Tokenizer,
           value_model: value_models.ValueModel, beams: int, width: int, diverse: bool,
           fmt: PromptFormat, max_new_tokens: int, step_tokens: int, temperature: float,
           batch_rows: int = 64, seed: int = 0) -> tuple[strategies.Generation, dict]:
    """Beam search (``diverse`` False) or DVTS (True) with ``beams`` beams (subtrees) of
    ``width`` candidates each, about ``batch_rows`` rows (problems x beams x width) per
    compiled call: (one chosen response per problem as a Generation, the ledger: per-problem
    arrays tokens, prompt_tokens, prefill_flops, decode_flops, verifier_flops, seconds)."""
    if beams < 1 or width < 1:
        raise ValueError(f"beam search needs beams and width >= 1, got {beams} and {width}")
    mcfg, vcfg = policy.cfg, value_model.model.cfg
    p = fmt.max_prompt_len
    if p + max_new_tokens > mcfg.max_seq_len:
        raise ValueError(f"beam search: prompt {p} + {max_new_tokens} new tokens exceeds "
                         f"max_seq_len {mcfg.max_seq_len}")
    stop = tuple(tokenizer.stop_ids)
    cfg = SamplingConfig(min(step_tokens, max_new_tokens), temperature,
                         stop_ids=stop + steps.step_end_ids(tokenizer), pad_id=tokenizer.pad_id)
    run = make_program(policy, value_model.model, cfg, stop, beams, width, diverse,
                       max_new_tokens, value_model.output)
    prompts = [encode_prompt(e, tokenizer, fmt) for e in examples]
    n = len(examples)
    ledger = {k: np.zeros(n) for k in ("tokens", "prefill_flops", "decode_flops",
                                       "verifier_flops")}
    per = max(1, batch_rows // (beams * width))
    check_memory(policy, 2 * per * beams * width, p + max_new_tokens)   # both models' caches
    key = jax.random.key(seed)
    responses: list = []
    start = time.perf_counter()
    for lo in range(0, n, per):
        idx = list(range(lo, min(n, lo + per)))
        rows = [truncate_prompt(prompts[i], p) for i in idx]
        tokens, mask = pad_prompts(rows, tokenizer.pad_id, p, per)
        part = [examples[i] for i in idx]
        images = stack_images(part, fmt, largest=True, rows=per)
        resp, length, prefix, written = jax.tree.map(np.asarray, run(
            params, value_model.params, tokens, mask, jax.random.fold_in(key, lo), images))
        responses += [resp[j, :length[j]].tolist() for j in range(len(idx))]
        own = lambda a, j: a[:, j * beams * width:(j + 1) * beams * width]  # noqa: E731
        for j, i in enumerate(idx):   # one prefill per problem, in both models
            ledger["prefill_flops"][i] = flops.prefill_flops(mcfg, len(rows[j]))
            ledger["verifier_flops"][i] = flops.verifier_flops(vcfg, len(rows[j]))
            cached.count_steps(ledger, i, mcfg, vcfg, own(prefix, j), own(written, j))
    return strategies.chosen_generation(examples, prompts, responses, tokenizer, p,
                                        time.perf_counter() - start, ledger)

