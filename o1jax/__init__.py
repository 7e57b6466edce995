"""o1jax: train language models to reason with verifiable-reward RL, in JAX."""

__version__ = "0.1.0"
