"""Hardware names: Cloud TPU types and GPU nodes, their chips, device counts and topologies."""

import pytest

from o1jax.hardware import parse_hardware


@pytest.mark.parametrize("name, platform, chip, devices, topology", [
    ("v5p-64", "tpu", "v5p", 32, "v5p:2x4x4"), ("v5litepod-8", "tpu", "v5e", 8, "v5e:2x4"),
    ("v6e-4", "tpu", "v6e", 4, "v6e:2x2"), ("h100x8", "gpu", "h100", 8, None)])
def test_hardware_names(name, platform, chip, devices, topology):
    hw = parse_hardware(name)
    assert (hw.platform, hw.chip, hw.devices) == (platform, chip, devices)
    if topology:
        assert hw.topology == topology


def test_unknown_hardware_is_named():
    with pytest.raises(ValueError, match="hardware='tpu9-8': a Cloud TPU type"):
        parse_hardware("tpu9-8")
