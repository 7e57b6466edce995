"""The attention kernel backends against o1jax's own ``xla`` attention and a plain loop: Pallas
kernels in interpret mode on the CPU; cuDNN's argument building through XLA's form of the same
``jax.nn.dot_product_attention`` call (cuDNN itself is checked on a GPU by
benchmarks/accelerator.py). Lengths <= 512, <= 4 KV heads."""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.pallas import tpu as pltpu

from o1jax.models import Transformer, positions_from_mask, preset
from o1jax.models.layers import attention, decode_kernel, kernels, tpu_decode_kernel


def _qkv(seed, b, t, h, kvh, dh, s=None, dtype=jnp.float32):
    """q [B, T, H, Dh], k and v [B, KVH, S, Dh] (the kernels' layout)."""
    kq, kk, kv = jax.random.split(jax.random.key(seed), 3)
    s = t if s is None else s
    return (jax.random.normal(kq, (b, t, h, dh), dtype),
            jax.random.normal(kk, (b, kvh, s, dh), dtype),
            jax.random.normal(kv, (b, kvh, s, dh), dtype))


def _padded_mask(t, pads):
    """[B, T] bool: row i has pads[i] = (left, right) padding, plus holes in the last row."""
    mask = np.ones((len(pads), t), bool)
    for i, (left, right) in enumerate(pads):
        mask[i, :left] = False
        mask[i, t - right:] = False
    mask[-1, t // 3: t // 3 + 5] = False
    return jnp.asarray(mask)


def _loop_decode(q, k, v, mask, end):
    """The decode reference, a plain loop: q [B, H, Dh], k, v [B, KVH, S, Dh]."""
    q, k, v, mask = map(np.asarray, (q, k, v, mask))
    b, h, dh = q.shape
    g = h // k.shape[1]
    out = np.zeros((b, h, dh))
    for i in range(b):
        slots = [j for j in range(end) if mask[i, j]]
        for j in range(h):
            scores = k[i, j // g, slots].astype(np.float64) @ q[i, j] / np.sqrt(dh)
            p = np.exp(scores - scores.max())
            out[i, j] = (p / p.sum()) @ v[i, j // g, slots]
    return out


@pytest.mark.parametrize("s,h,kvh,dh,end", [(256, 4, 2, 16, 200), (512, 7, 1, 32, 512),
                                            (256, 4, 4, 64, 17), (1280, 2, 1, 16, 1100)])
def test_decode_kernel_matches_a_plain_loop(s, h, kvh, dh, end):
    q, k, v = _qkv(0, 3, 1, h, kvh, dh, s)
    mask = np.random.RandomState(s).rand(3, s) < 0.8
    mask[0, :end - 3] = False                       # left padding up to just below the query
    out = jax.jit(lambda *a: decode_kernel.decode_attention(*a, end, interpret=True))(
        q[:, 0], k, v, jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(out), _loop_decode(q[:, 0], k, v, mask, end),
                               atol=2e-5)


@pytest.mark.parametrize("s,h,kvh,dh,end", [(384, 7, 1, 32, 130), (128, 4, 4, 64, 17),
                                            (384, 2, 1, 128, 384)])
def test_tpu_decode_kernel_matches_a_plain_loop(s, h, kvh, dh, end):
    """In Pallas's TPU interpret mode, keys in ``xla``'s layout [B, KVH, Dh, S]; blocks past
    ``end`` skipped, left padding, holes, and a row with no real slot before ``end`` (zeros)."""
    q, k, v = _qkv(0, 4, 1, h, kvh, dh, s)
    mask = np.random.RandomState(s).rand(4, s) < 0.8
    mask[0, :end - 3] = False                       # left padding up to just below the query
    mask[3, :end] = False                           # nothing real to read
    with pltpu.force_tpu_interpret_mode():
        out = jax.jit(lambda *a: tpu_decode_kernel.decode_attention(*a, end))(
            q[:, 0], k.swapaxes(2, 3), v, jnp.asarray(mask))
    want = _loop_decode(q[:3, 0], k[:3], v[:3], mask[:3], end)
    np.testing.assert_allclose(np.asarray(out)[:3], want, atol=2e-5)
    np.testing.assert_array_equal(np.asarray(out)[3], 0.0)


def test_decode_kernel_rejects_a_cache_it_cannot_split():
    q, k, v = _qkv(0, 1, 1, 2, 1, 16, 200)
    with pytest.raises(ValueError, match="multiple of 256"):
        decode_kernel.decode_attention(q[:, 0], k, v, jnp.ones((1, 200), bool), 10)
    with pytest.raises(ValueError, match="multiple of 128"):
        tpu_decode_kernel.decode_attention(q[:, 0], k.swapaxes(2, 3), v,
                                           jnp.ones((1, 200), bool), 10)


def _reference(q, k, v, mask):
    """``attention.attend`` (xla's) of T tokens without a cache; keys taken to its layout."""
    return attention.attend(q, k.swapaxes(2, 3), v, attention.causal_mask(mask, 0, q.shape[1]))


@pytest.mark.parametrize("t,h,kvh", [(64, 4, 2), (300, 2, 2)])
def test_cudnn_call_matches_attend_in_outputs_and_gradients(t, h, kvh):
    """The real tokens' outputs of ``causal_attend`` (rows moved real-first, causal with
    sequence lengths) and their gradients equal ``attend``'s under the padded mask."""
    q, k, v = _qkv(1, 4, t, h, kvh, 16)
    mask = _padded_mask(t, [(0, 0), (t // 4, 0), (t, 0), (5, t // 5)])    # row 2: padding
    order = kernels.real_first(mask)
    weight = mask[:, :, None, None].astype(jnp.float32)

    def loss(f, q, k, v):
        return jnp.sum(jnp.sin(f(q, k, v)) * weight)

    ours = lambda q, k, v: kernels.causal_attend(q, k, v, *order, cudnn=False)  # noqa: E731
    ref = lambda q, k, v: _reference(q, k, v, mask)  # noqa: E731
    real = np.asarray(mask)
    assert np.isfinite(np.asarray(ours(q, k, v))).all()
    np.testing.assert_allclose(np.asarray(ours(q, k, v))[real], np.asarray(ref(q, k, v))[real],
                               atol=2e-5)
    for g_ours, g_ref in zip(jax.grad(lambda *a: loss(ours, *a), argnums=(0, 1, 2))(q, k, v),
                             jax.grad(lambda *a: loss(ref, *a), argnums=(0, 1, 2))(q, k, v)):
        np.testing.assert_allclose(np.asarray(g_ours), np.asarray(g_ref), atol=5e-5)


def test_masked_call_matches_attend_for_a_chunk_into_a_cache():
    q, k, v = _qkv(2, 2, 8, 4, 2, 16, 40)
    kv_mask = jnp.ones((2, 40), bool).at[0, :6].set(False).at[:, 30:].set(False)
    key_mask = attention.causal_mask(kv_mask, 12, 8)
    np.testing.assert_allclose(
        np.asarray(kernels.masked_attend(q, k, v, key_mask, cudnn=False)),
        np.asarray(attention.attend(q, k.swapaxes(2, 3), v, key_mask)), atol=2e-5)


@pytest.mark.parametrize("t,h,kvh", [(100, 4, 2), (256, 2, 1)])
def test_tpu_flash_matches_attend_in_outputs_and_gradients(t, h, kvh):
    q, k, v = _qkv(3, 2, t, h, kvh, 32)
    mask = _padded_mask(t, [(t // 3, 0), (0, 7)])
    weight = mask[:, :, None, None].astype(jnp.float32)
    ours = lambda q, k, v: kernels.tpu_flash_attend(q, k.swapaxes(2, 3), v, mask)  # noqa: E731
    ref = lambda q, k, v: _reference(q, k, v, mask)  # noqa: E731
    real = np.asarray(mask)
    with pltpu.force_tpu_interpret_mode():
        out = jax.jit(ours)(q, k, v)
        grads = jax.jit(jax.grad(lambda *a: jnp.sum(jnp.sin(ours(*a)) * weight),
                                 argnums=(0, 1, 2)))(q, k, v)
    np.testing.assert_allclose(np.asarray(out)[real], np.asarray(ref(q, k, v))[real], atol=2e-5)
    want = jax.grad(lambda *a: jnp.sum(jnp.sin(ref(*a)) * weight), argnums=(0, 1, 2))(q, k, v)
    for g_ours, g_ref in zip(grads, want):
        np.testing.assert_allclose(np.asarray(g_ours), np.asarray(g_ref), atol=5e-5)


def test_backends_resolve_per_platform_and_refuse_what_cannot_run():
    bf16, f32 = preset("qwen2.5-0.5b", dtype="bfloat16"), preset("qwen2.5-0.5b")
    assert kernels.resolve(bf16, "cpu") == "xla"
    assert kernels.resolve(bf16, "gpu") == "gpu"
    assert kernels.resolve(f32, "gpu") == "xla"            # cuDNN: half precision only
    assert kernels.resolve(bf16.replace(head_dim=20), "gpu") == "xla"
    assert kernels.resolve(f32, "tpu") == "tpu"
    with pytest.raises(ValueError, match="takes bfloat16 or float16"):
        kernels.resolve(f32.replace(attention="gpu"), "gpu")
    with pytest.raises(ValueError, match="query heads per KV head"):
        kernels.resolve(bf16.replace(attention="gpu", num_heads=34, num_kv_heads=2), "gpu")
    with pytest.raises(ValueError, match="cannot run on tpu"):
        kernels.resolve(bf16.replace(attention="gpu"), "tpu")
    with pytest.raises(ValueError, match="use one of"):
        preset("tiny", attention="flash")


@pytest.mark.parametrize("backend,keys", [("gpu", (256, 16)), ("tpu", (16, 128))])
def test_kernel_backend_model_matches_xla_in_a_forward_and_a_cached_decode(backend, keys):
    """A bf16 model: logits of a padded batch without a cache, and of a prefill then decode
    steps into the backend's cache (``gpu``: keys [B, KVH, S, Dh], 256 slots; ``tpu``: ``xla``'s
    [B, KVH, Dh, S], 128 slots; its kernels in Pallas's TPU interpret mode), against ``xla``."""
    xla = Transformer(preset("tiny", dtype="bfloat16", attention="xla"))
    ours = Transformer(preset("tiny", dtype="bfloat16", attention=backend))
    params = xla.init(jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (3, 14), 0, 512)
    mask = jnp.ones((3, 14), bool).at[1, :4].set(False).at[2, 11:].set(False)
    pos = positions_from_mask(mask)
    real = np.asarray(mask)

    def cached(model):
        cache = model.init_cache(3, 20)
        out, cache = model.apply(params, tokens[:, :9], pos[:, :9], mask[:, :9], cache)
        outs = [out]
        for i in range(9, 14):
            out, cache = model.apply(params, tokens[:, i:i + 1], pos[:, i:i + 1],
                                     mask[:, i:i + 1], cache)
            outs.append(out)
        return jnp.concatenate(outs, 1), cache

    # the TPU's kernels run under its interpret mode; gpu's decode kernel interprets by itself
    # on a CPU, and the TPU mode would take it over
    interpret = pltpu.force_tpu_interpret_mode() if backend == "tpu" else contextlib.nullcontext()
    with interpret:
        full = {m: jax.jit(lambda p, m=m: m.apply(p, tokens, pos, mask)[0])(params)
                for m in (xla, ours)}
        steps = {m: jax.jit(lambda m=m: cached(m))() for m in (xla, ours)}
    assert steps[ours][1]["k"][0].shape[-2:] == keys
    scale = float(np.abs(np.asarray(full[xla])[real]).max())
    for got, ref in ((full[ours], full[xla]), (steps[ours][0], steps[xla][0])):
        err = np.abs(np.asarray(got, np.float32)[real] - np.asarray(ref, np.float32)[real])
        assert err.max() <= 0.03 * scale, err.max() / scale


def test_a_two_layer_model_compiles_for_a_tpu_topology_with_the_kernels():
    """The TPU compiler itself (libtpu, no TPU attached) compiles a bf16 2-layer model's forward
    and backward (the flash kernel) and a decode step into its cache (the decode kernel) on a
    4-chip v5e mesh with ``auto`` attention, the kernels per device."""
    from o1jax import sharding
    from o1jax.hardware import parse_hardware
    from o1jax.run.memory import target_devices

    devices, compiler = target_devices(parse_hardware("v5e-4"))
    mesh = sharding.make_mesh((4, 1, 1), devices)
    model = Transformer(preset("tiny", num_layers=2, dtype="bfloat16"), mesh=mesh)
    assert compiler == "tpu" and model.attention == "tpu"
    rows = sharding.batch_sharding(mesh, 2, (8, 256))
    tokens = jax.ShapeDtypeStruct((8, 256), jnp.int32, sharding=rows)
    mask = jax.ShapeDtypeStruct((8, 256), jnp.bool_, sharding=rows)
    params = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                          model.param_shapes(), model.shardings())

    def loss(p, tokens, mask):
        logits = model.apply(p, tokens, positions_from_mask(mask), mask)[0]
        return jnp.mean(jnp.where(mask[..., None], logits, 0.0))

    text = jax.jit(jax.grad(loss)).lower(params, tokens, mask).compile().as_text()
    assert "tpu_custom_call" in text

    def decode(p, tokens, mask):
        cache = model.init_cache(8, 300)
        _, cache = model.apply(p, tokens[:, :-1], positions_from_mask(mask[:, :-1]),
                               mask[:, :-1], cache)
        pos = jnp.sum(mask, axis=1, keepdims=True, dtype=jnp.int32) - 1
        return model.apply(p, tokens[:, -1:], pos, mask[:, -1:], cache)[0]

    text = jax.jit(decode).lower(params, tokens, mask).compile().as_text()
    assert "o1jax_tpu_decode_attention" in text
