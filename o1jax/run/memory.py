"""The memory plan of the step a config trains (its RL iteration, self-play's with
``selfplay.enabled``): compiled ahead of time for the hardware it names
(a TPU topology through the TPU compiler with no TPU attached, or GPUs as fake CPU devices) and
read back per device: parameters, optimizer state, KV cache, activations, against the chip's HBM.
``python -m o1jax.plan`` is its CLI."""

from __future__ import annotations

import math
import os

import jax
from jax.experimental import topologies

from o1jax import sharding
from o1jax.hardware import GIB, Hardware
from o1jax.run.rl import lower_rl_step


def target_devices(hw: Hardware) -> tuple[list, str]:
    """(devices to compile for, which compiler): the TPU topology's devices (no TPU needed), or
    the first ``hw.devices`` CPU devices for a GPU target."""
    if hw.platform == "tpu":
        # compile-only: no TPU is touched, so another process's libtpu lock need not stop us
        os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
        os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
        try:
            topo = topologies.get_topology_desc(hw.topology, platform="tpu")
        except Exception as e:  # noqa: BLE001 - libtpu missing or too old: say how to get it
            raise RuntimeError(f"cannot compile for {hw.name} ({hw.topology}): {e}\nInstall the "
                               f"TPU compiler: pip install \"jax[tpu]=={jax.__version__}\"") from e
        return list(topo.devices), "tpu"
    cpus = jax.devices("cpu")
    if len(cpus) < hw.devices:
        raise RuntimeError(f"{hw.name} needs {hw.devices} fake CPU devices, have {len(cpus)}: set "
                           f"XLA_FLAGS=--xla_force_host_platform_device_count={hw.devices} "
                           "before jax starts (the CLI does)")
    return cpus[:hw.devices], "cpu (estimate for gpu)"


def _bytes_per_device(tree, shardings) -> float:
    """Bytes one device holds of a tree of ShapeDtypeStructs placed by ``shardings``."""
    total = 0.0
    for x, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)):
        total += math.prod(s.shard_shape(x.shape)) * x.dtype.itemsize
    return total


def plan(cfg, devices: list, compiler: str, hw: Hardware) -> dict:
    """Compiles the step ``cfg`` trains (``lower_rl_step``: self-play's too) for ``devices``
    and returns the per-device memory:
    compiler total (arguments + outputs + temporaries - donated), its parts (parameters,
    reference policy (none with LoRA: the base is the reference), optimizer state, rollout KV
    cache, activations = the rest of the temporaries), the chip's HBM and whether it fits."""

    step = lower_rl_step(cfg, devices)
    policy, rl, mesh = step.policy, step.rl, step.policy.mesh
    part = lambda name: _bytes_per_device(getattr(step.state, name),  # noqa: E731
                                          getattr(step.state_shardings, name))
    params = part("policy") + part("critic") + part("base")   # LoRA: adapters + frozen base
    optimizer = part("policy_opt") + part("critic_opt")
    cache_shapes = jax.eval_shape(
        lambda: policy.init_cache(rl.rows, cfg.data.max_prompt_len + rl.max_new_tokens))
    kv = _bytes_per_device(cache_shapes, sharding.tree_shardings(mesh, policy.cache_axes(),
                                                                  cache_shapes))
    out = {"config_hardware": hw.name, "compiler": compiler, "devices": len(devices),
           "mesh_shape": list(mesh.devices.shape), "hbm_bytes_per_device": float(hw.hbm_bytes),
           "parameters": params, "reference": part("ref"), "optimizer": optimizer,
           "kv_cache": kv}
    try:
        mem = step.lowered.compile().memory_analysis()
    except Exception as e:  # noqa: BLE001 - only the compiler's out-of-memory refusal is ours
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        # the TPU compiler refuses a program whose temporaries exceed the HBM: the state's
        # parts, known from shapes alone, are a lower bound of what it needs
        return dict(out, fits=False, activations=None, compiler_error=str(e).strip()[:400],
                    bytes_per_device=float(params + part("ref") + optimizer))
    total = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
             - mem.alias_size_in_bytes)
    return dict(out, bytes_per_device=float(total), fits=bool(total <= hw.hbm_bytes),
                activations=max(0.0, mem.temp_size_in_bytes - kv))


def format_plan(p: dict) -> str:
    gib = lambda b: f"{b / GIB:8.2f} GiB"  # noqa: E731
    lines = [f"{p['config_hardware']}: {p['devices']} devices, mesh {tuple(p['mesh_shape'])}, "
             f"compiled by the {p['compiler']} compiler; per device:"]
    for key in ("parameters", "reference", "optimizer", "kv_cache", "activations"):
        if p[key] is not None:
            lines.append(f"  {key.replace('_', ' '):<14}{gib(p[key])}")
    if p.get("compiler_error"):
        lines.append(f"  the compiler refused the program: {p['compiler_error']}")
    total = "state (at least)" if p.get("compiler_error") else "total"
    lines.append(f"  {total:<14}{gib(p['bytes_per_device'])}  of {gib(p['hbm_bytes_per_device'])}"
                 f" HBM: {'fits' if p['fits'] else 'DOES NOT FIT'}")
    if not p["fits"]:
        lines.append("  to fit: set rl.micro_batch (rows per forward/backward pass) and "
                     "rl.vocab_chunk (e.g. 8192), shard more (mesh_shape fsdp), turn on "
                     "model.overrides.remat, or rent more chips")
    return "\n".join(lines)
