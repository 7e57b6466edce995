"""The routed MLP (o1jax/models/layers/moe.py) against a float64 loop over tokens, transformers'
Qwen3MoeSparseMoeBlock and load_balancing_loss_func, finite differences, routing replay, and
expert-sharded meshes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from o1jax.models.layers import moe

D, F = 16, 24


def random_params(rng, d=D, e=4, f=F, scale=1.0, router_scale=1.0, dtype=np.float32):
    """Weights large enough that outputs are O(1) (init's 0.02 would make every check trivial)."""
    return {"router": (router_scale * rng.normal(size=(d, e)) / np.sqrt(d)).astype(dtype),
            "w_gate": (scale * rng.normal(size=(e, d, f)) / np.sqrt(d)).astype(dtype),
            "w_up": (scale * rng.normal(size=(e, d, f)) / np.sqrt(d)).astype(dtype),
            "w_down": (scale * rng.normal(size=(e, f, d)) / np.sqrt(f)).astype(dtype)}


def loop_reference(h, p, k, norm_topk, experts=None):
    """float64 per token: softmax router, its top-k (or the given experts), SwiGLU of each."""
    h = np.asarray(h, np.float64)
    p = {n: np.asarray(w, np.float64) for n, w in p.items()}
    out = np.zeros_like(h)
    for b in range(h.shape[0]):
        for t in range(h.shape[1]):
            x = h[b, t]
            logits = x @ p["router"]
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            chosen = np.argsort(-probs, kind="stable")[:k] if experts is None else experts[b, t]
            gates = probs[chosen]
            if norm_topk:
                gates = gates / gates.sum()
            for g, e in zip(gates, chosen):
                gate, up = x @ p["w_gate"][e], x @ p["w_up"][e]
                out[b, t] += g * ((gate / (1 + np.exp(-gate)) * up) @ p["w_down"][e])
    return out


def test_init_and_axes():
    p = moe.init(jax.random.key(0), D, 4, F)
    axes = moe.param_axes()
    assert set(p) == set(axes)
    assert {n: w.shape for n, w in p.items()} == {"router": (D, 4), "w_gate": (4, D, F),
                                                   "w_up": (4, D, F), "w_down": (4, F, D)}
    assert all(len(axes[n]) == p[n].ndim for n in p)
    assert abs(float(jnp.std(p["w_gate"])) - 0.02) < 0.003
    # keys per parameter by fold_in: a parameter's value does not depend on the others
    assert np.array_equal(p["w_up"], 0.02 * jax.random.normal(
        jax.random.fold_in(jax.random.key(0), 2), (4, D, F)))


@pytest.mark.parametrize("k,norm_topk,skew", [(2, True, False), (2, False, False),
                                              (1, True, False), (3, True, True)])
def test_against_loop(k, norm_topk, skew):
    rng = np.random.default_rng(k + 10 * norm_topk)
    p = random_params(rng, e=6)
    h = rng.normal(size=(3, 5, D)).astype(np.float32)
    if skew:  # most tokens pile onto expert 0: dropless dispatch must still run every pair
        p["router"][:, 0] += 3 * h.mean((0, 1)) / np.linalg.norm(h.mean((0, 1))) ** 2
    out, aux = jax.jit(moe.moe_mlp, static_argnums=(2, 3))(h, p, k, norm_topk)
    assert out.dtype == jnp.float32 and aux["experts"].dtype == jnp.int32
    assert aux["router_probs"].shape == (3, 5, 6) and aux["experts"].shape == (3, 5, k)
    np.testing.assert_allclose(out, loop_reference(h, p, k, norm_topk), atol=1e-5, rtol=1e-5)
    if skew:
        assert np.mean(np.asarray(aux["experts"]) == 0) > 0.25
    gates, _, probs = moe.route(h, p["router"], k, norm_topk)
    assert gates.dtype == jnp.float32 and gates.shape == (3, 5, k)
    np.testing.assert_allclose(probs.sum(-1), 1, atol=1e-6)


def test_low_precision_dtype():
    rng = np.random.default_rng(0)
    p = random_params(rng)
    h = jnp.asarray(rng.normal(size=(2, 3, D)), jnp.bfloat16)
    out, aux = moe.moe_mlp(h, p, 2, True)
    assert out.dtype == jnp.bfloat16 and aux["router_probs"].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out, np.float32),
                               loop_reference(np.asarray(h, np.float32), p, 2, True),
                               atol=0.1, rtol=0.05)


@pytest.mark.parametrize("norm_topk", [True, False])
def test_against_transformers(norm_topk):
    torch = pytest.importorskip("torch")
    from transformers import Qwen3MoeConfig
    from transformers.models.qwen3_moe import modeling_qwen3_moe as hf

    cfg = Qwen3MoeConfig(hidden_size=D, moe_intermediate_size=F, num_experts=4,
                         num_experts_per_tok=2, norm_topk_prob=norm_topk, hidden_act="silu")
    torch.manual_seed(0)
    block = hf.Qwen3MoeSparseMoeBlock(cfg).eval()
    with torch.no_grad():
        for prm in block.parameters():
            prm.normal_(0, 0.3)
    gate_up = block.experts.gate_up_proj.detach().numpy()      # [E, 2F, D]: gate rows, up rows
    p = {"router": block.gate.weight.detach().numpy().T,      # [E, D] -> [D, E]
         "w_gate": gate_up[:, :F, :].transpose(0, 2, 1),
         "w_up": gate_up[:, F:, :].transpose(0, 2, 1),
         "w_down": block.experts.down_proj.detach().numpy().transpose(0, 2, 1)}  # [E, D, F]
    assert p["w_gate"].shape == (4, D, F) and p["w_down"].shape == (4, F, D)
    h = np.random.default_rng(1).normal(size=(2, 7, D)).astype(np.float32)
    with torch.no_grad():
        want = block(torch.from_numpy(h)).numpy()
        logits = torch.from_numpy(h).reshape(-1, D) @ block.gate.weight.T
    out, aux = moe.moe_mlp(h, p, 2, norm_topk)
    np.testing.assert_allclose(out, want, atol=1e-5, rtol=1e-5)

    mask = np.ones((2, 7), np.int64)
    mask[0, 4:] = 0
    mask[1, :2] = 0
    for m in (None, mask):
        want_loss = hf.load_balancing_loss_func(
            (logits,), 4, 2, None if m is None else torch.from_numpy(m)).item()
        loss = moe.load_balancing_loss(aux["router_probs"], aux["experts"],
                                       None if m is None else jnp.asarray(m), 4)
        np.testing.assert_allclose(loss, want_loss, rtol=1e-5)


def test_gradients_match_finite_differences():
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        p = {n: jnp.asarray(w) for n, w in random_params(rng, e=5, dtype=np.float64).items()}
        h = jnp.asarray(rng.normal(size=(2, 4, D)))
        c = jnp.asarray(rng.normal(size=(2, 4, D)))
        mask = jnp.asarray([[1, 1, 1, 0], [1, 1, 1, 1]])
        k = 2
        # top-k is piecewise constant: the k-th and (k+1)-th probabilities must be well apart
        top = np.sort(np.asarray(moe.router_probs(h, p["router"])), -1)[..., ::-1]
        assert np.min(top[..., k - 1] - top[..., k]) > 1e-4

        def loss(p, h):
            out, aux = moe.moe_mlp(h, p, k, True)
            return jnp.sum(out * c) + moe.load_balancing_loss(aux["router_probs"],
                                                              aux["experts"], mask, 5)

        f = jax.jit(loss)
        grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(p, h)
        assert jax.tree.leaves(grads)[0].dtype == jnp.float64
        eps = 1e-6
        for name, g in list(grads[0].items()) + [("h", grads[1])]:
            assert float(jnp.abs(g).max()) > 0, name
            for _ in range(3):
                idx = tuple(int(rng.integers(s)) for s in g.shape)

                def at(delta):
                    if name == "h":
                        return f(p, h.at[idx].add(delta))
                    return f({**p, name: p[name].at[idx].add(delta)}, h)

                fd = (at(eps) - at(-eps)) / (2 * eps)
                np.testing.assert_allclose(g[idx], fd, rtol=1e-6, atol=1e-8, err_msg=name)


def test_routing_replay():
    rng = np.random.default_rng(4)
    p = random_params(rng, e=5)
    h = rng.normal(size=(2, 6, D)).astype(np.float32)
    run = jax.jit(moe.moe_mlp, static_argnums=(2, 3))
    out, aux = run(h, p, 2, True)
    replayed, aux2 = run(h, p, 2, True, None, aux["experts"])
    np.testing.assert_array_equal(replayed, out)
    np.testing.assert_array_equal(aux2["gates"], aux["gates"])
    # the two least likely experts instead
    other = np.argsort(np.asarray(aux["router_probs"]), -1)[..., :2].astype(np.int32)
    for norm_topk in (True, False):
        changed, aux3 = run(h, p, 2, norm_topk, None, other)
        np.testing.assert_array_equal(aux3["experts"], other)
        assert np.abs(np.asarray(changed) - np.asarray(out)).max() > 1e-2
        np.testing.assert_allclose(changed, loop_reference(h, p, 2, norm_topk, other),
                                   atol=1e-5, rtol=1e-5)
    # the router still gets gradients under replay (through the gates)
    g = jax.grad(lambda r: jnp.sum(moe.moe_mlp(h, {**p, "router": r}, 2, True,
                                               experts=other)[0]))(p["router"])
    assert float(jnp.abs(g).max()) > 0
    with pytest.raises(ValueError, match="expected"):
        moe.moe_mlp(h, p, 2, True, experts=other[..., :1])


@pytest.mark.parametrize("mesh_axes,n", [("fsdp", 2), ("fsdp", 4), ("expert", 4)])
def test_expert_sharded_mesh(mesh_axes, n):
    """Experts split over n devices: o1jax's (data, fsdp, tensor) mesh with experts over fsdp and
    the hidden units over tensor (the layer's activation constraints on), or a bare mesh with
    only an expert axis (no constraints: mesh=None)."""
    rng = np.random.default_rng(5)
    p = random_params(rng, e=8)
    h = rng.normal(size=(4, 6, D)).astype(np.float32)
    want = moe.moe_mlp(h, p, 2, True)[0]
    devices = np.asarray(jax.devices()[:8])
    if mesh_axes == "fsdp":
        mesh = Mesh(devices.reshape(1, n, 8 // n), ("data", "fsdp", "tensor"))
        specs = {"router": P(), "w_gate": P("fsdp", None, "tensor"),
                 "w_up": P("fsdp", None, "tensor"), "w_down": P("fsdp", "tensor", None)}
        h_spec, layer_mesh = P("fsdp"), mesh
    else:
        mesh = Mesh(devices[:n], ("expert",))
        specs = {"router": P(), "w_gate": P("expert"), "w_up": P("expert"),
                 "w_down": P("expert")}
        h_spec, layer_mesh = P(), None
    ps = {name: jax.device_put(w, NamedSharding(mesh, specs[name])) for name, w in p.items()}
    assert len(ps["w_gate"].addressable_shards) == mesh.size
    assert ps["w_gate"].addressable_shards[0].data.shape[0] == 8 // n
    hs = jax.device_put(h, NamedSharding(mesh, h_spec))
    out = jax.jit(lambda h, p: moe.moe_mlp(h, p, 2, True, layer_mesh)[0])(hs, ps)
    np.testing.assert_allclose(out, want, atol=1e-6, rtol=1e-6)
