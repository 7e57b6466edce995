"""Memory planning before renting hardware:

    python -m o1jax.plan --config configs/math_qwen7b_v5p64.py [--config.X=Y ...]

compiles the config's RL iteration ahead of time for the hardware it names (``hardware``:
a Cloud TPU type such as ``v5p-64``, or ``h100x8``) on its mesh, and prints what one device
holds (parameters, optimizer state, KV cache, activations) against the chip's HBM. TPU targets
are compiled by the TPU compiler itself for the real topology, on this machine, with no TPU
attached (``pip install "jax[tpu]==<jax version>"`` brings libtpu; MaxText's train_compile.py
does the same); GPU targets are compiled by the CPU compiler on as many fake devices, so their
figure is an estimate. The last line printed is a JSON object with ``bytes_per_device``,
``hbm_bytes_per_device`` and ``fits``; the exit status is 1 when the config does not fit.
"""

from __future__ import annotations

import json
import math
import os
import sys

from o1jax.hardware import GIB, Hardware, parse_hardware

def target_devices(hw: Hardware) -> tuple[list, str]:
    """(devices to compile for, which compiler): the TPU topology's devices (no TPU needed), or
    the first ``hw.devices`` CPU devices for a GPU target."""
    import jax
    if hw.platform == "tpu":
        from jax.experimental import topologies
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
    import jax
    total = 0.0
    for x, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)):
        total += math.prod(s.shard_shape(x.shape)) * x.dtype.itemsize
    return total


def plan(cfg, devices: list, compiler: str, hw: Hardware) -> dict:
    """Compiles ``cfg``'s RL iteration for ``devices`` and returns the per-device memory:
    compiler total (arguments + outputs + temporaries - donated), its parts (parameters,
    optimizer state, rollout KV cache, activations = the rest of the temporaries), the chip's
    HBM and whether it fits."""
    import jax
    from o1jax import sharding
    from o1jax.rl.stage import lower_rl_step

    step = lower_rl_step(cfg, devices)
    policy, rl, mesh = step.policy, step.rl, step.policy.mesh
    mem = step.lowered.compile().memory_analysis()
    total = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
             - mem.alias_size_in_bytes)
    part = lambda name: _bytes_per_device(getattr(step.state, name),  # noqa: E731
                                          getattr(step.state_shardings, name))
    params = part("policy") + part("critic") + part("ref")
    optimizer = part("policy_opt") + part("critic_opt")
    cache_shapes = jax.eval_shape(
        lambda: policy.init_cache(rl.rows, cfg.data.max_prompt_len + rl.max_new_tokens))
    kv = _bytes_per_device(cache_shapes, sharding.tree_shardings(mesh, policy.cache_axes(),
                                                                  cache_shapes))
    return {"config_hardware": hw.name, "compiler": compiler, "devices": len(devices),
            "mesh_shape": list(mesh.devices.shape), "bytes_per_device": float(total),
            "hbm_bytes_per_device": float(hw.hbm_bytes), "fits": bool(total <= hw.hbm_bytes),
            "parameters": params, "optimizer": optimizer, "kv_cache": kv,
            "activations": max(0.0, mem.temp_size_in_bytes - kv)}


def format_plan(p: dict) -> str:
    gib = lambda b: f"{b / GIB:8.2f} GiB"  # noqa: E731
    lines = [f"{p['config_hardware']}: {p['devices']} devices, mesh {tuple(p['mesh_shape'])}, "
             f"compiled by the {p['compiler']} compiler; per device:"]
    for key in ("parameters", "optimizer", "kv_cache", "activations"):
        lines.append(f"  {key.replace('_', ' '):<14}{gib(p[key])}")
    lines.append(f"  {'total':<14}{gib(p['bytes_per_device'])}  of {gib(p['hbm_bytes_per_device'])}"
                 f" HBM: {'fits' if p['fits'] else 'DOES NOT FIT'}")
    if not p["fits"]:
        lines.append("  to fit: set rl.micro_batch (rows per forward/backward pass) and "
                     "rl.vocab_chunk (e.g. 8192), shard more (mesh_shape fsdp), turn on "
                     "model.overrides.remat, or rent more chips")
    return "\n".join(lines)


def _prepare_jax_env(hw: Hardware) -> None:
    """Before jax starts (flag parsing and the config file never import it): CPU as the default
    backend (no TPU is attached), TPU metadata queries off, and for a GPU target as many fake
    CPU devices as the target has GPUs."""
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["TPU_SKIP_MDS_QUERY"] = "1"
    if hw.platform == "gpu":
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform"
                                   f"_device_count={hw.devices}").strip()


def main(argv) -> int:
    del argv
    cfg = _CONFIG.value
    try:
        hw = parse_hardware(cfg.get("hardware", "") or "")
    except ValueError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    _prepare_jax_env(hw)
    from o1jax.experiment import ConfigError
    try:
        devices, compiler = target_devices(hw)
        result = plan(cfg, devices, compiler, hw)
    except (ConfigError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_plan(result))
    print(json.dumps(result))
    return 0 if result["fits"] else 1


if __name__ == "__main__":
    from absl import app, flags
    from ml_collections import config_flags
    _CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file")
    flags.mark_flag_as_required("config")
    app.run(lambda argv: sys.exit(main(argv)))
