"""The wide sweep of the attention kernels against o1jax's ``xla`` attention (CI runs a few
points of it in tests/models/layers/test_kernels.py): Pallas kernels in interpret mode (the
TPU flash kernel; decode: the GPU and the TPU kernels), cuDNN's call through XLA's form of it,
over lengths, paddings and head groupings.

    python scripts/kernel_sweep.py [--lengths 64,256,1000,2048] [--heads 4:1,8:2,14:2,8:8]

Prints one line per point (largest output and gradient differences over real tokens, f32) and
exits 1 if any exceeds its tolerance (outputs 5e-5, gradients 2e-4; decode 5e-5).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental.pallas import tpu as pltpu  # noqa: E402

from o1jax.models.cache import cache_slots  # noqa: E402
from o1jax.models.layers import (attention, decode_kernel, kernels,  # noqa: E402
                                 tpu_decode_kernel)

OUT_TOL, GRAD_TOL = 5e-5, 2e-4


def inputs(seed, b, t, h, kvh, dh):
    kq, kk, kv, km = jax.random.split(jax.random.key(seed), 4)
    q = jax.random.normal(kq, (b, t, h, dh))
    k, v = (jax.random.normal(x, (b, kvh, t, dh)) for x in (kk, kv))
    left = jax.random.randint(km, (b,), 0, t // 2)
    right = jax.random.randint(jax.random.fold_in(km, 1), (b,), 0, t // 4)
    slots = jnp.arange(t)
    mask = (slots >= left[:, None]) & (slots < t - right[:, None])
    return q, k, v, mask.at[0].set(True)


def compare(kernel, q, k, v, mask):
    """Largest |output| and |gradient| differences of ``kernel`` against ``attention.attend``
    over real tokens (the loss weighs only them)."""
    weight = mask[:, :, None, None].astype(jnp.float32)
    ref = lambda q, k, v: attention.attend(  # noqa: E731
        q, k.swapaxes(2, 3), v, attention.causal_mask(mask, 0, q.shape[1]))

    def both(f):
        out = jax.jit(f)(q, k, v)
        grads = jax.jit(jax.grad(lambda *a: jnp.sum(jnp.sin(f(*a)) * weight),
                                 argnums=(0, 1, 2)))(q, k, v)
        return out, grads

    (o1, g1), (o2, g2) = both(kernel), both(ref)
    real = np.asarray(mask)
    out = float(np.abs(np.asarray(o1) - np.asarray(o2))[real].max())
    grad = max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(g1, g2))
    return out, grad


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="64,256,1000,2048")
    ap.add_argument("--heads", default="4:1,8:2,14:2,8:8", help="query:KV heads")
    ap.add_argument("--head-dim", type=int, default=64)
    args = ap.parse_args()
    bad = 0
    for t in map(int, args.lengths.split(",")):
        for h, kvh in (tuple(map(int, p.split(":"))) for p in args.heads.split(",")):
            q, k, v, mask = inputs(t + h, 2, t, h, kvh, args.head_dim)
            order = kernels.real_first(mask)
            cudnn = compare(lambda q, k, v: kernels.causal_attend(q, k, v, *order, cudnn=False),
                            q, k, v, mask)
            with pltpu.force_tpu_interpret_mode():
                tpu = compare(lambda q, k, v: kernels.tpu_flash_attend(q, k.swapaxes(2, 3), v,
                                                                       mask), q, k, v, mask)
            s = cache_slots(t, "gpu")
            cache = [jnp.pad(a, ((0, 0), (0, 0), (0, s - t), (0, 0))) for a in (k, v)]
            slot_mask = jnp.pad(mask, ((0, 0), (0, s - t)))
            got = decode_kernel.decode_attention(q[:, -1], *cache, slot_mask, t, interpret=True)
            want = attention.attend(q[:, -1:], k.swapaxes(2, 3), v, mask[:, None, :])[:, 0]
            decode = float(np.abs(np.asarray(got) - np.asarray(want)).max())
            s = cache_slots(t, "tpu")
            with pltpu.force_tpu_interpret_mode():
                got = tpu_decode_kernel.decode_attention(
                    q[:, -1], jnp.pad(k.swapaxes(2, 3), ((0, 0), (0, 0), (0, 0), (0, s - t))),
                    jnp.pad(v, ((0, 0), (0, 0), (0, s - t), (0, 0))),
                    jnp.pad(mask, ((0, 0), (0, s - t))), t)
            tpu_decode = float(np.abs(np.asarray(got) - np.asarray(want)).max())
            ok = (max(cudnn[0], tpu[0], decode, tpu_decode) <= OUT_TOL
                  and max(cudnn[1], tpu[1]) <= GRAD_TOL)
            bad += not ok
            print(f"T={t:5d} H={h:2d} KVH={kvh}: cudnn call out {cudnn[0]:.1e} grad "
                  f"{cudnn[1]:.1e}; tpu flash out {tpu[0]:.1e} grad {tpu[1]:.1e}; decode "
                  f"{decode:.1e}; tpu decode {tpu_decode:.1e}  {'ok' if ok else 'FAIL'}",
                  flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
