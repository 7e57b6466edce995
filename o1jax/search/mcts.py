"""Monte-Carlo tree search over solution steps with mctx (``gumbel_muzero_policy``), compiled.

A node is a partial solution (prompt + the steps so far); its K actions are K candidate next
steps (each up to a token with a newline, ``o1jax.search.steps``, at most S tokens) sampled by
the policy when the node is created, with prior logits their normalised sequence
log-probabilities. Taking an action appends that step; the new node's value is the value model's
score of it (``--verifier``). A step that ends with a stop token makes a terminal node: its
transition reward is the value model's outcome score and its discount 0.

Each node's mctx embedding holds its own KV caches (the prefix) once and its K candidates' step
slots (``o1jax.search.cached``, in both the policy and the value model), so a child's caches are
its parent's with one candidate's slots written in: no prefix is prefilled again, each
candidate's tokens are decoded once and read by the value model once, which also gives the
child's value. Decoding moves the root to the child the search prefers (the tree's node when
the search made it, else made then), one step per search, until every problem's solution has
ended; the answer is checked on the host afterwards. The tree is built anew at every move, so
once few problems of a batch are still searching their roots move on in a smaller batch
(``_fewer_rows``): one compiled ``move`` per batch size, the batch and the powers of two below
it.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import mctx
import numpy as np

from o1jax import flops
from o1jax.data.prompts import (PromptFormat, encode_prompt, pad_prompts, stack_images,
                                truncate_prompt)
from o1jax.models.transformer import Params, Transformer
from o1jax.rollout import SamplingConfig, decode_params
from o1jax.search import cached, steps, strategies, value_models
from o1jax.search.spec import check_memory
from o1jax.tokenizer import Tokenizer


class Node(NamedTuple):
    """mctx embedding, per batch row: policy, value: the node's own caches (its prefix, packed
    to end before slot T - S; leaves k, v, mask, the batch axis first); steps: its K candidates'
    slots T - S ... T - 1 in each model ({"policy", "value"}: k, v, mask, positions, every leaf
    [K, ...]), so a node holds one prefix and K steps, not K whole caches; logp [K, V], score
    [K]: after each candidate's last token; cands [K, S] (right-padded), cand_len [K], cand_logp
    [K] (summed), cand_stops [K] (ended with a stop token); response [N], length [] (the steps
    so far); prefix [] (real tokens, prompt included); node_value [] (its own value); terminal
    []."""
    policy: dict
    value: dict
    steps: dict
    logp: jax.Array
    score: jax.Array
    cands: jax.Array
    cand_len: jax.Array
    cand_logp: jax.Array
    cand_stops: jax.Array
    response: jax.Array
    length: jax.Array
    prefix: jax.Array
    node_value: jax.Array
    terminal: jax.Array


def max_simulations(width: int, depth: int) -> int:
    """Nodes a tree of branching ``width`` and ``depth`` levels can hold below its root."""
    return sum(width ** d for d in range(1, depth + 1))


def _pick(tree, action: jax.Array):
    """Each batch row's candidate ``action`` [B] of node leaves [B, K, ...] -> [B, ...]."""
    return jax.tree.map(lambda a: a[jnp.arange(a.shape[0]), action], tree)


@functools.lru_cache(maxsize=4)
def make_programs(policy: Transformer, vmodel: Transformer, cfg: SamplingConfig,
                  stop_ids: tuple[int, ...], simulations: int, depth: int, max_new_tokens: int,
                  output: str = "value"):
    """Jitted ``start(params, vparams, tokens, mask, key, images) -> root Node`` and
    ``move(params, vparams, root, key) -> (child Node, made [B]: the child was made anew, tree
    prefix [B, nodes] and cand_len [B, nodes, K] of the nodes the search made)``: one gumbel
    MuZero search at each root (``simulations``, at most ``depth`` levels), then the chosen
    child (a terminal root stays as it is)."""
    k, s, n_new = cfg.num_samples, cfg.max_new_tokens, max_new_tokens
    ends, stops = jnp.asarray(cfg.stop_ids, jnp.int32), jnp.asarray(stop_ids, jnp.int32)
    step_cfg = SamplingConfig(s, cfg.temperature, stop_ids=cfg.stop_ids, pad_id=cfg.pad_id)

    def expand(params, vparams, rows: cached.Rows, response, length, prefix, value, terminal,
               key) -> Node:
        """K candidate steps from each row of ``rows`` [B] (its caches hold the prefix)."""
        t = rows.policy["mask"].shape[1]
        rows = cached.align(policy, vmodel, rows, t - s)
        # a terminal node's candidates are never read: its rows write nothing, so a finished
        # problem or branch does not hold the others' decoding loop to its longest step
        out, step = cached.extend(policy, params, vmodel, vparams,
                                  cached.repeat_rows(policy, vmodel, rows, k),
                                  jnp.repeat(~terminal, k), s, key, step_cfg, ends, stops, output)
        split = lambda a: a.reshape((-1, k) + a.shape[1:])  # noqa: E731
        steps = dict(policy=cached.step_slots(out.policy, policy, k, t - s),
                     value=cached.step_slots(out.value, vmodel, k, t - s))
        return Node(cached.rows_first(rows.policy), cached.rows_first(rows.value), steps,
                    split(out.logp), split(out.score), split(step.tokens), split(step.length),
                    split(step.logp), split(step.stopped), response, length, prefix, value,
                    terminal)

    def child(params, vparams, node: Node, action, key):
        t = node.policy["mask"].shape[-1]
        step = _pick(node.steps, action)
        rows = cached.Rows(cached.with_step(node.policy, step["policy"], policy, t - s),
                           cached.with_step(node.value, step["value"], vmodel, t - s),
                           _pick(node.logp, action), _pick(node.score, action))
        g = _pick(node.cand_len, action)
        cols = jnp.where(jnp.arange(s) < g[:, None], node.length[:, None] + jnp.arange(s), n_new)
        response = node.response.at[jnp.arange(g.shape[0])[:, None], cols].set(
            _pick(node.cands, action), mode="drop")
        ended = _pick(node.cand_stops, action) | node.terminal
        prefix = node.prefix + g
        full = prefix > rows.policy["mask"].shape[1] - 2 * s   # no further step fits
        value = _pick(node.score, action)
        new = expand(params, vparams, rows, response, node.length + g, prefix, value,
                     ended | full, key)
        return new, value, ended

    def recurrent_fn(both, key, action, node: Node):
        params, vparams = both
        new, value, ended = child(params, vparams, node, action, key)
        out = mctx.RecurrentFnOutput(
            reward=jnp.where(ended & ~node.terminal, value, 0.0),
            discount=jnp.where(new.terminal, 0.0, 1.0),
            prior_logits=jax.nn.log_softmax(new.cand_logp, axis=-1),
            value=jnp.where(new.terminal, 0.0, value))
        return out, new

    @jax.jit
    def move(params, vparams, root: Node, key):
        params, vparams = decode_params(policy, params), decode_params(vmodel, vparams)
        k1, k2 = jax.random.split(key)
        out = mctx.gumbel_muzero_policy(
            (params, vparams), k1,
            mctx.RootFnOutput(prior_logits=jax.nn.log_softmax(root.cand_logp, axis=-1),
                              value=root.node_value, embedding=root),
            recurrent_fn, num_simulations=simulations, max_depth=depth,
            max_num_considered_actions=k)
        tree = out.search_tree
        action = jnp.argmax(out.action_weights, axis=-1)
        rows = jnp.arange(action.shape[0])
        index = tree.children_index[rows, tree.ROOT_INDEX, action]
        made = index == tree.UNVISITED
        new = jax.tree.map(lambda a: a[rows, jnp.maximum(index, 0)], tree.embeddings)
        new = jax.lax.cond(jnp.any(made & ~root.terminal), lambda: jax.tree.map(
            lambda a, b: jnp.where(made.reshape((-1,) + (1,) * (a.ndim - 1)), a, b),
            child(params, vparams, root, action, k2)[0], new), lambda: new)
        keep = lambda a, b: jnp.where(  # noqa: E731
            root.terminal.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)
        return (jax.tree.map(keep, root, new), made & ~root.terminal,
                tree.embeddings.prefix[:, 1:], tree.embeddings.cand_len[:, 1:])

    @jax.jit
    def start(params, vparams, tokens, mask, key, images=None):
        params, vparams = decode_params(policy, params), decode_params(vmodel, vparams)
        b, p = tokens.shape
        rows = cached.start(policy, params, vmodel, vparams, tokens, mask, p + n_new, step_cfg,
                            output, 1, images)
        return expand(params, vparams, rows, jnp.full((b, n_new), cfg.pad_id, jnp.int32),
                      jnp.zeros(b, jnp.int32), jnp.sum(mask, axis=1).astype(jnp.int32),
                      rows.score, jnp.zeros(b, bool), key)

    return start, move


def search(policy: Transformer, params: Params, examples: Sequence[dict], tokenizer: Tokenizer,
           value_model: value_models.ValueModel, simulations: int, width: int, fmt: PromptFormat,
           max_new_tokens: int, step_tokens: int, temperature: float, batch_rows: int = 64,
           seed: int = 0) -> tuple[strategies.Generation, dict]:
    """MCTS decoding of every problem: (the chosen solution per problem as a Generation, the
    ledger as ``beam.search`` returns it)."""
    mcfg, vcfg, max_prompt_len = policy.cfg, value_model.model.cfg, fmt.max_prompt_len
    room = max_new_tokens - step_tokens  # a prefix never holds more than P + N - S tokens
    depth = max(1, room // 2 + 1)
    if width < 1 or simulations < 1:
        raise ValueError(f"mcts needs width and simulations >= 1, got {width}, {simulations}")
    if room < 1:
        raise ValueError(f"mcts: max_new_tokens {max_new_tokens} leaves no room for steps of "
                         f"{step_tokens} tokens; lower --step-tokens")
    if simulations > max_simulations(width, depth):
        raise ValueError(f"mcts: {simulations} simulations are more than a tree of {width} "
                         f"actions and depth {depth} can hold; lower the budget")
    if max_prompt_len + max_new_tokens > mcfg.max_seq_len:
        raise ValueError(f"mcts: prompt {max_prompt_len} + {max_new_tokens} new tokens exceeds "
                         f"max_seq_len {mcfg.max_seq_len}")
    stop = tuple(tokenizer.stop_ids)
    cfg = SamplingConfig(step_tokens, temperature, num_samples=width,
                         stop_ids=stop + steps.step_end_ids(tokenizer), pad_id=tokenizer.pad_id)
    start, move = make_programs(policy, value_model.model, cfg, stop, simulations, depth,
                                max_new_tokens, value_model.output)
    prompts = [encode_prompt(e, tokenizer, fmt) for e in examples]
    n = len(examples)
    ledger = {k: np.zeros(n) for k in ("tokens", "prefill_flops", "decode_flops",
                                       "verifier_flops")}
    responses: list = []
    per = max(1, batch_rows // width)
    # the tree holds every node's prefix and its K candidates' steps, in both models
    check_memory(policy, 2 * per * (simulations + 1),
                 max_prompt_len + max_new_tokens + width * step_tokens)
    key = jax.random.key(seed)
    t0 = time.perf_counter()
    for lo in range(0, n, per):
        idx = list(range(lo, min(n, lo + per)))
        rows = [truncate_prompt(prompts[i], max_prompt_len) for i in idx]
        tokens, mask = pad_prompts(rows, tokenizer.pad_id, max_prompt_len, per)
        vparams = value_model.params
        part = [examples[i] for i in idx]
        images = stack_images(part, fmt, largest=True, rows=per)
        node = start(params, vparams, tokens, mask, jax.random.fold_in(key, lo), images)
        for j, i in enumerate(idx):   # one prefill per problem, the root's candidates
            ledger["prefill_flops"][i] = flops.prefill_flops(mcfg, len(rows[j]))
            ledger["verifier_flops"][i] = flops.verifier_flops(vcfg, len(rows[j]))
        _count(ledger, idx, mcfg, vcfg, node.prefix[:, None], node.cand_len[:, None])
        slots, chosen = np.array(idx + [-1] * (per - len(idx))), {}   # each row's problem
        for turn in range(depth):
            live = ~np.asarray(node.terminal) & (slots >= 0)
            if not live.any():
                break
            node, slots, live = _fewer_rows(node, slots, live, chosen)
            node, made, prefix, cand_len = move(params, vparams, node,
                                                jax.random.fold_in(key, lo * 1000 + turn + 1))
            _count(ledger, slots[live].tolist(), mcfg, vcfg, np.asarray(prefix)[live],
                   np.asarray(cand_len)[live])
            real = slots >= 0
            _count(ledger, slots[real].tolist(), mcfg, vcfg,
                   np.where(made, node.prefix, 0)[real][:, None],
                   np.asarray(node.cand_len)[real][:, None])
        _collect(node, slots, chosen, np.ones(len(slots), bool))
        responses += [chosen[i] for i in idx]
    return strategies.chosen_generation(examples, prompts, responses, tokenizer, max_prompt_len,
                                        time.perf_counter() - t0, ledger)


def _collect(node: Node, slots: np.ndarray, chosen: dict, rows: np.ndarray) -> None:
    """The solutions so far of ``rows`` [B] bool (those searching a problem, ``slots`` >= 0)
    into ``chosen``: problem -> its response tokens."""
    length, response = np.asarray(node.length), np.asarray(node.response)
    for r in np.flatnonzero(rows & (slots >= 0)):
        chosen[int(slots[r])] = response[r, :length[r]].tolist()


def _fewer_rows(node: Node, slots: np.ndarray, live: np.ndarray, chosen: dict
                ) -> tuple[Node, np.ndarray, np.ndarray]:
    """Once the ``live`` [B] problems fit in half the batch or less, their roots in a batch of
    the next power of two (the tree is built anew every move, so the roots are all there is; a
    move's time follows its rows, and finished problems' rows only cost it): the finished ones'
    solutions into ``chosen``, the padding rows finished copies. Returns the node, its rows'
    problems and its live rows. One compiled ``move`` per batch size."""
    rows = np.flatnonzero(live)
    size = 1 << int(len(rows) - 1).bit_length()
    if 2 * size > len(slots):
        return node, slots, live
    _collect(node, slots, chosen, ~live)
    keep = np.concatenate([rows, np.full(size - len(rows), rows[0])])
    node = jax.tree.map(lambda a: a[keep], node)
    node = node._replace(terminal=jnp.asarray(node.terminal).at[len(rows):].set(True))
    return (node, np.concatenate([slots[rows], np.full(size - len(rows), -1)]),
            np.arange(size) < len(rows))


def _count(ledger, idx, mcfg, vcfg, prefix, cand_len) -> None:
    """Adds the candidates of nodes to the problems ``idx``: prefix [>= len(idx), nodes] (0: no
    node), cand_len [>= len(idx), nodes, K]."""
    prefix, cand_len = np.asarray(prefix), np.asarray(cand_len)
    for row, i in enumerate(idx):
        written = np.where(prefix[row][:, None] > 0, cand_len[row], 0)
        cached.count_steps(ledger, i, mcfg, vcfg,
                           np.broadcast_to(prefix[row][:, None], written.shape), written)
