"""Routed (mixture-of-experts) SwiGLU feed-forward block, Qwen3-MoE's semantics.

A router [D, E] scores every token against E experts (softmax over the E logits in f32); each token
goes to its top-k experts, whose gates are the router's probabilities of them (renormalised to sum
to 1 when ``norm_topk``), and the block's output is the gate-weighted sum of those experts' SwiGLU
outputs (``transformers``' Qwen3MoeSparseMoeBlock).

Dispatch is dropless: the B*T*k (token, choice) pairs are sorted by expert and each expert's
contiguous run of rows goes through its own weights in one grouped matmul (``jax.lax.ragged_dot``),
so no capacity factor and nothing dropped, with static shapes (the group sizes are data, the row
count B*T*k is not). On TPU and GPU ``ragged_dot`` lowers to a grouped matmul; on CPU JAX runs it
densely (every row against every expert, masked: E times the FLOPs and an [E, B*T*k, D] buffer),
correct but only for small models. The functions here take one layer's parameters; a transformer
stacks them on a leading layer axis.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from o1jax import sharding

# fold_in index of each parameter: fixed, so adding one never moves the others' values
_KEY_INDEX = {"router": 0, "w_gate": 1, "w_up": 2, "w_down": 3}


def param_axes() -> dict:
    """Logical axis names of one layer's parameters (``init``'s tree)."""
    return {"router": ("embed", None),
            "w_gate": ("experts", "embed", "mlp"),
            "w_up": ("experts", "embed", "mlp"),
            "w_down": ("experts", "mlp", "embed")}


def init(key: jax.Array, d: int, e: int, f: int, dtype=jnp.float32) -> dict:
    """Random parameters of one layer, normal(0.02): router [D, E], w_gate and w_up [E, D, F],
    w_down [E, F, D] (D: hidden size, E: experts, F: ``moe_intermediate_size``)."""
    shapes = {"router": (d, e), "w_gate": (e, d, f), "w_up": (e, d, f), "w_down": (e, f, d)}
    return {name: 0.02 * jax.random.normal(jax.random.fold_in(key, _KEY_INDEX[name]), shape,
                                           dtype)
            for name, shape in shapes.items()}


def _at_least_f32(dtype):
    """f32, or f64 for f64 inputs (gradient checks)."""
    return jnp.promote_types(dtype, jnp.float32)


def router_probs(h: jax.Array, router: jax.Array) -> jax.Array:
    """softmax(h @ router) in f32: h [B, T, D], router [D, E] -> [B, T, E]."""
    logits = jnp.einsum("btd,de->bte", h, router.astype(h.dtype),
                        preferred_element_type=_at_least_f32(h.dtype))
    return jax.nn.softmax(logits, axis=-1)


def _gates(probs: jax.Array, experts: jax.Array, norm_topk: bool) -> jax.Array:
    """The router's probabilities of the chosen ``experts`` [B, T, k], renormalised to sum to 1
    over the k when ``norm_topk``."""
    gates = jnp.take_along_axis(probs, experts, axis=-1)
    return gates / gates.sum(-1, keepdims=True) if norm_topk else gates


def route(h: jax.Array, router: jax.Array, k: int, norm_topk: bool):
    """Top-k routing of h [B, T, D] with router [D, E]: (gates [B, T, k] f32, experts [B, T, k]
    int32, router_probs [B, T, E] f32). Experts come in decreasing probability (ties: lower index
    first, as ``torch.topk`` on CPU)."""
    probs = router_probs(h, router)
    _, experts = jax.lax.top_k(probs, k)
    experts = experts.astype(jnp.int32)
    return _gates(probs, experts, norm_topk), experts, probs


def grouped_swiglu(x: jax.Array, group_sizes: jax.Array, p: dict, mesh=None) -> jax.Array:
    """Each expert's SwiGLU on its run of rows: x [M, D] sorted by expert, ``group_sizes`` [E]
    int32 (rows of expert 0, then 1, ...; summing to M) -> [M, D] in x's dtype."""
    dt = x.dtype
    gate = jax.lax.ragged_dot(x, p["w_gate"].astype(dt), group_sizes)
    up = jax.lax.ragged_dot(x, p["w_up"].astype(dt), group_sizes)
    a = sharding.constrain(jax.nn.silu(gate) * up, mesh, (None, "act_mlp"))
    return jax.lax.ragged_dot(a, p["w_down"].astype(dt), group_sizes)


def moe_mlp(h: jax.Array, p: dict, k: int, norm_topk: bool, mesh=None,
            experts: jax.Array | None = None):
    """The routed block: h [B, T, D] -> (out [B, T, D] in h's dtype, aux).

    ``p``: ``init``'s tree (router [D, E], w_gate/w_up [E, D, F], w_down [E, F, D]); ``k``
    experts per token; ``norm_topk``: renormalise the k gates to sum to 1 (Qwen3's
    ``norm_topk_prob``). ``experts`` [B, T, k] int32, each in [0, E), replays a routing (RL's
    routing replay): those experts run instead of the router's top-k, gated by the router's
    (renormalised) probabilities of them, so gradients still reach the router. ``aux``:
    {"router_probs": [B, T, E] f32, "experts": [B, T, k] int32, "gates": [B, T, k] f32}, what
    ``load_balancing_loss`` reads."""
    b, t, d = h.shape
    num_experts = p["router"].shape[-1]
    if experts is None:
        gates, experts, probs = route(h, p["router"], k, norm_topk)
    else:
        if experts.shape != (b, t, k):
            raise ValueError(f"experts has shape {experts.shape}, expected {(b, t, k)}")
        experts = experts.astype(jnp.int32)
        probs = router_probs(h, p["router"])
        gates = _gates(probs, experts, norm_topk)
    flat = experts.reshape(-1)                          # [N k]: choice j of token n at n k + j
    order = jnp.argsort(flat, stable=True)              # pairs grouped by expert
    group_sizes = jnp.zeros((num_experts,), jnp.int32).at[flat].add(1)
    rows = h.reshape(b * t, d)[order // k]              # [N k, D] sorted by expert
    y = grouped_swiglu(rows, group_sizes, p, mesh)
    y = y[jnp.argsort(order)].reshape(b * t, k, d)      # back to (token, choice) order
    out = jnp.einsum("nkd,nk->nd", y, gates.reshape(b * t, k).astype(y.dtype),
                     preferred_element_type=_at_least_f32(h.dtype)).astype(h.dtype).reshape(b, t, d)
    out = sharding.constrain(out, mesh, ("act_batch", "act_length", "act_embed"))
    return out, {"router_probs": probs, "experts": experts, "gates": gates}


def expert_load(router_probs: jax.Array, experts: jax.Array, mask: jax.Array | None,
                num_experts: int) -> tuple[jax.Array, jax.Array]:
    """(f, P), each [E]: the chosen (token, choice) pairs of each expert per real token (f sums
    to k) and the mean router probability of each expert over the real tokens (P sums to 1);
    the factors of ``load_balancing_loss`` (shapes as there)."""
    if mask is None:
        mask = jnp.ones(router_probs.shape[:2], jnp.float32)
    dt = _at_least_f32(router_probs.dtype)
    m = mask.astype(dt)
    rows = jnp.maximum(m.sum(), 1.0)
    counts = jnp.einsum("btke,bt->e", jax.nn.one_hot(experts, num_experts, dtype=dt), m)
    return counts / rows, jnp.einsum("bte,bt->e", router_probs.astype(dt), m) / rows


def load_balancing_loss(router_probs: jax.Array, experts: jax.Array, mask: jax.Array | None,
                        num_experts: int) -> jax.Array:
    """Switch Transformer's auxiliary loss of one layer, as ``transformers``'
    ``load_balancing_loss_func``: E * sum_e f_e * P_e over the real tokens, f_e the chosen
    (token, choice) pairs of expert e per token (summing to k) and P_e the mean router probability
    of e. router_probs [B, T, E] f32, experts [B, T, k], mask [B, T] (1 = real token; None: all)
    -> f32 scalar (0 without a real token). Over several layers transformers averages f and P
    over layers first (``Transformer.hidden``'s ``balance_loss``)."""
    f, p = expert_load(router_probs, experts, mask, num_experts)
    return num_experts * jnp.sum(f * p)
