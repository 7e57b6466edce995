"""Test-time compute strategies over the rollout engine, with a FLOPs ledger per problem.

A strategy is a way to spend compute on a problem and pick one answer. Each runs on
``Generation``s: the responses of one compiled sampler over all problems, verified, with the
prompt and generated token counts from which ``o1jax/flops.py`` counts prefill and decode FLOPs.
``score`` turns a generation into per-problem ``Scores`` for a strategy at a budget:

* ``greedy``: one argmax response (budget 1).
* ``sample``: one of k samples taken at random, no selection (expected accuracy = the mean over
  samples, i.e. sampled pass@1), at the cost of k samples: the baseline selection must beat.
* ``majority``: the answer most of k samples give, answers grouped by the verifier's
  equivalence (``o1jax.search.voting``), a tie to the answer seen first in the block (each
  block is decided by its own k answers alone), averaged over the n // k disjoint blocks of k
  of the n samples drawn.
* ``pass_at_k``: whether any of k samples is right (unbiased estimator from n samples): the
  ceiling any selection rule over k samples could reach.
* ``best_of_n``: among k samples that finished with an answer, the one a verifier scores
  highest (outcome score: its value at the last token), per disjoint block of k as majority.
* ``weighted_majority``: majority vote with each answer's votes weighted by its verifier score
  (ties as majority's).
* ``think_longer``: greedy with at most ``budget`` new tokens.
* ``budget_forcing``: greedy with at most ``budget`` new tokens under s1's budget forcing
  (``rollout.decoding.BudgetForcing``).

Budgets are samples per problem for sample, majority, pass_at_k and the verifier strategies,
and new tokens for think_longer and budget_forcing.
"""

from __future__ import annotations

import concurrent.futures
import time
from typing import NamedTuple, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

from o1jax import flops
from o1jax.data.prompts import (PromptFormat, encode_prompt, pad_prompts, stack_images,
                                truncate_prompt)
from o1jax.models.config import ModelConfig
from o1jax.models.transformer import Params, Transformer
from o1jax.policy import image_fields
from o1jax.rewards.api import default_pool
from o1jax.rewards.functions import correctness
from o1jax.rollout import SamplingConfig, gathering_sampler
from o1jax.search import voting
from o1jax.tokenizer import Tokenizer, response_texts

SEARCHED = ("beam", "dvts", "mcts")   # o1jax/search/beam.py, mcts.py
STRATEGIES = ("greedy", "sample", "majority", "think_longer", "budget_forcing", "best_of_n",
              "weighted_majority") + SEARCHED + ("compute_optimal",)
# what compute_optimal chooses among at a budget of samples: rules that pick an answer
SELECTING = ("majority", "best_of_n", "weighted_majority") + SEARCHED
VERIFIED = ("best_of_n", "weighted_majority")   # selection by a verifier's outcome score
SAMPLED = ("sample", "majority") + VERIFIED      # strategies on the n-sample generation
TOKEN_BUDGETED = ("think_longer", "budget_forcing")


class Generation(NamedTuple):
    """G responses to each of N problems from one sampler, verified.

    texts, answers: [N][G] response text and its extracted final answer (None: none, or
    truncated); tokens, mask: [N * G, P + max_new] int32 / bool, prompt and response as the
    sampler returned them (for value models); correct: [N, G] 0/1; finished: [N, G] bool;
    lengths: [N, G] generated tokens (stop token included); prompt_lengths: [N] real prompt
    tokens; seconds: wall time of the sampler calls; warmup_seconds: the untimed first call
    (compilation and one batch); confidence: [N, G] each response's geometric-mean token
    probability as sampled, exp(mean log-prob) (the ``confidence`` verifier), or None."""
    texts: list
    answers: list
    tokens: np.ndarray
    mask: np.ndarray
    correct: np.ndarray
    finished: np.ndarray
    lengths: np.ndarray
    prompt_lengths: np.ndarray
    seconds: float
    warmup_seconds: float
    confidence: np.ndarray | None = None


class Scores(NamedTuple):
    """Per-problem results of a strategy at a budget, each [N]: accuracy (0/1, or an expected
    value), generated and prompt tokens, prefill, decode and verifier FLOPs, wall seconds."""
    accuracy: np.ndarray
    tokens: np.ndarray
    prompt_tokens: np.ndarray
    prefill_flops: np.ndarray
    decode_flops: np.ndarray
    verifier_flops: np.ndarray
    seconds: np.ndarray


def verify(texts: Sequence[str], examples: Sequence[dict], finished: Sequence[bool]
           ) -> np.ndarray:
    """Correctness [R] of each response (the training reward's checker, in the worker pool);
    with several processes each verifies a contiguous share and the shares are gathered."""
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


def _check(texts: list, examples: list, finished: list) -> tuple[np.ndarray, list]:
    """(correctness, extracted answers) of responses: both in the worker pool."""
    return (verify(texts, examples, finished),
            voting.extract_answers(texts, finished, default_pool()))


def generate(policy: Transformer, params: Params, examples: Sequence[dict],
             tokenizer: Tokenizer, sampling: SamplingConfig, fmt: PromptFormat,
             batch_prompts: int, seed: int = 0,
             prompts: Sequence[Sequence[int]] | None = None) -> Generation:
    """``sampling.num_samples`` responses per example, in batches of ``batch_prompts`` prompts
    (the last batch padded with copies: one compiled sampler), verified. With one process a
    batch is verified in the background while the next one samples (the sampler releases the
    interpreter); with several, verification is split between them after sampling (its
    collectives must not interleave with the sampler's). Prompts are the examples' in ``fmt``
    (cut to and left-padded to ``fmt.max_prompt_len``), or ``prompts``: token lists to use
    instead (continuations of partial solutions). A vision policy's prompts carry their
    example's image (placeholders where ``prompt_ids`` puts them)."""
    reads = image_fields(policy.cfg)
    if (fmt.image_tokens, fmt.image_patch) != (reads.get("image_tokens", 0),
                                               reads.get("image_patch", ())):
        raise ValueError(f"the prompt format's images ({fmt.image_tokens} placeholders, "
                         f"patch {fmt.image_patch}) are not the policy's ({reads or 'none'}): "
                         "build both with o1jax.policy")
    sampler = gathering_sampler(policy, sampling)
    g = sampling.num_samples
    if prompts is None:
        prompts = [encode_prompt(e, tokenizer, fmt) for e in examples]
    key = jax.random.key(seed)
    texts, finished, lengths, checks, seconds = [], [], [], [], 0.0
    tokens_out, masks, confidence = [], [], []
    overlap = jax.process_count() == 1
    with concurrent.futures.ThreadPoolExecutor(1) as checker:
        for start in range(0, len(examples), batch_prompts):
            chunk = prompts[start:start + batch_prompts]
            n = len(chunk)
            tokens, mask = pad_prompts(chunk, tokenizer.pad_id, fmt.max_prompt_len,
                                       batch_prompts)
            part = list(examples[start:start + n])
            images = stack_images(part, fmt, rows=batch_prompts)
            if start == 0:  # compile outside the timed calls
                t = time.perf_counter()
                jax.block_until_ready(sampler(params, tokens, mask, key, images))
                warmup = time.perf_counter() - t
            t = time.perf_counter()
            roll = sampler(params, tokens, mask, jax.random.fold_in(key, start), images)
            seconds += time.perf_counter() - t
            batch = response_texts(roll.tokens, roll.response_mask, roll.finished,
                                   tokenizer)[:n * g]
            done = roll.finished.tolist()[:n * g]
            if overlap:
                checks.append(checker.submit(_check, batch, [e for e in examples[start:start + n]
                                                             for _ in range(g)], done))
            texts += batch
            finished += done
            tokens_out.append(np.asarray(roll.tokens)[:n * g])
            masks.append(np.asarray(roll.mask)[:n * g])
            lengths += roll.lengths.tolist()[:n * g]
            wrote = np.asarray(roll.response_mask)[:n * g]
            confidence.append(np.exp((np.asarray(roll.logprobs)[:n * g] * wrote).sum(axis=1) /
                                     np.maximum(wrote.sum(axis=1), 1)))
        if overlap:
            results = [c.result() for c in checks]
            correct = np.concatenate([r[0] for r in results])
            answers = [a for r in results for a in r[1]]
        else:
            correct, answers = _check(texts, [e for e in examples for _ in range(g)], finished)
    rows = lambda x: [x[i * g:(i + 1) * g] for i in range(len(examples))]  # noqa: E731
    return Generation(texts=rows(texts), answers=rows(answers),
                      tokens=np.concatenate(tokens_out), mask=np.concatenate(masks),
                      correct=np.asarray(correct, np.float64).reshape(-1, g),
                      finished=np.asarray(finished, bool).reshape(-1, g),
                      lengths=np.asarray(lengths, np.int64).reshape(-1, g),
                      prompt_lengths=np.asarray([len(p) for p in prompts]), seconds=seconds,
                      warmup_seconds=warmup, confidence=np.concatenate(confidence).reshape(-1, g))


def rows_of(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]],
            max_prompt_len: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """tokens, mask [N, P + longest response] in the sampler's layout: each prompt cut and
    left-padded to P columns (``prompts.truncate_prompt``, ``pad_prompts``), its response after
    it (for the rows a search chose)."""
    width = max([len(r) for r in responses] + [1])
    tokens, mask = pad_prompts([truncate_prompt(p, max_prompt_len) for p in prompts], pad_id,
                               max_prompt_len)
    tokens = np.pad(tokens, ((0, 0), (0, width)), constant_values=pad_id)
    mask = np.pad(mask, ((0, 0), (0, width)))
    for i, r in enumerate(responses):
        tokens[i, max_prompt_len:max_prompt_len + len(r)] = r
        mask[i, max_prompt_len:max_prompt_len + len(r)] = True
    return tokens, mask


def chosen_generation(examples: Sequence[dict], prompts: Sequence[Sequence[int]],
                      responses: Sequence[Sequence[int]], tokenizer: Tokenizer,
                      max_prompt_len: int, seconds: float, ledger: dict
                      ) -> tuple[Generation, dict]:
    """The one response a search chose per problem (its tokens after the prompt, a final stop
    token included) -> (a verified ``Generation`` of G = 1, ``ledger`` with the per-problem
    prompt_tokens and seconds added: the search's total wall time shared evenly)."""
    n, stop = len(examples), set(tokenizer.stop_ids)
    finished = [bool(r) and r[-1] in stop for r in responses]
    texts = [tokenizer.decode([t for t in r if t not in stop]) for r in responses]
    correct = verify(texts, list(examples), finished)
    answers = voting.extract_answers(texts, finished, default_pool())
    tokens, mask = rows_of(prompts, responses, max_prompt_len, tokenizer.pad_id)
    gen = Generation(
        texts=[[t] for t in texts], answers=[[a] for a in answers], tokens=tokens, mask=mask,
        correct=np.asarray(correct, np.float64).reshape(n, 1),
        finished=np.asarray(finished).reshape(n, 1),
        lengths=np.array([[len(r)] for r in responses]),
        prompt_lengths=np.array([len(p) for p in prompts]), seconds=seconds, warmup_seconds=0.0)
    ledger = dict(ledger, prompt_tokens=gen.prompt_lengths.astype(float),
                  seconds=np.full(n, seconds / max(n, 1)))
    return gen, ledger


def _ledger(model: ModelConfig, gen: Generation, samples: float,
            verifier_cost: np.ndarray | None = None) -> dict:
    """Mean cost per problem of ``samples`` responses like the generation's (prefill once: the
    sampler prefills a prompt once and copies its cache to every sample), and with
    ``verifier_cost`` ([N, G] FLOPs of checking each sample) their checks."""
    p = gen.prompt_lengths
    decode = np.array([[flops.decode_flops(model, int(p[i]), int(n)) for n in row]
                       for i, row in enumerate(gen.lengths)])
    checked = np.zeros(len(p)) if verifier_cost is None else \
        samples * np.asarray(verifier_cost).mean(axis=1)
    return dict(tokens=samples * gen.lengths.mean(axis=1), prompt_tokens=p.astype(float),
                prefill_flops=np.array([flops.prefill_flops(model, int(n)) for n in p]),
                decode_flops=samples * decode.mean(axis=1), verifier_flops=checked,
                seconds=np.full(len(p), gen.seconds / len(p) * samples / gen.lengths.shape[1]))


def _by_blocks(budget: int, gen: Generation, pick) -> np.ndarray:
    """Accuracy of a selection rule ``pick(i, lo) -> index in [lo, lo + budget) or None``
    averaged over the n // budget disjoint blocks of each problem's n samples."""
    n = gen.correct.shape[1]
    blocks = n // budget
    acc = np.zeros(len(gen.correct))
    for i in range(len(gen.correct)):
        for b in range(blocks):
            j = pick(i, b * budget)
            acc[i] += gen.correct[i, j] / blocks if j is not None else 0.0
    return acc


def score(strategy: str, budget: int, gen: Generation, model: ModelConfig,
          classes: list[list[int]] | None = None, verifier_scores: np.ndarray | None = None,
          verifier_cost: np.ndarray | None = None) -> Scores:
    """Per-problem ``Scores`` of ``strategy`` at ``budget`` (see the module docstring) from
    ``gen``; ``majority`` and ``weighted_majority`` need ``classes``, the answers'
    ``voting.group_answers``; ``best_of_n`` and ``weighted_majority`` the verifier's outcome
    score of every sample, [N, G], and the FLOPs of each check, [N, G] (for the ledger)."""
    n = gen.correct.shape[1]
    if strategy in ("greedy",) + TOKEN_BUDGETED:
        return Scores(accuracy=gen.correct[:, 0], **_ledger(model, gen, 1))
    if not 1 <= budget <= n:
        raise ValueError(f"{strategy} at {budget} samples needs 1..{n} samples per problem")
    if strategy in VERIFIED and verifier_scores is None:
        raise ValueError(f"{strategy} needs a verifier's scores")
    if strategy == "sample":
        acc = gen.correct.mean(axis=1)
    elif strategy == "pass_at_k":
        acc = np.array([voting.pass_at_k(n, int(c), budget) for c in gen.correct.sum(axis=1)])
    elif strategy == "majority":
        acc = _by_blocks(budget, gen, lambda i, lo: _offset(
            voting.majority(classes[i][lo:lo + budget]), lo))
    elif strategy == "best_of_n":  # among the samples that finished with an answer
        answered = np.array([[a is not None for a in row] for row in gen.answers])
        ranked = np.where(answered & gen.finished, verifier_scores, -np.inf)
        acc = _by_blocks(budget, gen, lambda i, lo: None if not np.isfinite(
            ranked[i, lo:lo + budget]).any() else lo + int(np.argmax(ranked[i, lo:lo + budget])))
    elif strategy == "weighted_majority":
        acc = _by_blocks(budget, gen, lambda i, lo: _offset(voting.majority(
            classes[i][lo:lo + budget], verifier_scores[i, lo:lo + budget]), lo))
    else:
        raise ValueError(f"unknown strategy {strategy!r}; known: {STRATEGIES}")
    return Scores(accuracy=acc, **_ledger(model, gen, budget,
                                          verifier_cost if strategy in VERIFIED else None))


def _offset(j: int | None, lo: int) -> int | None:
    return None if j is None else lo + j
