"""The XLA flags every test program compiles with, and the environment of the commands tests
start (``python -m o1jax.train ...``). No jax import here: conftest sets the flags first."""

import os

# LLVM's optimisation level 1 instead of XLA:CPU's default 2: the tests' small programs compile
# in about three quarters of the time. XLA:CPU compiles without fast-math by default, so LLVM
# may not reassociate floating-point arithmetic at either level, and every comparison in the
# suite, exact ones such as a sharded rollout's sampled tokens included, passed at level 1.
# (Level 0 is faster still, but there a sharded rollout drew other tokens than one device's.)
# Users' runs keep XLA's default.
XLA_TEST_FLAGS = "--xla_backend_optimization_level=1"


def env(devices: int = 1, **extra: str) -> dict:
    """This process's environment with XLA_FLAGS = the test flags and ``devices`` fake CPU
    devices (1: one device, as a user runs it), and ``extra`` variables on top."""
    flags = XLA_TEST_FLAGS
    if devices > 1:
        flags += f" --xla_force_host_platform_device_count={devices}"
    return dict(os.environ, XLA_FLAGS=flags, **extra)
