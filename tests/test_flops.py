"""FLOP counts against an independent count: every dot_general the traced forward pass runs
(walked in its jaxpr, scan bodies times their length), and the measured matmul peak."""

import math

import jax
import jax.numpy as jnp
import pytest

from o1jax import flops
from o1jax.models import Transformer, positions_from_mask, preset
from o1jax.rl.config import RLConfig


def _dot_flops(jaxpr) -> float:
    """2 x M x N x K (x batch) for every dot_general, recursing into sub-jaxprs."""
    total = 0.0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (lc, _), (lb, _) = eqn.params["dimension_numbers"]
            lhs, out = eqn.invars[0].aval.shape, eqn.outvars[0].aval.shape
            total += 2.0 * math.prod(out) * math.prod(lhs[d] for d in lc)
        for name, sub in eqn.params.items():
            inner = getattr(sub, "jaxpr", sub)
            if hasattr(inner, "eqns"):
                reps = eqn.params["length"] if eqn.primitive.name == "scan" else 1
                total += reps * _dot_flops(inner)
    return total


@pytest.mark.parametrize("overrides", [
    dict(vocab_size=1024, hidden_size=256, num_layers=2, num_heads=4, num_kv_heads=2,
         head_dim=64, mlp_dim=768),
    dict(vocab_size=512, num_layers=3, tie_embeddings=True)])
def test_forward_flops_per_token_match_the_traced_matmuls(overrides):
    model = Transformer(preset("tiny", max_seq_len=128, **overrides))
    b, t = 4, 64
    tokens = jnp.zeros((b, t), jnp.int32)
    mask = jnp.ones((b, t), bool)
    jaxpr = jax.make_jaxpr(lambda p: model.apply(p, tokens, positions_from_mask(mask), mask)[0])(
        model.param_shapes())
    traced = _dot_flops(jaxpr.jaxpr)
    # the forward attends over all t keys (masked), so the attention context is t
    assert traced == pytest.approx(model.cfg.flops_per_token(t) * b * t, rel=1e-6)


def test_rl_iteration_flops_is_rollout_plus_update():
    m = preset("tiny")
    for cfg, passes in ((RLConfig(algorithm="ppo", epochs=2, kl_coef=0.1), 1 + 1 + 2 * 3 * 2),
                        (RLConfig(algorithm="grpo", epochs=1, kl_coef=0.0), 0 + 0 + 1 * 3 * 1)):
        got = flops.rl_iteration_flops(m, cfg, prompt_tokens=100, generated_tokens=300, rows=8,
                                       length=80)
        roll = m.flops_per_token(40) * 400
        upd = passes * m.flops_per_token(40) * 8 * 80
        assert got == pytest.approx(roll + upd)
        # padding-free: the update counts the share of the [rows, length] cells it computed
        part = flops.rl_iteration_flops(m, cfg, prompt_tokens=100, generated_tokens=300, rows=8,
                                        length=80, computed=0.25)
        assert part == pytest.approx(roll + upd / 4)


def test_matmul_peak_is_the_fastest_of_its_repeats(monkeypatch):
    """A clock under which the three repeats take 3 s, 1 s and 2 s: the peak is 2 n^3 / 1 s
    (the first repeat would give a third of it, the mean half)."""
    ticks = iter([0.0, 3.0, 10.0, 11.0, 20.0, 22.0])
    monkeypatch.setattr(flops, "perf_counter", lambda: next(ticks))
    assert flops.matmul_peak_flops(64, repeats=3) == 2 * 64 ** 3 / 1.0
    assert next(ticks, None) is None          # every repeat was timed


def test_matmul_peak_is_a_plausible_rate():
    peak = flops.matmul_peak_flops(256, repeats=3)
    # 2 n^3 flops can not take less than a nanosecond nor (on any CPU) over a minute
    assert 2 * 256 ** 3 / 60 < peak < 2 * 256 ** 3 / 1e-9


def test_prefill_and_decode_flops_equal_a_count_token_by_token():
    cfg = preset("tiny", vocab_size=320)
    d, f, layers, h, kv, hd = 64, 192, 2, 4, 2, 16
    weights = layers * (d * hd * (2 * h + 2 * kv) + 3 * d * f) + d * 320

    def one_token(keys):   # 2 FLOPs per weight, QK^T and AV over ``keys`` keys in every head
        return 2 * weights + layers * h * 2 * (2 * hd * keys)

    p, g = 7, 5
    prefill = sum(one_token(i + 1) for i in range(p))
    # the prefill's last logits give token 0; tokens 0..3 are fed back to give tokens 1..4
    decode = sum(one_token(p + t + 1) for t in range(g - 1))
    assert flops.prefill_flops(cfg, p) == pytest.approx(prefill, rel=1e-12)
    assert flops.decode_flops(cfg, p, g) == pytest.approx(decode, rel=1e-12)
    assert flops.decode_flops(cfg, p, 1) == 0 and flops.decode_flops(cfg, p, 0) == 0


def test_mfu_peak_is_measured_in_the_compute_dtype(monkeypatch):
    import ml_collections
    from o1jax import flops
    from o1jax.models import preset
    seen = []
    monkeypatch.setattr(flops, "matmul_peak_flops",
                        lambda n, dtype: seen.append(jnp.dtype(dtype)) or 1.0)
    cfg = ml_collections.ConfigDict({"peak_flops_per_s": 0.0})
    flops.peak_flops_per_s(cfg, preset("tiny", dtype="bfloat16"))
    flops.peak_flops_per_s(cfg, preset("tiny"))
    assert seen == [jnp.dtype("bfloat16"), jnp.dtype("float32")]
    cfg.peak_flops_per_s = 5e14
    assert flops.peak_flops_per_s(cfg, preset("tiny", dtype="bfloat16")) == 5e14
