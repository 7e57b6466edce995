"""What the policy's searches do during RL, for a task written as a stream of search
(``countdown_search``, ``sudoku``): per iteration, over the sampled responses,

    search/backup_share   the share with at least one back-up line
    search/backups_mean   back-up lines per response
    search/stuck_share    the share that give up (the ``stuck`` line)

beside ``response_length_mean`` (o1's and R1's signature: responses grow longer as RL goes on,
and here the growth is search). Counted from each response's text (the task's ``*_stats``),
on the host, as the reward callback is; ``o1jax.rewards`` imports no task code, so the count is
this wrapper around the reward function rather than a reward part.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from o1jax import sharding
from o1jax.data import search_tasks, sudoku
from o1jax.tokenizer import Tokenizer, response_texts

STATS: dict[str, Callable[[str], dict]] = {"countdown_search": search_tasks.search_stats,
                                           "countdown_nested": search_tasks.search_stats,
                                           "sudoku": sudoku.sudoku_stats}
NAMES = ("search/backup_share", "search/backups_mean", "search/stuck_share")


def search_counts(texts: list[str], stats: Callable[[str], dict]) -> np.ndarray:
    """[4] f32 over the responses ``texts``: responses, those with a back-up, back-up lines,
    those that give up (``stats``: a task's ``search_stats``)."""
    s = [stats(t) for t in texts]
    return np.array([len(s), sum(x["backups"] > 0 for x in s), sum(x["backups"] for x in s),
                     sum(x["gave_up"] for x in s)], np.float32)


def search_metrics(counts: jax.Array) -> dict:
    """``NAMES`` from ``search_counts`` (summed over devices): shares of the responses."""
    n = jnp.maximum(counts[0], 1.0)
    return dict(zip(NAMES, (counts[1] / n, counts[2] / n, counts[3] / n)))


def with_search_metrics(reward_fn, tokenizer: Tokenizer, task: str, mesh: Mesh | None = None):
    """``reward_fn`` (``rl.iteration.RewardFn``: ``(rollout, example_ids, ...) -> (rewards,
    metrics, ...)``) with ``NAMES`` added to its metrics when ``task`` is written as a stream
    of search; any other task's ``reward_fn`` as it is. With a ``mesh`` the texts are counted
    per device on the rows it holds (the reward callback's ``host_rows`` split) and summed."""
    if task not in STATS:
        return reward_fn

    def host(tokens, response_mask, finished):
        return search_counts(response_texts(tokens, response_mask, finished, tokenizer),
                             STATS[task])

    def call(tokens, response_mask, finished):
        return jax.pure_callback(host, jax.ShapeDtypeStruct((4,), jnp.float32), tokens,
                                 response_mask, finished, vmap_method="sequential")

    def counts(roll) -> jax.Array:
        args = (roll.tokens, roll.response_mask, roll.finished)
        if mesh is None or mesh.size == 1:
            return call(*args)
        rows = sharding.logical_to_spec(("host_rows",), (args[0].shape[0],), mesh)[0]
        axes = () if rows is None else (rows,) if isinstance(rows, str) else tuple(rows)
        spec = lambda x: P(rows, *([None] * (x.ndim - 1)))  # noqa: E731
        local = lambda *a: jax.lax.psum(call(*a), axes) if axes else call(*a)  # noqa: E731
        return jax.shard_map(local, mesh=mesh, in_specs=tuple(spec(a) for a in args),
                             out_specs=P(), check_vma=False)(*args)

    def wrapped(roll, example_ids, *rest):
        rewards, metrics, *more = reward_fn(roll, example_ids, *rest)
        return (rewards, {**metrics, **search_metrics(counts(roll))}, *more)

    return wrapped
