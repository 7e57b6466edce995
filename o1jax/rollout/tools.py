"""Tool calls inside the rollout: the policy writes a Python program between ``<tool>`` and
``</tool>``; when a row closes one, the program runs in the code rewards' sandbox
(o1jax/rewards/sandbox.py) and its output, bounded, is appended to that row as
``<output>...</output>``, tokens the policy did not write. The other rows keep decoding.

In the compiled sampler (o1jax/rollout/sampler.py) a call is a host callback under ``lax.cond``,
taken only at a step where some row has just closed a call (as the reward is a host callback at
the rollout's end). Each device's rows are run by their own process (``shard_map``), so calls
scale with hosts. The output's tokens are then fed one per decode step, in place of what the
policy would have sampled, and the rollout's ``response_mask`` leaves them out: they are masked
out of the policy loss and the KL, and rewards read only what the policy wrote.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from o1jax import sharding
from o1jax.config.blocks import ToolsConfig
from o1jax.rewards.sandbox import Limits, run_programs
from o1jax.tokenizer import Tokenizer

OPEN, CLOSE, OUTPUT_OPEN, OUTPUT_CLOSE = "<tool>", "</tool>", "<output>", "</output>"


@dataclasses.dataclass(frozen=True, eq=False)
class ToolCalls:
    """What the sampler needs to run tool calls (compared by identity: a static argument).

    close_ids:          the tokens that end a call (``</tool>``)
    max_calls:          calls per response; a row's later calls get no output
    max_output_tokens:  K, the most tokens one call's output appends (markers included)
    run:                host function (tokens [R, N] int32, the response so far, pad after it;
                        closed [R] bool) -> (output [R, K] int32, lengths [R] int32), called for
                        the rows that just closed a call
    """
    close_ids: tuple[int, ...]
    max_calls: int
    max_output_tokens: int
    run: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def program_of(response: str) -> str:
    """The program of the call a response has just closed: the text between its last ``<tool>``
    and its final ``</tool>`` (empty when there is no opening marker)."""
    body = response[:-len(CLOSE)] if response.endswith(CLOSE) else response
    start = body.rfind(OPEN)
    return "" if start < 0 else body[start + len(OPEN):]


def split_outputs(solution: str) -> list[tuple[str, bool]]:
    """``solution`` cut into consecutive pieces, each with whether the policy writes it: the
    ``<output>...</output>`` spans (markers included) are the tool's, as in the rollout."""
    pieces, at = [], 0
    for m in re.finditer(re.escape(OUTPUT_OPEN) + ".*?" + re.escape(OUTPUT_CLOSE), solution,
                         re.DOTALL):
        pieces += [(solution[at:m.start()], True), (m.group(0), False)]
        at = m.end()
    return [(text, by_policy) for text, by_policy in pieces + [(solution[at:], True)] if text]


def tool_outputs(programs: list[str], limits: Limits) -> list[str]:
    """What each call shows the policy: the program's stdout (stripped), or on failure its
    status and the last line of its error (a traceback's exception). The programs of one
    decode step run in one sandbox, a forked child each (``sandbox.run_programs``)."""
    todo = [i for i, p in enumerate(programs) if p.strip()]
    outs = ["error: no program"] * len(programs)
    for i, outcome in zip(todo, run_programs([programs[i] for i in todo], limits)):
        if outcome.status == "ok":
            outs[i] = outcome.stdout.strip()
        else:
            lines = outcome.stderr.strip().splitlines()
            outs[i] = f"{outcome.status}: {lines[-1] if lines else ''}".strip()
    return outs


def python_tool(tokenizer: Tokenizer, cfg: ToolsConfig) -> ToolCalls:
    """The Python interpreter as a tool, with ``cfg``'s call cap, output length and limits."""
    enc = lambda s: tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
    opening, closing = enc(OUTPUT_OPEN), enc(OUTPUT_CLOSE)
    k = cfg.max_output_tokens
    if k < len(opening) + len(closing) + 1:
        raise ValueError(f"tools.max_output_tokens={k} cannot hold {OUTPUT_OPEN}, one token and "
                         f"{OUTPUT_CLOSE} ({len(opening) + len(closing) + 1} tokens)")
    limits = Limits(cpu_seconds=cfg.cpu_seconds, wall_seconds=cfg.wall_seconds,
                    output_bytes=16 << 10)

    def run(tokens, closed):
        tokens, closed = np.asarray(tokens), np.asarray(closed).astype(bool)
        out = np.full((len(tokens), k), tokenizer.pad_id, np.int32)
        lengths = np.zeros((len(tokens),), np.int32)
        rows = np.flatnonzero(closed)
        programs = [program_of(tokenizer.decode(tokens[i][tokens[i] != tokenizer.pad_id]
                                                .tolist())) for i in rows]
        for i, text in zip(rows, tool_outputs(programs, limits)):
            ids = opening + enc(text.replace(OUTPUT_CLOSE, ""))[
                :k - len(opening) - len(closing)] + closing
            out[i, :len(ids)], lengths[i] = ids, len(ids)
        return out, lengths

    return ToolCalls(tuple(enc(CLOSE)), cfg.max_calls, k, run)


def from_config(cfg: ToolsConfig, tokenizer: Tokenizer) -> ToolCalls | None:
    """The run's tools (``tools`` block), or None when they are off."""
    return python_tool(tokenizer, cfg) if cfg.enabled else None


# ------------------------------------------------------------------ inside the compiled sampler
def init_state(tools: ToolCalls, rows: int) -> dict:
    """Per row: the pending output (``queue`` [R, K], ``at`` the next index, ``left`` tokens
    still to write) and the calls made."""
    zeros = jnp.zeros((rows,), jnp.int32)
    return dict(queue=jnp.zeros((rows, tools.max_output_tokens), jnp.int32), at=zeros,
                left=zeros, calls=zeros)


def force_output(state: dict, tok: jax.Array) -> tuple[jax.Array, jax.Array, dict]:
    """Replaces the sampled tokens tok [R] of rows with output pending by their next output
    token: (tokens, forced [R] bool, state)."""
    forced = state["left"] > 0
    k = state["queue"].shape[1]
    nxt = jnp.take_along_axis(state["queue"], jnp.minimum(state["at"], k - 1)[:, None], 1)[:, 0]
    inc = forced.astype(jnp.int32)
    return (jnp.where(forced, nxt, tok), forced,
            dict(state, at=state["at"] + inc, left=state["left"] - inc))


def call_closed(tools: ToolCalls, state: dict, tokens: jax.Array, written: jax.Array,
                step: jax.Array, live: jax.Array, mesh: Mesh | None) -> dict:
    """After column ``step`` of tokens/written [R, N] is written: runs the calls that rows
    (``live`` [R]) closed there with tokens the policy wrote, up to ``max_calls`` per row, and
    queues their outputs."""
    n = len(tools.close_ids)
    start = jnp.maximum(step - n + 1, 0)
    window = jax.lax.dynamic_slice_in_dim(tokens, start, n, axis=1)
    by_policy = jax.lax.dynamic_slice_in_dim(written, start, n, axis=1)
    closed = (live & (step >= n - 1) & (state["calls"] < tools.max_calls)
              & jnp.all(window == jnp.asarray(tools.close_ids, jnp.int32), axis=1)
              & jnp.all(by_policy, axis=1))

    def run(state):
        out, lengths = _per_device(tools, mesh, tokens, closed)
        return dict(state, queue=jnp.where(closed[:, None], out, state["queue"]),
                    at=jnp.where(closed, 0, state["at"]),
                    left=jnp.where(closed, lengths, state["left"]),
                    calls=state["calls"] + closed.astype(jnp.int32))

    return jax.lax.cond(jnp.any(closed), run, lambda s: s, state)


def _per_device(tools: ToolCalls, mesh: Mesh | None, tokens: jax.Array, closed: jax.Array):
    """``tools.run`` as a callback, on each device's rows when the rows are split over a mesh."""
    r, k = closed.shape[0], tools.max_output_tokens

    def call(tokens, closed):
        out = (jax.ShapeDtypeStruct((closed.shape[0], k), jnp.int32),
               jax.ShapeDtypeStruct(closed.shape, jnp.int32))
        return jax.pure_callback(tools.run, out, tokens, closed, vmap_method="sequential")

    if mesh is None or mesh.size == 1:
        return call(tokens, closed)
    rows = sharding.logical_to_spec(("host_rows",), (r,), mesh)[0]
    if rows is None or math.prod(mesh.shape[a] for a in ((rows,) if isinstance(rows, str)
                                                          else rows)) == 1:
        return call(tokens, closed)
    return jax.shard_map(call, mesh=mesh, in_specs=(P(rows, None), P(rows)),
                         out_specs=(P(rows, None), P(rows)), check_vma=False)(tokens, closed)
