"""Monte-Carlo tree search over solution steps with mctx (``gumbel_muzero_policy``), compiled.

A node is a partial solution (prompt + the steps so far, left-padded to L tokens); its K actions
are K candidate next steps (each up to a token with a newline, ``o1jax.search.steps``, at most S
tokens) sampled by the policy when the node is created, with prior logits their normalised
sequence log-probabilities. Taking an action appends that step; the new node's value is the
value model's score of it (``--verifier``). A step that ends with a stop token makes a terminal
node: its transition reward is the value model's outcome score and its discount 0. mctx's
``recurrent_fn`` cannot hold a KV cache per node (embeddings are stored for every node of the
tree), so every node's prefix is recomputed by a prefill, and the ledger counts it. Decoding
moves the root along the action the search prefers, one step per search, until every problem's
solution has ended; the answer is checked on the host afterwards.
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
from o1jax.data.prompts import PromptFormat, encode_prompt, pad_prompts
from o1jax.models.transformer import Params, Transformer
from o1jax.rollout import SamplingConfig, sample
from o1jax.rollout.scoring import prefix_values
from o1jax.search import steps, strategies, value_models
from o1jax.tokenizer import Tokenizer


class Node(NamedTuple):
    """mctx embedding, per batch row: seq, mask [L] (left-padded prefix); cands, cand_mask
    [K, S] (candidate steps, right-padded); cand_logp [K]; cand_stops [K] (the step ended with
    a stop token); terminal []."""
    seq: jax.Array
    mask: jax.Array
    cands: jax.Array
    cand_mask: jax.Array
    cand_logp: jax.Array
    cand_stops: jax.Array
    terminal: jax.Array


def max_simulations(width: int, depth: int) -> int:
    """Nodes a tree of branching ``width`` and ``depth`` levels can hold below its root."""
    return sum(width ** d for d in range(1, depth + 1))


def _expand(policy, params, seq, mask, key, cfg: SamplingConfig, stop_ids):
    """K candidate steps from each prefix: (cands, cand_mask, cand_logp, cand_stops)."""
    b, length = seq.shape
    k = cfg.num_samples
    roll = sample(policy, params, seq, mask, key, cfg)
    cands = roll.tokens[:, length:].reshape(b, k, -1)
    cmask = roll.response_mask[:, length:].reshape(b, k, -1)
    logp = jnp.sum(roll.logprobs[:, length:], axis=1).reshape(b, k)
    last = jnp.take_along_axis(roll.tokens[:, length:], jnp.maximum(roll.lengths - 1, 0)[:, None],
                               axis=1)[:, 0]
    stops = (jnp.isin(last, stop_ids) & (roll.lengths > 0)).reshape(b, k)
    return cands, cmask, logp, stops


def _append(seq, mask, step, step_mask):
    """Left-padded prefix + a right-padded step -> left-padded [L] (the step must fit)."""
    length, s = seq.shape[0], step.shape[0]
    shift = s - jnp.sum(step_mask)
    joined = jnp.roll(jnp.concatenate([seq, step]), shift)
    joined_mask = jnp.roll(jnp.concatenate([mask, step_mask]), shift)
    return joined[-length:], joined_mask[-length:]


def _node_value(vmodel, vparams, seq, mask, output):
    return value_models.squash(output, prefix_values(vmodel, vparams, seq, mask)[:, -1])


@functools.lru_cache(maxsize=4)
def make_programs(policy: Transformer, vmodel: Transformer, cfg: SamplingConfig,
                  stop_ids: tuple[int, ...], simulations: int, depth: int,
                  output: str = "value"):
    """Jitted ``start(params, seq, mask, key) -> root Node`` and ``move(params, vparams,
    root, key) -> (action [B], child Node, tree embeddings)``: one gumbel MuZero search at each
    root (``simulations``, at most ``depth`` levels), then the chosen child (a terminal root
    stays as it is)."""
    stops = jnp.asarray(stop_ids, jnp.int32)

    def child(params, vparams, node: Node, action, key):
        take = lambda a: jnp.take_along_axis(  # noqa: E731
            a, action[:, None, None] if a.ndim == 3 else action[:, None], axis=1)[:, 0]
        step, step_mask = take(node.cands), take(node.cand_mask)
        seq, mask = jax.vmap(_append)(node.seq, node.mask, step, step_mask)
        ended = take(node.cand_stops) | node.terminal
        value = _node_value(vmodel, vparams, seq, mask, output)
        cands, cmask, logp, cstops = _expand(policy, params, seq, mask, key, cfg, stops)
        full = jnp.sum(mask, axis=1) > seq.shape[1] - step.shape[1]  # no further step fits
        return Node(seq, mask, cands, cmask, logp, cstops, ended | full), value, ended

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
        k1, k2 = jax.random.split(key)
        value = _node_value(vmodel, vparams, root.seq, root.mask, output)
        out = mctx.gumbel_muzero_policy(
            (params, vparams), k1,
            mctx.RootFnOutput(prior_logits=jax.nn.log_softmax(root.cand_logp, axis=-1),
                              value=value, embedding=root),
            recurrent_fn, num_simulations=simulations, max_depth=depth,
            max_num_considered_actions=root.cands.shape[1])
        action = jnp.argmax(out.action_weights, axis=-1)
        new, _, _ = child(params, vparams, root, action, k2)
        keep = lambda a, b: jnp.where(  # noqa: E731
            root.terminal.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)
        return action, jax.tree.map(keep, root, new), out.search_tree.embeddings

    @jax.jit
    def start(params, seq, mask, key):
        cands, cmask, logp, cstops = _expand(policy, params, seq, mask, key, cfg, stops)
        return Node(seq, mask, cands, cmask, logp, cstops, jnp.zeros(seq.shape[0], bool))

    return start, move


def search(policy: Transformer, params: Params, examples: Sequence[dict], tokenizer: Tokenizer,
           value_model: value_models.ValueModel, simulations: int, width: int, fmt: PromptFormat,
           max_new_tokens: int, step_tokens: int, temperature: float, batch_rows: int = 64,
           seed: int = 0) -> tuple[strategies.Generation, dict]:
    """MCTS decoding of every problem: (the chosen solution per problem as a Generation, the
    ledger as ``beam.search`` returns it)."""
    mcfg, max_prompt_len = policy.cfg, fmt.max_prompt_len
    room = max_new_tokens - step_tokens  # the prefix never exceeds P + N - S columns
    depth = max(1, room // 2 + 1)
    if width < 1 or simulations < 1:
        raise ValueError(f"mcts needs width and simulations >= 1, got {width}, {simulations}")
    if room < 1:
        raise ValueError(f"mcts: max_new_tokens {max_new_tokens} leaves no room for steps of "
                         f"{step_tokens} tokens; lower --step-tokens")
    if simulations > max_simulations(width, depth):
        raise ValueError(f"mcts: {simulations} simulations are more than a tree of {width} "
                         f"actions and depth {depth} can hold; lower the budget")
    length = max_prompt_len + room
    if length + step_tokens > mcfg.max_seq_len:
        raise ValueError(f"mcts: prompt {max_prompt_len} + {max_new_tokens} new tokens exceeds "
                         f"max_seq_len {mcfg.max_seq_len}")
    stop = tuple(tokenizer.stop_ids)
    step_end = steps.step_end_ids(tokenizer)
    cfg = SamplingConfig(step_tokens, temperature, num_samples=width, stop_ids=stop + step_end,
                         pad_id=tokenizer.pad_id)
    start, move = make_programs(policy, value_model.model, cfg, stop, simulations, depth,
                                value_model.output)
    prompts = [encode_prompt(e, tokenizer, fmt) for e in examples]
    n = len(examples)
    ledger = {k: np.zeros(n) for k in ("tokens", "prefill_flops", "decode_flops",
                                       "verifier_flops")}
    final_seq, final_mask = [], []
    per = max(1, batch_rows // width)
    key = jax.random.key(seed)
    t0 = time.perf_counter()
    for lo in range(0, n, per):
        idx = list(range(lo, min(n, lo + per)))
        rows = [prompts[i] for i in idx] + [prompts[idx[-1]]] * (per - len(idx))
        seq, mask = pad_prompts(rows, tokenizer.pad_id, length)
        node = start(params, seq, mask, jax.random.fold_in(key, lo))
        _count(ledger, idx, mcfg, value_model.model.cfg, np.asarray(node.mask)[:len(idx), None],
               np.asarray(node.cand_mask)[:len(idx), None])
        for turn in range(depth):
            if bool(np.asarray(node.terminal)[:len(idx)].all()):
                break
            live = ~np.asarray(node.terminal)[:len(idx)]
            _, node, tree = move(params, value_model.params, node,
                                 jax.random.fold_in(key, lo * 1000 + turn + 1))
            # every node the search created (and the chosen child, created again): its
            # value-model pass, its prefix prefill, its K candidates decoded
            nodes_mask = np.asarray(tree.mask)[:len(idx), 1:]
            nodes_cands = np.asarray(tree.cand_mask)[:len(idx), 1:]
            _count(ledger, [i for i, alive in zip(idx, live) if alive], mcfg,
                   value_model.model.cfg, nodes_mask[live], nodes_cands[live])
            _count(ledger, [i for i, alive in zip(idx, live) if alive], mcfg,
                   value_model.model.cfg, np.asarray(node.mask)[:len(idx), None][live],
                   np.asarray(node.cand_mask)[:len(idx), None][live])
        final_seq.append(np.asarray(node.seq)[:len(idx)])
        final_mask.append(np.asarray(node.mask)[:len(idx)])
    seconds = time.perf_counter() - t0
    seqs, masks = np.concatenate(final_seq), np.concatenate(final_mask)
    responses = [s[m][len(p):].tolist() for s, m, p in zip(seqs, masks, prompts)]
    return strategies.chosen_generation(examples, prompts, responses, tokenizer, max_prompt_len,
                                        seconds, ledger)


def _count(ledger, idx, mcfg, vcfg, node_masks, cand_masks) -> None:
    """Adds the cost of nodes (prefill, value model, decode): node_masks [n, nodes, L],
    cand_masks [n, nodes, K, S]."""
    for row, i in enumerate(idx):
        for m, c in zip(node_masks[row], cand_masks[row]):
            p = int(m.sum())
            ledger["prefill_flops"][i] += flops.prefill_flops(mcfg, p)
            ledger["verifier_flops"][i] += flops.verifier_flops(vcfg, p)
            for cand in c:
                g = int(cand.sum())
                ledger["tokens"][i] += g
                ledger["decode_flops"][i] += flops.decode_flops(mcfg, p, g)
