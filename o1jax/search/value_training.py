"""Training value models (``o1jax.search.value_models``) on the policy's own samples,
labelled by the answer checker or, for written searches, the task's solver (no human labels).

* ORM (outcome): every response token of a sampled solution is labelled with whether the
  solution ended correct (Cobbe et al. 2021); the value at the last token is its score.
* PRM (process), Math-Shepherd (Wang et al. 2024): a step ends at a token with a newline
  (``o1jax.search.steps``); from the end of each step of a sampled solution K continuations
  are drawn with the policy, and the step's label is the fraction of them that end correct
  (soft) or whether any does (hard); the last token is labelled with the solution's own
  outcome. Only step-end tokens are trained.
* PRM, exact: for a task whose solution is a written search with a replay (``REPLAYS``:
  Countdown and Sudoku as streams of search) the solver knows whether the state a line leads
  to can still be solved; that is the step's label (no continuations drawn). Or, with the
  ``valid`` rule, whether every line so far is valid (legal, its arithmetic, stated state,
  check and verdict right): a search may walk into dead ends and still be right, but a line
  with a slip in it (the policy's commonest error, docs/results.md) makes the search wrong.

Labels are generated batched on the rollout engine (``strategies.generate``); the value model
is trained by one jitted optax step, with a masked squared error on the labels or (ORM) the
within-problem pairwise loss (Bradley-Terry: a problem's right solution should outscore its
wrong ones), which leaves a logit-valued model (``value_models.squash``).
"""

from __future__ import annotations

import functools
import json
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from o1jax.data import search_tasks, streams, sudoku
from o1jax.data.prompts import PromptFormat, stack_images
from o1jax.models.transformer import Params, Transformer
from o1jax.optim import make_optimizer
from o1jax.policy import image_fields
from o1jax.rollout import SamplingConfig
from o1jax.rollout.scoring import prefix_values
from o1jax.search import steps, strategies, value_models
from o1jax.tokenizer import Tokenizer

LOSSES = ("squared", "pairwise")
# task -> (its example's meta, a response's text) -> the response's lines replayed
REPLAYS: dict[str, Callable[[dict, str], list[streams.Step]]] = {
    **{task: lambda meta, text: search_tasks.replay(meta["numbers"], meta["target"], text)
       for task in ("countdown_search", "countdown_nested")},
    "sudoku": lambda meta, text: sudoku.replay(meta["puzzle"], text),
}


# a step rule: the replayed lines a step end completes -> its label
STEP_RULES: dict[str, Callable[[list[streams.Step]], float]] = {
    "exact": lambda done: float(done[-1].solvable),
    "valid": lambda done: float(all(s.valid for s in done)),
}


class Labelled(NamedTuple):
    """Training rows for a value model: tokens, mask [R, T]; targets [R, T] f32 in [0, 1];
    weights [R, T] f32 (1 where a target counts); images: a vision policy's, each row's
    (``row_images``), or None."""
    tokens: np.ndarray
    mask: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    images: Any = None


def row_images(examples: Sequence[dict], fmt: PromptFormat, group: int):
    """Each of ``group`` rows per example reads its example's image (one shape for all: the
    largest image bucket): [R, ...] or ``Patches``, or None for a text policy."""
    images = stack_images(examples, fmt, largest=True)
    return jax.tree.map(lambda a: np.repeat(a, group, axis=0), images)


def response_span(mask: np.ndarray, prompt_len: int) -> tuple[int, int]:
    """[start, end) columns of a row's response: after the padded prompt, up to its last token."""
    real = np.flatnonzero(mask[prompt_len:])
    return prompt_len, prompt_len + (real[-1] + 1 if real.size else 0)


def orm_labels(gen: strategies.Generation, prompt_len: int) -> Labelled:
    """Every response token labelled with its solution's outcome."""
    targets = np.zeros(gen.tokens.shape, np.float32)
    weights = np.zeros(gen.tokens.shape, np.float32)
    outcome = gen.correct.reshape(-1)
    for r in range(len(gen.tokens)):
        lo, hi = response_span(gen.mask[r], prompt_len)
        targets[r, lo:hi] = outcome[r]
        weights[r, lo:hi] = 1.0
    return Labelled(gen.tokens, gen.mask, targets, weights)


def step_end_columns(tokens: np.ndarray, mask: np.ndarray, prompt_len: int, end_ids
                     ) -> list[int]:
    """Columns of a row where a step of its response ends (``steps.step_ends``; ``end_ids``:
    ``steps.step_end_ids``, as a set)."""
    lo, hi = response_span(mask, prompt_len)
    return [lo + i for i in steps.step_ends(tokens[lo:hi].tolist(), end_ids)]


def math_shepherd_labels(policy: Transformer, params: Params, examples: Sequence[dict],
                         tokenizer: Tokenizer, gen: strategies.Generation, prompt_len: int,
                         continuations: int, max_new_tokens: int, temperature: float = 1.0,
                         soft: bool = True, batch_prompts: int = 64, seed: int = 0
                         ) -> Labelled:
    """Math-Shepherd labels at the step ends of ``gen``'s responses (``examples``: their
    problems, G = gen.correct.shape[1] responses each): from every step end but the last, K =
    ``continuations`` completions are sampled (all prefixes in one batched generation, the
    prefix as the prompt) and checked against the problem's answer (the final answer is in the
    continuation: a prefix ends before the last step)."""
    g = gen.correct.shape[1]
    end_ids = set(steps.step_end_ids(tokenizer))
    targets = np.zeros(gen.tokens.shape, np.float32)
    weights = np.zeros(gen.tokens.shape, np.float32)
    prefixes, owners = [], []
    for r in range(len(gen.tokens)):
        ends = step_end_columns(gen.tokens[r], gen.mask[r], prompt_len, end_ids)
        if not ends:
            continue
        targets[r, ends[-1]] = gen.correct.reshape(-1)[r]
        weights[r, ends[-1]] = 1.0
        for c in ends[:-1]:
            real = gen.mask[r, :c + 1]
            prefixes.append(gen.tokens[r, :c + 1][real].tolist())
            owners.append((r, c))
    # prefixes bucketed by length (multiples of 16), so that a short prefix's continuation gets
    # the room a long one's would not leave; one compiled sampler per bucket
    buckets: dict[int, list[int]] = {}
    for j, p in enumerate(prefixes):
        buckets.setdefault(-(-len(p) // 16) * 16, []).append(j)
    for length, members in sorted(buckets.items()):
        length = min(length, policy.cfg.max_seq_len - 1)
        room = min(max_new_tokens, policy.cfg.max_seq_len - length)
        problems = [examples[owners[j][0] // g] for j in members]
        sampling = SamplingConfig(room, temperature, num_samples=continuations,
                                  stop_ids=tokenizer.stop_ids, pad_id=tokenizer.pad_id)
        cont = strategies.generate(policy, params, problems, tokenizer, sampling,
                                   PromptFormat(max_prompt_len=length,
                                                **image_fields(policy.cfg)),
                                   max(1, batch_prompts // continuations), seed + length,
                                   prompts=[prefixes[j] for j in members])
        reached = cont.correct.mean(axis=1) if soft else cont.correct.max(axis=1)
        for j, y in zip(members, reached):
            r, c = owners[j]
            targets[r, c] = y
            weights[r, c] = 1.0
    return Labelled(gen.tokens, gen.mask, targets, weights)


def check_replayable(examples: Sequence[dict]) -> None:
    """ValueError unless every example's task has exact step labels (``REPLAYS``)."""
    missing = sorted({e["task"] for e in examples} - set(REPLAYS))
    if missing:
        raise ValueError(f"--labels exact: {', '.join(missing)} has no replay of its steps "
                         f"(exact step labels exist for {', '.join(REPLAYS)}); use --labels "
                         "estimated (Math-Shepherd)")


def exact_labels(examples: Sequence[dict], tokenizer: Tokenizer, gen: strategies.Generation,
                 prompt_len: int, rule: str = "exact") -> Labelled:
    """Exact labels at the step ends of ``gen``'s responses (``examples``: their problems, G =
    gen.correct.shape[1] responses each, every task in ``REPLAYS``), from the task's replay of
    the response's text. ``rule`` (``STEP_RULES``): "exact", ``Step.solvable`` of the last line
    a step end completes (whether the state that line leads to can still be solved; 0 for an
    invalid line, stray text or a give-up); "valid", whether every line it completes so far is
    valid (0 from the first slip, stray line or give-up on). The last token takes the
    solution's outcome (as Math-Shepherd's). A step end that completes no line (a response
    opening with a newline) is not trained."""
    label = STEP_RULES[rule]
    g = gen.correct.shape[1]
    end_ids = steps.step_end_ids(tokenizer)
    newlines = {i: tokenizer.decode([i]).count("\n") for i in end_ids}
    targets = np.zeros(gen.tokens.shape, np.float32)
    weights = np.zeros(gen.tokens.shape, np.float32)
    for r in range(len(gen.tokens)):
        ends = step_end_columns(gen.tokens[r], gen.mask[r], prompt_len, set(end_ids))
        if not ends:
            continue
        targets[r, ends[-1]] = gen.correct.reshape(-1)[r]
        weights[r, ends[-1]] = 1.0
        example, text = examples[r // g], gen.texts[r // g][r % g]
        lines = REPLAYS[example["task"]](json.loads(example["meta"]), text)
        breaks = [i for i, ch in enumerate(text) if ch == "\n"]
        # the newlines written up to each column; a step end completes every line before them
        seen = np.cumsum([newlines.get(int(t), 0) for t in gen.tokens[r, prompt_len:ends[-1]]])
        for c in ends[:-1]:
            n = min(int(seen[c - prompt_len]), len(breaks))
            done = [s for s in lines if s.end <= breaks[n - 1]] if n else []
            if done:
                targets[r, c] = label(done)
                weights[r, c] = 1.0
    return Labelled(gen.tokens, gen.mask, targets, weights)


def held_out_report(value_model: value_models.ValueModel, examples: Sequence[dict],
                    tokenizer: Tokenizer, gen: strategies.Generation, fmt: PromptFormat,
                    rule: str = "exact") -> dict:
    """A trained value model on samples it never saw (``gen``, of ``examples`` in ``fmt``):
    ``value_models.report`` of its outcome scores (AUC, within-problem AUC, mean scores) and,
    when every task has a replay, ``step_auc``: the AUC of its values at step ends against the
    exact labels (``exact_labels`` by ``rule``; the last one's label is the outcome)."""
    prompt_len = fmt.max_prompt_len
    v = value_models.values(value_model, gen.tokens, gen.mask,
                            images=stack_images(examples, fmt, largest=True),
                            group=gen.correct.shape[1])
    scores = v[np.arange(len(v)), np.asarray(last_columns(jnp.asarray(gen.mask)))]
    out = value_models.report(value_model, scores.reshape(gen.correct.shape), gen.correct,
                              gen.finished)
    if {e["task"] for e in examples} <= set(REPLAYS):
        labels = exact_labels(examples, tokenizer, gen, prompt_len, rule)
        at = labels.weights > 0
        out["step_auc"] = value_models.auc(v[at], labels.targets[at])
    return out


def last_columns(mask: jax.Array) -> jax.Array:
    """Each row's last real column: [R] int32 (mask [R, T])."""
    return mask.shape[1] - 1 - jnp.argmax(mask[:, ::-1], axis=1)


def value_loss(model: Transformer, params: Params, batch: Labelled) -> jax.Array:
    """Weighted mean squared error of the values against the targets."""
    values = prefix_values(model, params, batch.tokens, batch.mask, batch.images)
    err = (values - batch.targets) ** 2 * batch.weights
    return jnp.sum(err) / jnp.maximum(jnp.sum(batch.weights), 1.0)


def bradley_terry(scores: jax.Array, correct: jax.Array) -> jax.Array:
    """Mean of -log sigmoid(s_right - s_wrong) over every pair of a right and a wrong solution
    of one problem (scores, correct: [B, G], correct 1/0); 0 when no problem has a pair."""
    right = correct > 0.5
    pairs = right[:, :, None] & ~right[:, None, :]
    margin = scores[:, :, None] - scores[:, None, :]
    return jnp.sum(jnp.where(pairs, jax.nn.softplus(-margin), 0.0)) / jnp.maximum(
        jnp.sum(pairs), 1)


def pairwise_loss(model: Transformer, params: Params, batch: Labelled, group: int
                  ) -> jax.Array:
    """``bradley_terry`` on the outcome scores (the head's number at each row's last token,
    unsquashed: a logit) of ORM rows (``orm_labels``) in problems of ``group`` consecutive
    rows; a row is right when its last token's target is 1."""
    values = prefix_values(model, params, batch.tokens, batch.mask, batch.images)
    rows, last = jnp.arange(len(values)), last_columns(batch.mask)
    return bradley_terry(values[rows, last].reshape(-1, group),
                         batch.targets[rows, last].reshape(-1, group))


def _pairwise_problems(data: Labelled, group: int) -> np.ndarray:
    """Indices of the problems (``group`` consecutive rows each) with a right and a wrong row."""
    last = np.asarray(last_columns(jnp.asarray(data.mask)))
    right = data.targets[np.arange(len(last)), last].reshape(-1, group) > 0.5
    mixed = np.flatnonzero(right.any(axis=1) & ~right.all(axis=1))
    if not mixed.size:
        raise ValueError("the pairwise loss needs a problem with both right and wrong samples; "
                         "none has (more problems or samples, or --loss squared)")
    return mixed


def train_value(model: Transformer, params: Params, data: Labelled, steps: int, lr: float,
                batch_size: int, seed: int = 0, loss: str = "squared", group: int = 1
                ) -> tuple[Params, list[float]]:
    """``steps`` Adam steps on random minibatches of ``data``; returns (params, losses).
    ``loss`` "squared": ``value_loss`` on ``batch_size`` rows; "pairwise": ``pairwise_loss``
    on max(1, batch_size // group) whole problems (``group`` rows each), drawn among those with
    a pair."""
    if loss not in LOSSES:
        raise ValueError(f"loss {loss!r}: one of {LOSSES}")
    pairwise = loss == "pairwise"
    objective = functools.partial(pairwise_loss, model, group=group) if pairwise else \
        functools.partial(value_loss, model)
    opt = make_optimizer(lr, 1.0, b2=0.999, weight_decay=None)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt_state, batch):
        value, grads = jax.value_and_grad(objective)(params, batch)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    # what a minibatch draws: rows, or (pairwise) whole problems of `group` rows
    units = _pairwise_problems(data, group) if pairwise else np.arange(len(data.tokens))
    size, width = (max(1, batch_size // group), group) if pairwise else (batch_size, 1)
    rng = np.random.default_rng(seed)
    opt_state = opt.init(params)
    losses = []
    for _ in range(steps):
        picked = rng.choice(units, size=size, replace=len(units) < size)
        idx = (picked[:, None] * width + np.arange(width)).reshape(-1)
        batch = jax.tree.map(lambda x: jnp.asarray(x[idx]), data)
        params, opt_state, value = step(params, opt_state, batch)
        losses.append(float(value))
    return params, losses
