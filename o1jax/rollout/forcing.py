"""Budget forcing (s1, Muennighoff et al. 2025) as a decoding rule: ``BudgetForcing`` says when
the answer marker is held back (the continuation cue written instead) or forced, and
``force_tokens`` applies it to the tokens a sampler chose at one step, row by row, from the
per-row state ``init_forcing`` starts."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class BudgetForcing:
    """When the answer marker is held back or forced, in response tokens.

    Before ``min_tokens``, a row that starts the answer marker (its first token) or a stop token
    gets the continuation cue instead (e.g. "Wait"), so it keeps thinking; from ``max_tokens``
    on, a row that has not started the marker gets the marker forced. A row that starts the
    marker itself (at or after the minimum), or that would stop without one, gets the whole
    marker written, so every response carries it by the maximum and never before the minimum.
    For a multi-token marker (``\\boxed{`` in a byte tokenizer) its first token is the trigger:
    exact when that token starts nothing else (the synthetic tasks' format; a chat model's
    single ``</think>`` token).

    With ``give_up_ids`` (the tokens a policy starts its give-up line with; a search's own way
    to end without an answer), only a row that writes one of them before the minimum gets the
    cue (e.g. one that resumes the search at an earlier state); the marker and stop tokens then
    pass, so a search that found its answer may end.

    ``break_ids`` (a newline; or a newline, the give-up line and a newline) are written before a
    marker the rule forces (without their newline where the row has just written one): a policy
    that answers on a line of its own is not made to box its answer in the middle of a step, and
    one whose unfinished searches end with its give-up line answers as it learnt to. With
    ``line_slack`` > 0 (and a break) the marker is forced at the first line start (the row has
    just written the break's newline) from ``max_tokens - line_slack`` on, so the step being
    written is not cut; ``max_tokens`` stays the latest.

    With ``loop_lines`` > 0 (and a break) a row whose finished line repeats one of the
    ``loop_lines`` non-empty lines before it is looping: the marker is forced at that line's
    end, as at the budget, and before ``min_tokens`` too (a loop is not thinking). With
    ``loop_lines`` <= 2 a search never trips it (a back-up returns to a state at least three
    lines up; tests/rollout/test_forcing.py runs the rule over the search tasks'
    demonstrations), so it only ends thinking that has stopped moving.
    """
    min_tokens: int
    max_tokens: int
    marker_ids: tuple[int, ...]
    cue_ids: tuple[int, ...]
    give_up_ids: tuple[int, ...] = ()
    break_ids: tuple[int, ...] = ()
    line_slack: int = 0
    loop_lines: int = 0

    def __post_init__(self):
        if not self.marker_ids or not self.cue_ids:
            raise ValueError("budget forcing needs a non-empty answer marker and continuation cue")
        if not 0 <= self.min_tokens <= self.max_tokens:
            raise ValueError(f"the minimum thinking length {self.min_tokens} must be between 0 "
                             f"and the maximum {self.max_tokens}")
        if self.line_slack < 0:
            raise ValueError(f"line_slack must be >= 0, got {self.line_slack}")
        if self.loop_lines < 0 or (self.loop_lines and not self.break_ids):
            raise ValueError(f"loop_lines {self.loop_lines} must be >= 0, and needs break_ids "
                             "(a newline first) to tell where lines end")
        object.__setattr__(self, "marker_ids", tuple(int(i) for i in self.marker_ids))
        object.__setattr__(self, "cue_ids", tuple(int(i) for i in self.cue_ids))
        object.__setattr__(self, "give_up_ids", tuple(int(i) for i in self.give_up_ids))
        object.__setattr__(self, "break_ids", tuple(int(i) for i in self.break_ids))


_HASH = 1000003    # a line's hash: h * _HASH + token + 1 over its tokens, modulo 2**32


def init_forcing(forcing: BudgetForcing, rows: int) -> dict:
    """The per-row state of ``force_tokens``: the index into cue + break + marker being written
    (-1: none), where that sequence ends, whether the row has started its answer marker, the
    last token it wrote, and for ``loop_lines``: the hash of the line being written, those of
    the ``loop_lines`` lines before it (0: none), and whether a line has repeated."""
    return dict(pos=jnp.full((rows,), -1, jnp.int32), end=jnp.zeros((rows,), jnp.int32),
                answered=jnp.zeros((rows,), bool), last=jnp.full((rows,), -1, jnp.int32),
                line=jnp.zeros((rows,), jnp.uint32),
                lines=jnp.zeros((rows, forcing.loop_lines), jnp.uint32),
                looping=jnp.zeros((rows,), bool))


def _track_lines(state: dict, tok: jax.Array, newline: int) -> dict:
    """The line hashes after writing tok [R]: a newline ends the line (a non-empty one that
    equals a line in the window sets ``looping``) and pushes it into the window."""
    ends = tok == newline
    line, lines = state["line"], state["lines"]
    pushes = ends & (line != 0)
    repeats = pushes & jnp.any(lines == line[:, None], axis=1)
    pushed = jnp.concatenate([line[:, None], lines[:, :-1]], axis=1)
    return dict(line=jnp.where(ends, jnp.uint32(0), line * jnp.uint32(_HASH)
                               + tok.astype(jnp.uint32) + jnp.uint32(1)),
                lines=jnp.where(pushes[:, None], pushed, lines),
                looping=state["looping"] | repeats)


def force_tokens(forcing: BudgetForcing, state: dict, step: jax.Array, tok: jax.Array,
                 stop_ids: jax.Array) -> tuple[jax.Array, dict]:
    """Budget forcing applied to the tokens tok [R] the model chose at response column ``step``
    (= tokens written so far): returns the tokens to write and the new ``init_forcing`` state."""
    seq = jnp.asarray(forcing.cue_ids + forcing.break_ids + forcing.marker_ids, jnp.int32)
    n_cue, total = len(forcing.cue_ids), len(seq)
    pos, end, answered = state["pos"], state["end"], state["answered"]
    free = (pos < 0) & ~answered
    wants_marker = free & (tok == forcing.marker_ids[0])
    wants_stop = free & jnp.isin(tok, stop_ids)
    early = step < forcing.min_tokens
    # a row that has just written the break's first token (a newline) skips that token
    broken = state["last"] == forcing.break_ids[0] if forcing.break_ids else False
    due = step >= forcing.max_tokens
    if forcing.line_slack and forcing.break_ids:
        due = due | (free & ~early & broken & (step >= forcing.max_tokens - forcing.line_slack))
    if forcing.loop_lines:
        due = due | (free & broken & state["looping"])
    marker = ~answered & (due | (~early & (wants_marker | wants_stop)))
    if forcing.give_up_ids:
        cue = ~marker & early & free & jnp.isin(tok, jnp.asarray(forcing.give_up_ids))
        marker = marker & ~(early & (wants_marker | wants_stop))
        answered = answered | (early & wants_marker)    # its own answer: never forced again
    else:
        cue = ~marker & early & (wants_marker | wants_stop)
    # a marker the row started itself skips the break
    skip = jnp.where(wants_marker, len(forcing.break_ids), jnp.where(broken, 1, 0))
    pos = jnp.where(marker, n_cue + skip, jnp.where(cue, 0, pos))
    end = jnp.where(marker, total, jnp.where(cue, n_cue, end))
    writing = pos >= 0
    tok = jnp.where(writing, seq[jnp.clip(pos, 0, total - 1)], tok)
    pos = jnp.where(writing, pos + 1, pos)
    pos = jnp.where(pos >= end, -1, pos)
    new = dict(state, pos=pos, end=end, answered=answered | marker, last=tok)
    if forcing.loop_lines:
        new.update(_track_lines(state, tok, forcing.break_ids[0]))
    return tok, new
