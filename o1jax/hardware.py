"""Hardware a config can name (``hardware``): Cloud TPU types and GPU nodes, their chips' HBM and
slice topologies. A JAX-free leaf: the config check and the memory plan both read it."""

from __future__ import annotations

import dataclasses
import re

GIB = 1024 ** 3
# Per-chip HBM: Cloud TPU's system-architecture pages (v5e 16 GiB, v5p 95 GiB, v6e 32 GiB);
# NVIDIA's data sheets (H100 SXM 80 GB, H200 141 GB, A100 80 GB).
HBM_BYTES = {"v5e": 16 * GIB, "v5p": 95 * GIB, "v6e": 32 * GIB,
             "h100": 80e9, "h200": 141e9, "a100": 80e9}
TPU_CHIPS_PER_UNIT = {"v5e": 1, "v5p": 2, "v6e": 1}   # v5p-N counts TensorCores, 2 a chip
TPU_NAMES = {"v5litepod": "v5e"}
# the usual slice shapes (chips -> topology), as Cloud TPU lists them
TPU_TOPOLOGIES = {
    2: {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16",
        256: "16x16"},
    3: {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8",
        256: "4x8x8", 512: "8x8x8"},
}


@dataclasses.dataclass(frozen=True)
class Hardware:
    """A compile target: ``platform`` tpu or gpu, ``chip`` (a HBM_BYTES key), ``devices``."""
    name: str
    platform: str
    chip: str
    devices: int

    @property
    def hbm_bytes(self) -> float:
        return HBM_BYTES[self.chip]

    @property
    def topology(self) -> str:
        """The TPU topology name ``jax.experimental.topologies`` takes, e.g. v5p:2x4x4."""
        dims = 3 if self.chip == "v5p" else 2
        shape = TPU_TOPOLOGIES[dims].get(self.devices)
        if shape is None:
            raise ValueError(f"hardware={self.name!r}: no standard {self.chip} slice of "
                             f"{self.devices} chips (known: {sorted(TPU_TOPOLOGIES[dims])})")
        return f"{self.chip}:{shape}"


def parse_hardware(name: str) -> Hardware:
    """``v5p-64`` (TPU type: chip generation - cores, or chips for v5e/v6e) or ``h100x8``."""
    m = re.fullmatch(r"(v5e|v5litepod|v5p|v6e)-(\d+)", name)
    if m:
        chip = TPU_NAMES.get(m.group(1), m.group(1))
        units = int(m.group(2))
        return Hardware(name, "tpu", chip, max(1, units // TPU_CHIPS_PER_UNIT[chip]))
    m = re.fullmatch(r"(h100|h200|a100)x(\d+)", name)
    if m:
        return Hardware(name, "gpu", m.group(1), int(m.group(2)))
    raise ValueError(f"hardware={name!r}: a Cloud TPU type (v5e-8, v5p-64, v6e-8, ...) or "
                     f"GPUs as CHIPxN (h100x8, h200x8, a100x8)")
