"""Rewards from programs: answer verification (safe, time-limited) and reward functions.

This package's top level imports no JAX, so that verifier worker processes start fast.
"""

from o1jax.rewards.api import default_pool, verify, verify_batch

__all__ = ["default_pool", "verify", "verify_batch"]
