"""The one place that knows mesh axes.

Everything else in o1jax speaks *logical* axis names ("batch", "embed", "heads", ...). This module
maps them to the physical mesh axes ``data``, ``fsdp`` and ``tensor`` (MaxText's convention):

* ``data``   pure data parallelism: batch split, parameters replicated.
* ``fsdp``   batch split *and* parameters split along their embedding axis (ZeRO-3 style); XLA
             all-gathers a layer's weights just before use.
* ``tensor`` Megatron-style tensor parallelism: attention heads, MLP hidden units and the vocabulary
             split, activations along those axes too.

A logical axis whose size a mesh axis does not divide is left unsplit on that mesh axis (for example
2 KV heads on a 4-way tensor axis are replicated), so one model runs on any mesh.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from typing import Any, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis -> mesh axes. Parameters and activations use separate names so that, e.g., the
# parameter "embed" axis is FSDP-split while the activation embedding axis is not.
LOGICAL_RULES: dict[str, tuple[str, ...]] = {
    # parameters
    "vocab": ("tensor",),
    "embed": ("fsdp",),
    "heads": ("tensor",),
    "kv_heads": ("tensor",),
    "mlp": ("tensor",),
    "head_dim": (),
    "layers": (),
    "norm": (),
    "lora_rank": (),      # a LoRA adapter's rank (o1jax/models/lora.py)
    "experts": ("fsdp",),  # a mixture of experts' expert axis (o1jax/models/layers/moe.py):
                           # expert parallelism over the fsdp devices (the weights' "embed" axis
                           # then stays whole: a mesh axis splits one axis of an array)
    "patch": (),          # the vision encoder's flattened patch pixels / merge windows
    # activations
    "act_batch": ("data", "fsdp"),
    "act_length": (),
    "act_embed": (),
    "act_heads": ("tensor",),
    "act_kv_heads": ("tensor",),
    "act_mlp": ("tensor",),
    "act_vocab": ("tensor",),
    "cache_length": (),
    # rows of a host computation inside a program (the reward callback): split over every
    # device, so each row is handled once and by the process that holds it
    "host_rows": ("data", "fsdp", "tensor"),
}


class DistributedError(RuntimeError):
    """Multi-host start failed: a coordinator that does not answer, or inconsistent flags."""


def initialize_distributed(enabled: bool = False, coordinator_address: str | None = None,
                           num_processes: int | None = None, process_id: int | None = None,
                           timeout_s: int = 300) -> None:
    """Starts multi-host JAX (one process per host) when ``enabled`` or any argument is given.

    Without arguments ``jax.distributed.initialize()`` finds the coordinator itself on TPU VMs
    and SLURM clusters. CPU processes use gloo collectives. A process other than the
    coordinator first waits up to ``timeout_s`` for the coordinator's port to accept a
    connection and raises DistributedError naming it if it never does (JAX itself would abort
    the process).
    """
    given = {k: v for k, v in dict(coordinator_address=coordinator_address,
                                   num_processes=num_processes, process_id=process_id).items()
             if v is not None}
    if not (enabled or given) or jax.distributed.is_initialized():
        return
    if given and len(given) < 3:
        raise DistributedError(f"got {sorted(given)}: give all of coordinator_address, "
                               "num_processes and process_id, or none (to read them from the "
                               "TPU or SLURM environment)")
    if given and not 0 <= process_id < num_processes:
        raise DistributedError(f"process_id={process_id} must be in [0, {num_processes})")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if given and process_id != 0:
        _wait_for_coordinator(coordinator_address, timeout_s)
    logging.getLogger(__name__).info("joining %s as process %s of %s", coordinator_address
                                     or "the environment's coordinator", process_id,
                                     num_processes)
    jax.distributed.initialize(**given, initialization_timeout=timeout_s)


# The multi-host flags of every CLI: (name, type, default, help). argparse CLIs spell them
# --coordinator-address; train's absl flags --coordinator_address.
DISTRIBUTED_FLAGS = (
    ("coordinator_address", str, None, "multi-host: HOST:PORT of process 0 (default: from the "
     "TPU or SLURM environment)"),
    ("num_processes", int, None, "multi-host: number of processes"),
    ("process_id", int, None, "multi-host: this process's index"),
    ("initialization_timeout", int, 300, "multi-host: seconds to wait for the coordinator and "
     "the other processes"),
)


def add_distributed_flags(parser) -> None:
    """DISTRIBUTED_FLAGS on an argparse parser, and --distributed (everything from the
    environment)."""
    for name, kind, default, help_ in DISTRIBUTED_FLAGS:
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=default,
                            help=help_)
    parser.add_argument("--distributed", action="store_true",
                        help="multi-host with everything read from the environment")


def define_distributed_absl_flags(flags) -> dict:
    """DISTRIBUTED_FLAGS as absl flags (``flags``: ``absl.flags``); {name: FlagHolder}. The config
    key ``distributed`` plays --distributed's part."""
    define = {str: flags.DEFINE_string, int: flags.DEFINE_integer}
    return {name: define[kind](name, default, help_)
            for name, kind, default, help_ in DISTRIBUTED_FLAGS}


def initialize_from_flags(args, distributed: bool | None = None) -> None:
    """``initialize_distributed`` from parsed flags: an argparse namespace, or the dict of
    ``define_distributed_absl_flags`` (with ``distributed`` from the config)."""
    if isinstance(args, dict):
        values = {name: holder.value for name, holder in args.items()}
    else:
        values = {name: getattr(args, name) for name, *_ in DISTRIBUTED_FLAGS}
        distributed = args.distributed
    initialize_distributed(distributed, values["coordinator_address"], values["num_processes"],
                           values["process_id"], values["initialization_timeout"])


def _wait_for_coordinator(address: str, timeout_s: float) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise DistributedError(f"coordinator_address={address!r}: expected HOST:PORT")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise DistributedError(
                    f"coordinator {address} did not answer within {timeout_s} s ({e}): start "
                    "process 0 (it serves the coordinator) and check the address, port and "
                    "firewall") from None
            time.sleep(0.5)


def make_mesh(mesh_shape: Sequence[int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds a (data, fsdp, tensor) mesh; one entry of ``mesh_shape`` may be -1 (fill the rest).

    Raises ValueError naming the shape and the device count when they do not fit.
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = resolve_mesh_shape(mesh_shape, len(devices))
    device_array = np.asarray(devices).reshape(shape)
    return Mesh(device_array, MESH_AXES)


def resolve_mesh_shape(mesh_shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
    """Replaces a -1 in ``mesh_shape`` and checks the product equals ``num_devices``."""
    shape = [int(s) for s in mesh_shape]
    if len(shape) != len(MESH_AXES):
        raise ValueError(f"mesh_shape {tuple(mesh_shape)} must have {len(MESH_AXES)} entries "
                         f"for the axes {MESH_AXES}")
    if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
        raise ValueError(f"mesh_shape {tuple(mesh_shape)}: entries must be positive, with at most "
                         "one -1")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if num_devices % known:
            raise ValueError(f"mesh_shape {tuple(mesh_shape)} does not divide the {num_devices} "
                             "available devices")
        shape[shape.index(-1)] = num_devices // known
    if math.prod(shape) != num_devices:
        raise ValueError(f"mesh_shape {tuple(mesh_shape)} needs {math.prod(shape)} devices but "
                         f"{num_devices} are available")
    return tuple(shape)


def logical_to_spec(logical_axes: Sequence[str | None], shape: Sequence[int] | None = None,
                    mesh: Mesh | None = None) -> PartitionSpec:
    """PartitionSpec for an array whose dimensions carry ``logical_axes``.

    With ``shape`` and ``mesh`` given, mesh axes that do not divide a dimension are dropped, and a
    mesh axis is used at most once per array (first dimension wins).
    """
    used: set[str] = set()
    spec = []
    for i, name in enumerate(logical_axes):
        if name is None:
            spec.append(None)
            continue
        if name not in LOGICAL_RULES:
            raise KeyError(f"no sharding rule for logical axis {name!r}")
        axes = []
        size = 1
        for ax in LOGICAL_RULES[name]:
            if ax in used:
                continue
            if mesh is not None:
                n = mesh.shape[ax]
                if n == 1:
                    continue
                if shape is not None and shape[i] % (size * n):
                    continue
                size *= n
            axes.append(ax)
        used.update(axes)
        spec.append(tuple(axes) if len(axes) > 1 else (axes[0] if axes else None))
    return PartitionSpec(*spec)


def named_sharding(mesh: Mesh, logical_axes: Sequence[str | None],
                   shape: Sequence[int] | None = None) -> NamedSharding:
    return NamedSharding(mesh, logical_to_spec(logical_axes, shape, mesh))


def is_axes(t: Any) -> bool:
    """A leaf of a logical-axes tree: a plain tuple of axis names (or None)."""
    return type(t) is tuple and all(isinstance(a, (str, type(None))) for a in t)


def tree_shardings(mesh: Mesh, axes_tree: Any, shapes_tree: Any) -> Any:
    """NamedShardings for a pytree, from a matching tree of logical-axis tuples and of shapes
    (arrays or ``jax.ShapeDtypeStruct``s)."""
    return jax.tree.map(lambda axes, x: named_sharding(mesh, axes, x.shape), axes_tree,
                        shapes_tree, is_leaf=is_axes)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def constrain(x: jax.Array, mesh: Mesh | None, logical_axes: Sequence[str | None]) -> jax.Array:
    """Activation sharding constraint inside a jitted function; a no-op without a mesh."""
    if mesh is None or mesh.size == 1:
        return x
    return jax.lax.with_sharding_constraint(x, named_sharding(mesh, logical_axes, x.shape))


def splits_heads(mesh: Mesh | None) -> bool:
    """Whether attention heads are split across devices on this mesh."""
    return mesh is not None and any(mesh.shape[ax] > 1 for ax in LOGICAL_RULES["heads"])


def batch_sharding(mesh: Mesh, ndim: int, shape: Sequence[int] | None = None) -> NamedSharding:
    """Sharding of a [batch, ...] input array: batch over (data, fsdp), the rest replicated."""
    return named_sharding(mesh, ("act_batch",) + (None,) * (ndim - 1), shape)


def any_process(flag: bool) -> bool:
    """Whether ``flag`` holds on any process (a collective: every process must call it)."""
    if jax.process_count() == 1:
        return flag
    return bool(np.max(multihost_utils.process_allgather(np.int32(flag))))


def process_0_value(flag: bool) -> bool:
    """Process 0's ``flag`` on every process (a collective), so all take the same branch."""
    if jax.process_count() == 1:
        return flag
    return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))


def global_batch_from_host(mesh: Mesh, batch: Any) -> Any:
    """Global arrays sharded over the batch axes from host arrays every process holds in full:
    each process puts only its own devices' part (a batch the data axes do not divide is
    replicated, as ``batch_sharding`` says)."""
    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, batch_sharding(mesh, x.ndim, x.shape),
                                            lambda index: x[index])
    return jax.tree.map(put, batch)


def host_local_to_global(mesh: Mesh, local_batch: Any) -> Any:
    """Assembles each process's share of a batch into global arrays sharded over the batch axes.

    ``local_batch`` holds this process's rows only (global_batch / process_count of them); on one
    host this is a plain sharded ``device_put``.
    """
    def put(x):
        x = np.asarray(x)
        global_shape = (x.shape[0] * jax.process_count(),) + x.shape[1:]
        sharding = batch_sharding(mesh, x.ndim, global_shape)
        if jax.process_count() == 1:
            return jax.device_put(x, sharding)
        return jax.make_array_from_process_local_data(sharding, x, global_shape)
    return jax.tree.map(put, local_batch)
