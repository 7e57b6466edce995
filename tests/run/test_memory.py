"""Memory planning: the RL iteration compiled ahead of time for a TPU topology (the TPU compiler,
no TPU attached) and for GPUs (fake CPU devices), per-device memory against the chip's HBM."""

from configs import selfplay, smoke
from o1jax import hardware
from o1jax.hardware import parse_hardware
from o1jax.run import memory


def _parts_add_up(p):
    assert p["bytes_per_device"] > 0 and p["hbm_bytes_per_device"] > 0
    assert p["parameters"] > 0 and p["optimizer"] > p["parameters"]   # Adam: two moments
    assert p["kv_cache"] > 0 and p["activations"] >= 0
    # arguments (params, optimizer) and temporaries (cache, activations) are within the total
    assert p["parameters"] + p["optimizer"] <= p["bytes_per_device"]


def test_plan_compiles_for_a_tpu_topology_on_this_cpu_machine():
    hw = parse_hardware("v5e-4")
    devices, compiler = memory.target_devices(hw)
    assert compiler == "tpu" and len(devices) == 4 and devices[0].platform == "tpu"
    p = memory.plan(smoke.get_config(), devices, compiler, hw)
    assert p["fits"] and p["mesh_shape"] == [4, 1, 1] and p["hbm_bytes_per_device"] == 16 * 2**30
    _parts_add_up(p)
    # the state is split 4 ways over fsdp: a quarter of the parameter bytes on each chip
    cfg = smoke.get_config()
    cfg.mesh_shape = (1, 4, 1)
    q = memory.plan(cfg, devices, compiler, hw)
    assert q["parameters"] < 0.3 * p["parameters"]


def test_plan_on_fake_cpu_devices_and_a_config_that_does_not_fit(monkeypatch):
    hw = parse_hardware("h100x8")
    devices, compiler = memory.target_devices(hw)
    assert "estimate" in compiler
    p = memory.plan(smoke.get_config(), devices, compiler, hw)
    assert p["fits"]
    _parts_add_up(p)
    monkeypatch.setitem(hardware.HBM_BYTES, "h100", p["bytes_per_device"] / 2)
    small = memory.plan(smoke.get_config(), devices, compiler, hw)
    assert not small["fits"]
    text = memory.format_plan(small)
    assert "DOES NOT FIT" in text and "rl.micro_batch" in text and "rl.vocab_chunk" in text


def test_plan_of_a_selfplay_config_plans_the_selfplay_step():
    """configs/selfplay.py plans its own step: the proposer's rollout and rows come on top of
    the solver's, so it needs more than the same config as plain GRPO (which is what it was
    planned as when lowering ignored selfplay.enabled)."""
    hw = parse_hardware("h100x8")
    devices, compiler = memory.target_devices(hw)
    p = memory.plan(selfplay.get_config(), devices, compiler, hw)
    assert p["fits"] and p["devices"] == 8
    _parts_add_up(p)
    cfg = selfplay.get_config()
    cfg.selfplay.enabled = False
    plain = memory.plan(cfg, devices, compiler, hw)
    assert plain["parameters"] == p["parameters"] and plain["optimizer"] == p["optimizer"]
    assert p["bytes_per_device"] > plain["bytes_per_device"]


def test_a_lora_plan_holds_no_reference_and_optimizes_only_adapters():
    """The same config with rl.lora_rank: the base is held once (it is the reference), and the
    optimizer's moments are the adapters' only."""
    hw = parse_hardware("h100x8")
    devices, compiler = memory.target_devices(hw)
    full = memory.plan(smoke.get_config(), devices, compiler, hw)
    cfg = smoke.get_config()
    cfg.rl.lora_rank = 4
    p = memory.plan(cfg, devices, compiler, hw)
    assert full["reference"] > 0 and p["reference"] == 0
    assert p["optimizer"] < 0.2 * full["optimizer"]
    assert p["parameters"] < full["parameters"]      # one base: no second critic backbone
    assert p["bytes_per_device"] < full["bytes_per_device"]


def test_a_compiler_that_refuses_for_memory_still_gets_the_state_breakdown(monkeypatch):
    """The TPU compiler refuses a program whose temporaries exceed the HBM (RESOURCE_EXHAUSTED):
    the plan then reports that refusal, does not fit, and still gives the state's parts."""
    import jax
    hw = parse_hardware("h100x8")
    devices, compiler = memory.target_devices(hw)

    def refuse(self):
        raise RuntimeError("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory "
                           "required for HLO temporaries (25.03G) exceeds available HBM")
    monkeypatch.setattr(jax.stages.Lowered, "compile", refuse)
    p = memory.plan(smoke.get_config(), devices, compiler, hw)
    assert not p["fits"] and "HLO temporaries (25.03G)" in p["compiler_error"]
    assert p["parameters"] > 0 and p["optimizer"] > p["parameters"] and p["activations"] is None
    assert p["bytes_per_device"] == p["parameters"] + p["reference"] + p["optimizer"]
    text = memory.format_plan(p)
    assert "the compiler refused" in text and "DOES NOT FIT" in text
