"""Test setup: 8 fake CPU devices (must be set before jax is imported), shared fixtures."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

from tests import hf_fixtures  # noqa: E402


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory):
    """A tiny random Llama (untied, rope_theta 5000) saved by transformers, with tokenizer."""
    return hf_fixtures.save_tiny_model(tmp_path_factory.mktemp("llama"), "llama")


@pytest.fixture(scope="session")
def qwen2_dir(tmp_path_factory):
    """A tiny random Qwen2 (tied, QKV bias) saved by transformers, with tokenizer."""
    return hf_fixtures.save_tiny_model(tmp_path_factory.mktemp("qwen2"), "qwen2")
