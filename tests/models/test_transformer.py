"""The decoder as pure functions: cache consistency, padding, value head, dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o1jax.models import ModelConfig, Transformer, positions_from_mask, preset
from o1jax.models import value_params_from_policy


def _tiny(**kw):
    return Transformer(preset("tiny", **kw))


def test_cached_decoding_equals_full_forward():
    model = _tiny()
    params = model.init(jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (3, 12), 0, 512)
    mask = jnp.ones((3, 12), bool).at[1, :4].set(False)
    pos = positions_from_mask(mask)
    full, _ = model.apply(params, tokens, pos, mask)
    cache = model.init_cache(3, 20)
    chunks = []
    for lo, hi in [(0, 7), (7, 8), (8, 10), (10, 11), (11, 12)]:
        out, cache = model.apply(params, tokens[:, lo:hi], pos[:, lo:hi], mask[:, lo:hi], cache)
        chunks.append(out)
    real = np.asarray(mask)
    np.testing.assert_allclose(np.asarray(jnp.concatenate(chunks, 1))[real],
                               np.asarray(full)[real], atol=1e-5)
    assert int(cache["index"]) == 12


def test_left_padding_does_not_change_real_logits():
    model = _tiny()
    params = model.init(jax.random.key(0))
    toks = jax.random.randint(jax.random.key(2), (1, 6), 0, 512)
    alone, _ = model.apply(params, toks, positions_from_mask(jnp.ones((1, 6))), jnp.ones((1, 6)))
    padded = jnp.concatenate([jnp.full((1, 3), 9), toks], 1)
    mask = jnp.concatenate([jnp.zeros((1, 3)), jnp.ones((1, 6))], 1)
    out, _ = model.apply(params, padded, positions_from_mask(mask), mask)
    np.testing.assert_allclose(out[:, 3:], alone, atol=1e-5)


def test_causality():
    model = _tiny()
    params = model.init(jax.random.key(0))
    a = jax.random.randint(jax.random.key(3), (1, 8), 0, 512)
    b = a.at[0, 5].set((a[0, 5] + 1) % 512)
    m = jnp.ones((1, 8))
    la, _ = model.apply(params, a, positions_from_mask(m), m)
    lb, _ = model.apply(params, b, positions_from_mask(m), m)
    np.testing.assert_array_equal(la[:, :5], lb[:, :5])
    assert not np.allclose(la[:, 5:], lb[:, 5:])


def test_value_model_from_policy_backbone():
    policy = _tiny()
    params = policy.init(jax.random.key(0))
    value = Transformer(policy.cfg, head="value")
    vparams = value_params_from_policy(params, jax.random.key(1))
    assert jax.tree.structure(vparams) == jax.tree.structure(value.init(jax.random.key(0)))
    tokens = jax.random.randint(jax.random.key(1), (2, 5), 0, 512)
    m = jnp.ones((2, 5))
    values, _ = value.apply(vparams, tokens, positions_from_mask(m), m)
    assert values.shape == (2, 5) and values.dtype == jnp.float32
    # value = hidden @ w + b on the policy's own final hidden states
    hidden, _ = policy.hidden(params, tokens, positions_from_mask(m), m)
    np.testing.assert_allclose(values, hidden @ vparams["value_head"]["w"], atol=1e-5)
    # separate parameters: changing the value backbone leaves the policy alone
    assert vparams["embed"] is not params["embed"]


def test_bfloat16_compute_keeps_f32_params_and_is_close():
    f32 = _tiny()
    bf16 = _tiny(dtype="bfloat16")
    params = f32.init(jax.random.key(0))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(bf16.init(jax.random.key(0))))
    tokens = jax.random.randint(jax.random.key(1), (2, 10), 0, 512)
    m = jnp.ones((2, 10))
    a, _ = f32.apply(params, tokens, positions_from_mask(m), m)
    b, _ = bf16.apply(params, tokens, positions_from_mask(m), m)
    assert b.dtype == jnp.float32
    np.testing.assert_allclose(b, a, atol=0.05)
    assert not np.array_equal(a, b)


def test_param_count_matches_preset_and_tree():
    for name in ["tiny", "small25m"]:
        model = Transformer(preset(name))
        n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(model.param_shapes()))
        assert n == model.cfg.num_params()
    assert 20e6 < preset("small25m").num_params() < 30e6
    assert 0.45e9 < preset("qwen2.5-0.5b").num_params() < 0.55e9
    assert 7.0e9 < preset("llama-3.1-8b").num_params() < 8.1e9


@pytest.mark.parametrize("bad, match", [
    (dict(num_heads=6, num_kv_heads=4), "not a multiple"),
    (dict(architecture="gpt2"), "unknown architecture"),
    (dict(dtype="int8"), "dtype"),
])
def test_bad_config(bad, match):
    with pytest.raises(ValueError, match=match):
        preset("tiny", **bad)
    with pytest.raises(ValueError, match="unknown model preset"):
        preset("tiny-typo")
    assert isinstance(preset("tiny"), ModelConfig)


# Per-matrix sums of |w| of the arithmetic demo's initial policy and critic, seed 0,
# as the commit before the vision encoder (94a119c's parent) drew them: the demo's figures were
# measured from these weights, so a change that moves them must show up here.
DEMO_INIT = {
    "embed": 651.0295815957508, "w_down": 3130.3985879128695,
    "w_gate": 3139.1228317678765, "w_up": 3133.6593857384314,
    "wk": 523.9063592986655, "wo": 1046.4054603935358, "wq": 1048.2576005403487,
    "wv": 522.7075888945483, "value_head.w": 2.048726287917816,
}


def test_demo_initial_parameters_are_pinned():
    """configs/arithmetic_ppo.py's shapes at seed 0: each matrix's sum of |w| equals the figure
    drawn before the vision encoder existed (text models keep their keys when parameters are
    added; the vision tower is keyed with fold_in)."""
    shapes = dict(vocab_size=320, hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2,
                  head_dim=32, mlp_dim=384, max_seq_len=128)
    for head in ("policy", "value"):
        params = Transformer(preset("tiny", **shapes), head=head).init(jax.random.key(0))
        flat = {jax.tree_util.keystr(k, simple=True, separator="."): np.asarray(v, np.float64)
                for k, v in jax.tree_util.tree_leaves_with_path(params)}
        for name, abs_sum in DEMO_INIT.items():
            key = name if name in flat else "layers." + name
            if key not in flat:
                assert head == "policy" and name == "value_head.w"
                continue
            np.testing.assert_allclose(np.abs(flat[key]).sum(), abs_sum, rtol=1e-9, err_msg=key)
