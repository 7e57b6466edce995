"""Rewards inside a compiled program: a host callback over token ids, and a pure-jnp reward.

``make_reward_callback`` lets the RL iteration stay one jitted function: the rewards are
computed on the host (decoding, verifier pool) through ``jax.pure_callback``. Where the reward
needs no parsing, ``suffix_match_reward`` runs entirely in the graph.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from o1jax import sharding
from o1jax.rewards.functions import reward_parts, weighted_sum
from o1jax.rewards.pool import CheckPool
from o1jax.tokenizer import Tokenizer, response_texts


def make_reward_callback(tokenizer: Tokenizer, example_at: Callable[[int], dict],
                         weights: dict[str, float], pool: CheckPool | None = None,
                         mesh: Mesh | None = None,
                         problem_example: Callable[[str, int], dict] | None = None,
                         with_correct: bool = False,
                         call_times: list[tuple[float, float]] | None = None,
                         counted: tuple[str, ...] = ()):
    """A jittable ``(rollout, example_ids [R]) -> (rewards [R] f32, {metric: scalar})``, the
    reward function ``o1jax.rl.iteration`` takes. ``example_at(i)`` returns dataset row i
    (with ``answer``, ``task``, ``meta``); a row whose id is negative is a problem the caller
    knows by its question or its id: the function then takes a third argument, ``questions``
    [R, Q] uint8 (each row's question as UTF-8, ``selfplay.referee.encode_questions``), and
    ``problem_example(question, id)`` returns its example (self-play's proposed and buffer
    problems). ``with_correct`` adds a third output, the correctness reward [R] f32 of each
    row, whatever the weights. ``call_times``, if given, gets the (start, end)
    ``time.perf_counter()`` of every host call appended (the caller owns and clears it).
    ``counted``: more of the pool's counters to log as ``verifier/NAME`` (a code task's
    ``code/REASON``s, ``o1jax.rewards.code.REASONS``).

    With a ``mesh`` the callback runs once per device on the rows that device holds (split over
    every mesh axis that divides R, as the ``host_rows`` rule says), so each process verifies
    only its own rows with its own pool, and the reward scales with hosts.
    """
    means = [f"reward/{n}" for n in weights]
    names = means + [f"verifier/{c}" for c in ("timeouts", "errors") + tuple(counted)]
    checks = list(weights) + (["correctness"] if with_correct and "correctness" not in weights
                              else [])

    def example(i, question):
        if i >= 0:
            return example_at(i)
        if problem_example is None:
            raise ValueError(f"example id {i} < 0 needs a problem_example function")
        return problem_example(bytes(question).rstrip(b"\0").decode(), i)

    def host(tokens, response_mask, finished, example_ids, *questions):
        start = time.perf_counter()
        texts = response_texts(tokens, response_mask, finished, tokenizer)
        ids = np.asarray(example_ids)
        rows = np.asarray(questions[0], np.uint8) if questions else np.zeros((len(ids), 0),
                                                                              np.uint8)
        examples = [example(int(i), q) for i, q in zip(ids, rows)]
        parts, counts = reward_parts(texts, examples, np.asarray(finished), checks, pool)
        rewards, mean = weighted_sum(parts, weights, len(texts))
        vec = np.array([mean[n] for n in means] + [counts.get(n, 0.0)
                                                    for n in names[len(means):]], np.float32)
        if call_times is not None:
            call_times.append((start, time.perf_counter()))
        if with_correct:
            return rewards, vec, parts["correctness"].astype(np.float32)
        return rewards, vec

    def call(tokens, response_mask, finished, example_ids, *questions):
        out = (jax.ShapeDtypeStruct(finished.shape, jnp.float32),
               jax.ShapeDtypeStruct((len(names),), jnp.float32))
        if with_correct:
            out += (jax.ShapeDtypeStruct(finished.shape, jnp.float32),)
        return jax.pure_callback(host, out, tokens, response_mask, finished, example_ids,
                                 *questions, vmap_method="sequential")

    def rewards_fn(roll, example_ids, questions=None):
        args = (roll.tokens, roll.response_mask, roll.finished, example_ids) + (
            () if questions is None else (questions,))
        if mesh is None or mesh.size == 1:
            rewards, vec, *correct = call(*args)
        else:
            rewards, vec, *correct = _per_device(call, mesh, len(means), args, with_correct)
        metrics = {name: vec[i] for i, name in enumerate(names)}
        return (rewards, metrics, *correct)

    return rewards_fn


def _per_device(call, mesh: Mesh, num_means: int, args, with_correct: bool = False):
    """``call`` on each device's rows: rewards (and correctness) stay split, the metric vector
    is combined (its first ``num_means`` entries are means over equal-sized shards, the rest
    counts)."""
    rows = sharding.logical_to_spec(("host_rows",), (args[0].shape[0],), mesh)[0]
    axes = () if rows is None else (rows,) if isinstance(rows, str) else tuple(rows)
    shards = math.prod(mesh.shape[a] for a in axes)

    def local(*shard_args):
        rewards, vec, *correct = call(*shard_args)
        if axes:
            vec = jax.lax.psum(vec, axes)
            vec = jnp.concatenate([vec[:num_means] / shards, vec[num_means:]])
        return (rewards, vec, *correct)

    spec = lambda x: P(rows, *([None] * (x.ndim - 1)))  # noqa: E731
    return jax.shard_map(local, mesh=mesh, in_specs=tuple(spec(a) for a in args),
                         out_specs=(P(rows), P()) + ((P(rows),) if with_correct else ()),
                         check_vma=False)(*args)


def suffix_match_reward(tokens: jax.Array, response_mask: jax.Array, finished: jax.Array,
                        target: jax.Array, target_len: jax.Array) -> jax.Array:
    """1.0 where a finished response ends (just before its stop token) with the row's target
    token sequence, else 0.0. Pure jnp, no callback.

    tokens, response_mask: [R, T]; finished: [R]; target: [R, L] (left-aligned, padded);
    target_len: [R] valid target lengths (>= 1).
    """
    t = tokens.shape[1]
    last = t - 1 - jnp.argmax(response_mask[:, ::-1], axis=1)     # index of the stop token
    end = last - 1                                                # last answer token
    j = jnp.arange(target.shape[1])
    idx = jnp.clip(end[:, None] - target_len[:, None] + 1 + j[None], 0, t - 1)
    got = jnp.take_along_axis(tokens, idx, axis=1)
    inside = jnp.take_along_axis(response_mask, idx, axis=1)
    valid = j[None] < target_len[:, None]
    ok = jnp.all(jnp.where(valid, (got == target) & inside.astype(bool), True), axis=1)
    return (ok & finished.astype(bool) & (target_len >= 1)).astype(jnp.float32)
