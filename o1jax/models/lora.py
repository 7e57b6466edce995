"""LoRA adapters (Hu et al. 2021) on the stacked layer projections, as pure functions of the base
parameters: the adapted weight is W + (alpha / rank) * A B, with A [in, r] and B [r, out] per
layer, B zero at the start so that a fresh adapter changes nothing.

Two ways to run the adapted model, the same function either way: ``attach(params, adapters, cfg)``
puts the adapters beside the frozen weights (``params["layers"]["lora"]``), where each projection
adds its low-rank path x A B (``o1jax/models/layers/low_rank.py``): training's forward, whose
backward forms only the adapters' gradients; ``merge(params, adapters, cfg)`` returns W + A B in
the base's layout, one copy per RL iteration, for decoding (the sampler's fused and unrolled
layouts run on it unchanged). ``jax.grad`` with respect to the adapters alone trains only them,
and the base with no adapters is the KL reference (no second copy of the model). Adapters keep
each projection's own axes (``wo``'s input is heads x head_dim), so they shard by the same
logical names as the weights they adapt, plus ``lora_rank``.

Why not qwix (Tunix's LoRA and quantisation library): it adapts a flax model by intercepting its
modules' ``dot_general`` calls; o1jax's models are functions over a parameter dict with no module
to intercept, and the merge below is the whole mechanism they need.
"""

from __future__ import annotations

import dataclasses
import string

import jax
import jax.numpy as jnp

from o1jax.models.transformer import Params

# how many of a projection's axes after "layers" are its input (the rest are its output)
INPUT_AXES = {"wq": 1, "wk": 1, "wv": 1, "wo": 2, "w_gate": 1, "w_up": 1, "w_down": 1}
ATTENTION = ("wq", "wk", "wv", "wo")
MLP = ("w_gate", "w_up", "w_down")


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    """rank r, alpha (the update is scaled by alpha / r, PEFT's convention) and the adapted
    projections by name (``ATTENTION``, ``MLP`` or any of ``INPUT_AXES``)."""
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ATTENTION + MLP

    def __post_init__(self):
        unknown = set(self.targets) - set(INPUT_AXES)
        if unknown or not self.targets:
            raise ValueError(f"LoRA targets must be among {tuple(INPUT_AXES)}, got "
                             f"{self.targets}")
        if self.rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {self.rank}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def _split(name: str, shape_or_axes: tuple) -> tuple[tuple, tuple, tuple]:
    """(layers, input, output) parts of a stacked projection's shape or logical axes."""
    n = INPUT_AXES[name]
    return shape_or_axes[:1], shape_or_axes[1:1 + n], shape_or_axes[1 + n:]


def adapter_axes(param_axes: Params, cfg: LoraConfig) -> Params:
    """Logical axes of the adapters: {"layers": {name: {"a": (layers, *in, lora_rank),
    "b": (layers, lora_rank, *out)}}} for a model's ``param_axes()``."""
    out = {}
    for name in cfg.targets:
        layers, inp, outp = _split(name, param_axes["layers"][name])
        out[name] = {"a": layers + inp + ("lora_rank",), "b": layers + ("lora_rank",) + outp}
    return {"layers": out}


def init(key: jax.Array, params: Params, cfg: LoraConfig) -> Params:
    """Fresh adapters for ``params`` (or their ``ShapeDtypeStruct``s): A uniform in
    +-1/sqrt(fan_in) (PEFT's default), B zero, in the base's dtype; one key per projection by
    ``fold_in``, so that adding a target leaves the others' values unchanged."""
    out = {}
    for name in cfg.targets:
        w = params["layers"][name]
        layers, inp, outp = _split(name, tuple(w.shape))
        fan_in = 1
        for d in inp:
            fan_in *= d
        bound = fan_in ** -0.5
        k = jax.random.fold_in(key, list(INPUT_AXES).index(name))
        out[name] = {"a": jax.random.uniform(k, layers + inp + (cfg.rank,), w.dtype, -bound,
                                             bound),
                     "b": jnp.zeros(layers + (cfg.rank,) + outp, w.dtype)}
    return {"layers": out}


def delta(name: str, a: jax.Array, b: jax.Array) -> jax.Array:
    """A B for a stacked projection: a [L, *in, r], b [L, r, *out] -> [L, *in, *out]."""
    n_in, n_out = a.ndim - 2, b.ndim - 2
    letters = iter(string.ascii_lowercase[1:])
    ins = "".join(next(letters) for _ in range(n_in))
    outs = "".join(next(letters) for _ in range(n_out))
    return jnp.einsum(f"l{ins}z,lz{outs}->l{ins}{outs}", a, b)


def attach(params: Params, adapters: Params, cfg: LoraConfig) -> Params:
    """The base params with the adapters beside its projections, ``layers["lora"]`` = {name:
    {"a": A, "b": scale * B}}: the model adds x A B to each adapted projection."""
    scaled = {name: {"a": ab["a"], "b": cfg.scale * ab["b"]}
              for name, ab in adapters["layers"].items()}
    return dict(params, layers=dict(params["layers"], lora=scaled))


def merge(params: Params, adapters: Params, cfg: LoraConfig) -> Params:
    """The adapted parameters: each target W + scale * A B, in W's dtype (the rest shared)."""
    layers = dict(params["layers"])
    for name, ab in adapters["layers"].items():
        w = layers[name]
        layers[name] = (w + cfg.scale * delta(name, ab["a"], ab["b"])).astype(w.dtype)
    return dict(params, layers=layers)
