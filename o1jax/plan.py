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
import os
import sys

from o1jax.hardware import Hardware, parse_hardware


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
    # why: jax reads XLA_FLAGS and JAX_PLATFORMS once, when it loads; _prepare_jax_env sets them
    from o1jax.run import memory
    try:
        devices, compiler = memory.target_devices(hw)
        result = memory.plan(cfg, devices, compiler, hw)
    except (ValueError, RuntimeError) as e:   # a ConfigError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(memory.format_plan(result))
    print(json.dumps(result))
    return 0 if result["fits"] else 1


if __name__ == "__main__":
    from absl import app, flags
    from ml_collections import config_flags
    _CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file")
    flags.mark_flag_as_required("config")
    app.run(lambda argv: sys.exit(main(argv)))
