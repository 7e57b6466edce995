"""Forward+backward throughput of the decoder vs this machine's measured matmul peak.

    python benchmarks/model.py [--quick]

Trains nothing: times one jitted value_and_grad of the next-token loss per step. FLOPs counted
as 3 x forward (forward + backward) from ``ModelConfig.flops_per_token`` (matmuls and attention)
and, for the visual demo's model (configs/visual_grpo.py: the encoder runs on every row's
image), ``VisionConfig.flops_per_image``. The last line printed is one JSON object.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks.common import median_seconds, start  # noqa: E402
from o1jax.models import Transformer, positions_from_mask, preset  # noqa: E402


def next_token_loss(model, params, tokens, mask, images=None):
    embeds = None if images is None else model.encode_images(params, images)
    logits, _ = model.apply(params, tokens, positions_from_mask(mask), mask, image_embeds=embeds)
    logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
    nll = -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
    m = mask[:, 1:]
    return jnp.sum(nll * m) / jnp.sum(m)


def visual_model() -> Transformer:
    """The visual demo's policy (configs/visual_grpo.py)."""
    from configs import visual_grpo
    from o1jax.experiment import model_shapes
    return Transformer(model_shapes(visual_grpo.get_config()))


def bench(model: Transformer, batch: int, length: int, repeats: int) -> dict:
    cfg = model.cfg
    params = model.init(jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (batch, length), 0, cfg.vocab_size)
    mask = jnp.ones((batch, length), jnp.float32)
    images = None
    if cfg.vision:          # <s>, the image's placeholders, then text
        tokens = tokens.at[:, 1:1 + cfg.image_tokens].set(cfg.image_token_id)
        images = jax.random.randint(jax.random.key(2), (batch,) + (cfg.vision.image_size,) * 2
                                    + (3,), 0, 256).astype(jnp.uint8)
    step = jax.jit(jax.value_and_grad(lambda p: next_token_loss(model, p, tokens, mask, images)))
    seconds = median_seconds(lambda: step(params), repeats=repeats)
    n_tokens = batch * length
    flops = 3 * cfg.flops_per_token(context=length / 2) * n_tokens
    if cfg.vision:
        flops += 3 * cfg.vision.flops_per_image(cfg.hidden_size) * batch
    return {"params": cfg.num_params(), "batch": batch, "length": length,
            "step_s": seconds, "tokens_per_s": n_tokens / seconds, "flops_per_s": flops / seconds}


def main():
    quick, peak = start()
    repeats = 2 if quick else 5
    out = {"devices": str(jax.devices()[0].platform), "peak_flops_per_s": peak}
    for label, name, batch, length in [("tiny", "tiny", 32, 128), ("medium", "small25m", 8, 256),
                                       ("visual", "visual_grpo", 32, 144)]:
        model = visual_model() if name == "visual_grpo" else Transformer(preset(name))
        r = bench(model, batch, length, repeats)
        frac = r["flops_per_s"] / peak
        print(f"{label:6s} ({name}, {r['params'] / 1e6:.1f}M params, batch {batch} x {length}): "
              f"fwd+bwd {r['tokens_per_s']:,.0f} tok/s, {r['flops_per_s'] / 1e9:.1f} GFLOP/s "
              f"= {frac:.2f} of peak")
        out[f"{label}_tokens_per_s"] = r["tokens_per_s"]
        out[f"{label}_peak_fraction"] = frac
    print(json.dumps(out))


if __name__ == "__main__":
    main()
