"""Running a model's attention kernels on the CPU in tests."""

import contextlib

from jax.experimental.pallas import tpu as pltpu


def interpreted(attention: str):
    """The context a model with ``attention`` runs in on the CPU: Pallas's TPU interpret mode for
    ``tpu`` (its kernels take no interpret flag), none for the others (``gpu``'s decode kernel
    interprets by itself on a CPU, and the TPU mode would take it over)."""
    return pltpu.force_tpu_interpret_mode() if attention == "tpu" else contextlib.nullcontext()
