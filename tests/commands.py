"""The XLA flags every test program compiles with, and the environment of the commands tests
start (``python -m o1jax.train ...``). No jax import here: conftest sets the flags first."""

import os

# LLVM's optimisation level 1 instead of XLA:CPU's default 2: the tests' small programs compile
# in about three quarters of the time. Without fast-math (XLA's default) LLVM may not reorder
# floating-point arithmetic at any level, and every comparison in the suite, sharded rollouts
# token for token included, holds at both. (Level 0 is faster still but changes which sampled
# tokens a sharded rollout draws.) Users' runs keep XLA's default.
XLA_TEST_FLAGS = "--xla_backend_optimization_level=1"


def env(devices: int = 1, **extra: str) -> dict:
    """This process's environment with XLA_FLAGS = the test flags and ``devices`` fake CPU
    devices (1: one device, as a user runs it), and ``extra`` variables on top."""
    flags = XLA_TEST_FLAGS
    if devices > 1:
        flags += f" --xla_force_host_platform_device_count={devices}"
    return dict(os.environ, XLA_FLAGS=flags, **extra)
