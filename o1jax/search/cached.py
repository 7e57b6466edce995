"""KV caches of search nodes: the decoding that beam search, DVTS and MCTS share.

A search row is a path through the tree held as state: the policy's KV cache and the value
model's, both holding the prompt and every token written so far, the policy's next-token
log-probs after the last token and the value model's score of it. A node's children start from
copies of its row (``take_rows``), and ``extend`` writes one step into every row, so no prefix is
ever run through either model twice: the prompt is prefilled once (``start``), and every sampled
token is fed once to the policy (its log-probs choose the next token) and once to the value
model (its value after a step's last token scores the step). An MCTS node keeps its K
candidates' rows as one prefix and K steps' slots (``rows_first``, ``step_slots``,
``with_step``), since they differ only there.

Rows decode in lockstep into one cache slot (``decode_step``), so a row that ends its step early
leaves masked slots behind, and rows copied from different parents hold their tokens in
different slots. Attention reads only a slot's mask and each row keeps its own position ids, so
that is harmless until the slots run out; ``align`` then packs every row's tokens to end at one
slot, and caches of prompt + response slots hold any path through the tree. Once at most half of
the rows are still writing their step (the others finished it, or take no part: finished paths,
terminal nodes), the live ones decode on in a batch of half the size, down to a quarter.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from o1jax import flops
from o1jax.models.cache import ROW_LEAVES, batch_axis, slot_axes
from o1jax.models.transformer import Params, Transformer
from o1jax.rollout.decoding import (SamplingConfig, choose_tokens, decode_step,
                                    next_token_logprobs, prefill, repeat_cache)
from o1jax.search.value_models import squash


class Rows(NamedTuple):
    """policy, value: the two models' caches (``prefill``'s: k, v, mask, index, positions);
    logp [R, V] f32: ``next_token_logprobs`` after each row's last token; score [R] f32: the
    value model's score there, in [0, 1]."""
    policy: dict
    value: dict
    logp: jax.Array
    score: jax.Array


class Step(NamedTuple):
    """What ``extend`` wrote: tokens [R, S] (right-padded), length [R] (0 for a row that did not
    take part), logp [R] (the step's summed token log-probs), stopped [R] (it ended with a stop
    token)."""
    tokens: jax.Array
    length: jax.Array
    logp: jax.Array
    stopped: jax.Array


def _take(cache: dict, rows: jax.Array) -> dict:
    # in bounds by construction: "clip" is a plain gather, not a gather and a fill of strays
    take = lambda a: jnp.take(a, rows, axis=batch_axis(a), mode="clip")  # noqa: E731
    return dict(cache, **{k: jax.tree.map(take, cache[k]) for k in ROW_LEAVES if k in cache})


def take_rows(rows: Rows, idx: jax.Array) -> Rows:
    """The rows ``idx`` [R'] (int; repeats copy), both caches along their batch axes."""
    return Rows(_take(rows.policy, idx), _take(rows.value, idx), rows.logp[idx],
                rows.score[idx])


def repeat_rows(policy: Transformer, vmodel: Transformer, rows: Rows, copies: int) -> Rows:
    """Each row copied ``copies`` times (copies adjacent): ``take_rows`` with the indices
    ``repeat(arange(R), copies)``, as a broadcast (``repeat_cache``) rather than a gather."""
    rep = lambda a: jnp.repeat(a, copies, axis=0)  # noqa: E731
    return Rows(repeat_cache(policy, rows.policy, copies), repeat_cache(vmodel, rows.value, copies),
                rep(rows.logp), rep(rows.score))


def align(policy: Transformer, vmodel: Transformer, rows: Rows, end: jax.Array) -> Rows:
    """Every row's real slots moved, in order, to end just before slot ``end`` (an int32 scalar
    >= each decoding row's count of real slots; a longer row's cache is lost), in both caches
    (their masks are the same); the next token is written at ``end``."""
    mask = rows.policy["mask"]
    order = jnp.argsort(mask, axis=1, stable=True)           # empty slots first, then real ones
    src = jnp.roll(order, end - mask.shape[1], axis=1)       # [R, S]: the slot each slot reads

    def move(a, slot_axis):
        shape = [1] * a.ndim
        shape[batch_axis(a)], shape[slot_axis % a.ndim] = src.shape
        return jnp.take_along_axis(a, src.reshape(shape), axis=slot_axis)

    def cache(c, model):
        axes = slot_axes(model.key_slot_axis)
        return dict(c, k=jax.tree.map(lambda a: move(a, axes["k"]), c["k"]),
                    v=jax.tree.map(lambda a: move(a, axes["v"]), c["v"]),
                    mask=jnp.take_along_axis(mask, src, axis=1),
                    index=jnp.asarray(end, jnp.int32))
    return rows._replace(policy=cache(rows.policy, policy), value=cache(rows.value, vmodel))


def rows_first(cache: dict, keys=("k", "v", "mask")) -> dict:
    """A cache's ``keys`` leaves with the batch axis first."""
    return jax.tree.map(lambda a: jnp.moveaxis(a, batch_axis(a), 0), {key: cache[key]
                                                                        for key in keys})


def step_slots(cache: dict, model: Transformer, k: int, start: int) -> dict:
    """Rows [B * K] of a cache -> their slots ``start`` ... end (and positions) as node leaves
    [B, K, ...]: the K steps an MCTS node holds beside its prefix (``rows_first``)."""
    rows = rows_first(cache, ("k", "v", "mask", "positions"))
    out = {key: jax.tree.map(lambda a, ax=ax: jax.lax.slice_in_dim(
        a, start, a.shape[ax], axis=ax % a.ndim), rows[key])
        for key, ax in slot_axes(model.key_slot_axis).items()}
    return jax.tree.map(lambda a: a.reshape((-1, k) + a.shape[1:]),
                        dict(out, positions=rows["positions"]))


def with_step(prefix: dict, step: dict, model: Transformer, start: int) -> dict:
    """A node's prefix leaves [B, ...] with one candidate's step leaves [B, ...] written at slot
    ``start``: the child's cache, in a cache's layout (``align`` sets its index)."""
    out = {key: jax.tree.map(lambda a, b, ax=ax: jax.lax.dynamic_update_slice_in_dim(
        a, b, start, ax % a.ndim), prefix[key], step[key])
        for key, ax in slot_axes(model.key_slot_axis).items()}
    return jax.tree.map(lambda a: jnp.moveaxis(a, 0, batch_axis(a)),
                        dict(out, positions=step["positions"]))


def start(policy: Transformer, params: Params, vmodel: Transformer, vparams: Params,
          tokens: jax.Array, mask: jax.Array, length: int, cfg: SamplingConfig,
          output: str, copies: int, images=None) -> Rows:
    """Left-padded prompts tokens, mask [B, P] prefilled once into both models' caches of
    ``length`` slots, each row then copied ``copies`` times (copies adjacent): B * copies rows.
    Params in the decode layout (``decode_params``). ``images``: a vision policy's prompt
    images (``prefill``'s), each read by both models' own encoders."""
    pcache, logits = prefill(policy, params, tokens, mask, length, images)
    vcache, values = prefill(vmodel, vparams, tokens, mask, length, images)
    return repeat_rows(policy, vmodel, Rows(pcache, vcache, next_token_logprobs(logits, cfg),
                                            squash(output, values)), copies)


def extend(policy: Transformer, params: Params, vmodel: Transformer, vparams: Params,
           rows: Rows, active: jax.Array, room: jax.Array, key: jax.Array, cfg: SamplingConfig,
           end_ids: jax.Array, stop_ids: jax.Array, output: str) -> tuple[Rows, Step]:
    """One step written into each ``active`` row [R] bool: tokens drawn as ``cfg`` says until one
    of ``end_ids`` (a step's end or a stop token, ``stop_ids``) or ``room`` (<= cfg.max_new_tokens
    = S) tokens, every one fed to the policy (its log-probs after the step's last token are the
    next step's start) and to the value model (its score after the last token is the step's).
    The caches' index + room must be within their slots (``align``)."""
    s = cfg.max_new_tokens
    cols = jnp.arange(s)

    def body(c):
        live, tok, j = c["live"], c["tok"], c["j"]
        key, sub = jax.random.split(c["key"])
        lp = jnp.take_along_axis(c["logp"], tok[:, None], axis=1)[:, 0]
        cache, logp, nxt = decode_step(policy, params, c["cache"], tok, sub, cfg, live)
        vc = c["vcache"]
        value, vcache = vmodel.apply(vparams, tok[:, None], vc["positions"][:, None],
                                     live[:, None], {k: vc[k] for k in ("k", "v", "mask", "index")})
        # a row that waits for the others keeps its positions for its next step
        cache["positions"] = jnp.where(live, cache["positions"], c["cache"]["positions"])
        vcache["positions"] = vc["positions"] + live
        ended = jnp.isin(tok, end_ids) | (j + 1 >= room)
        return dict(c, key=key, cache=cache, vcache=vcache, j=j + 1, tok=nxt, live=live & ~ended,
                    score=jnp.where(live, squash(output, value[:, 0]), c["score"]),
                    logp=jnp.where(live[:, None], logp, c["logp"]),
                    tokens=jnp.where(live[:, None] & (cols == j), tok[:, None], c["tokens"]),
                    length=c["length"] + live, sum_logp=c["sum_logp"] + jnp.where(live, lp, 0.0),
                    stopped=c["stopped"] | (live & jnp.isin(tok, stop_ids)))

    def loop(c: dict, smallest: int) -> dict:
        """Steps until every row has ended; once at most half of the rows are live, the live
        ones go on alone in a batch of half the size, down to ``smallest`` rows."""
        half = c["live"].shape[0] // 2
        go = lambda c: (c["j"] < room) & jnp.any(c["live"])  # noqa: E731
        if half < smallest:
            return jax.lax.while_loop(go, body, c)
        c = jax.lax.while_loop(lambda c: go(c) & (jnp.sum(c["live"]) > half), body, c)

        def shrink(c):
            idx = jnp.argsort(~c["live"], stable=True)[:half]       # the live rows first
            return _put_state(c, idx, loop(_take_state(c, idx), smallest))
        return jax.lax.cond(go(c), shrink, lambda c: c, c)

    r = active.shape[0]
    key, sub = jax.random.split(key)
    c = loop(dict(key=key, cache=rows.policy, vcache=rows.value, score=rows.score, live=active,
                  j=jnp.zeros((), jnp.int32), tok=choose_tokens(rows.logp, sub, cfg),
                  logp=rows.logp, tokens=jnp.full((r, s), cfg.pad_id, jnp.int32),
                  length=jnp.zeros(r, jnp.int32), sum_logp=jnp.zeros(r, jnp.float32),
                  stopped=jnp.zeros(r, bool)), max(1, r // 4))
    return (Rows(c["cache"], c["vcache"], c["logp"], c["score"]),
            Step(c["tokens"], c["length"], c["sum_logp"], c["stopped"]))


_CARRIED = ("score", "live", "tok", "logp", "tokens", "length", "sum_logp", "stopped")


def _take_state(c: dict, idx: jax.Array) -> dict:
    """``extend``'s loop state of the rows ``idx`` [R'] alone."""
    return dict(c, cache=_take(c["cache"], idx), vcache=_take(c["vcache"], idx),
                **{k: c[k][idx] for k in _CARRIED})


def _put_state(c: dict, idx: jax.Array, part: dict) -> dict:
    """``extend``'s loop state with the rows ``idx`` replaced by ``part`` (``_take_state``'s, run
    on); the shared step count, key and cache index are the part's. A row left out wrote
    nothing while the part ran, as a row that is not live writes nothing but masked slots."""
    def put(a, b):
        ax = batch_axis(a)
        return jnp.moveaxis(jnp.moveaxis(a, ax, 0).at[idx].set(jnp.moveaxis(b, ax, 0)), 0, ax)

    def cache(full, part):
        return dict(full, index=part["index"],
                    **{k: jax.tree.map(put, full[k], part[k]) for k in ROW_LEAVES if k in full})
    return dict(part, cache=cache(c["cache"], part["cache"]),
                vcache=cache(c["vcache"], part["vcache"]),
                **{k: c[k].at[idx].set(part[k]) for k in _CARRIED})


def count_steps(ledger: dict, i: int, mcfg, vcfg, prefix, written) -> None:
    """Adds to problem ``i``'s ledger the steps ``extend`` wrote (prefix, written: numpy arrays
    of one shape, the real tokens before each step, prompt included, and the step's tokens; 0
    written: none): each token decoded once by the policy (the last one too: the next step
    starts from its log-probs) and once by the value model."""
    for pre, g in zip(prefix[written > 0].tolist(), written[written > 0].tolist()):
        ledger["tokens"][i] += g
        ledger["decode_flops"][i] += flops.decode_flops(mcfg, pre, g + 1)
        ledger["verifier_flops"][i] += (flops.verifier_flops(vcfg, pre + g)
                                        - flops.verifier_flops(vcfg, pre))
