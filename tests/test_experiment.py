"""Config checks before anything is built: each bad field named with what is allowed."""

import pytest

from configs import smoke
from o1jax.experiment import ConfigError, check_config
from tests import commands


@pytest.mark.parametrize("field, value, match", [
    ("mesh_shape", (3, 1, 1), "mesh_shape"),
    ("on_nonfinite", "ignore", "on_nonfinite='ignore': one of ('skip', 'stop')"),
    ("rl.algorithm", "bogus", "rl.algorithm='bogus'"),
    ("rl.top_p", 0.0, "rl.top_p=0.0"),
    ("rl.kl_estimator", "k9", "rl.kl_estimator='k9'"),
    ("rl.loss_agg", "sum", "rl.loss_agg='sum'"),
    ("rl.batch_prompts", 3, "rl.batch_prompts * rl.group_size = 6 is not divisible by the 8"),
    ("eval.maj_k", -1, "eval.maj_k=-1: must be >= 0"),
    ("eval.temperature", 0.0, "eval.temperature=0.0: must be > 0"),
    ("sft.batch_size", 0, "sft.batch_size=0: must be >= 1"),
    ("data.slip_rate", 2.0, "data.slip_rate"),
    ("data.task", "gsm9k", "data.task='gsm9k': one of"),
    ("data.template", "Q:\n", "data.template='Q:\\n' has no {question}"),
    ("data.task", "gsm8k", "data.task='gsm8k' needs data.manual_dir"),
    ("data.task", "jsonl", "needs data.train_path"),
    ("data.max_prompt_len", 60, "data.max_prompt_len + rl.max_new_tokens = 76 is above the "
                                "model's max_seq_len=64"),
    ("eval.max_new_tokens", 60, "data.max_prompt_len + eval.max_new_tokens = 72"),
    ("eval.curve_points", -1, "eval.curve_points=-1: must be >= 0"),
    ("sft.lr", -1.0, "sft.lr=-1.0: must be > 0"),
    ("sft.lr", 0.0, "sft.lr=0.0: must be > 0"),
    ("data.num_train", 0, "data.num_train=0: must be >= 1"),
    ("workdir_timeout", 0, "workdir_timeout=0: must be > 0"),
    ("model.preset", "gpt5", "model: unknown model preset 'gpt5'"),
    ("rl.old_logprobs", "trainer", "rl.old_logprobs='trainer': one of"),
    ("rl.tis_cap", 0.5, "rl.tis_cap=0.5: None or >= 1"),
    ("rl.micro_batch", 4, "rl.micro_batch=4: each micro-batch is split over the 8"),
    ("rl.micro_batch", -8, "rl.micro_batch=-8: must be >= 0"),
    ("rl.vocab_chunk", 321, "rl.vocab_chunk=321 is above the vocabulary (320)"),
    ("rl.length_buckets", 0, "rl.length_buckets=0: must be >= 1"),
    ("rl.length_buckets", 17, "rl.length_buckets=17: at most rl.max_new_tokens (16)"),
])
def test_bad_field_is_named(field, value, match):
    cfg = smoke.get_config()
    node = cfg
    *parents, name = field.split(".")
    for p in parents:
        node = node[p]
    node[name] = value
    with pytest.raises(ConfigError) as e:
        check_config(cfg, 8)
    assert match in str(e.value)


@pytest.mark.parametrize("block", ["data", "eval", "model", "sft", "checkpoint", "rl",
                                   "selfplay"])
def test_a_misspelt_key_in_a_config_file_is_refused(block):
    """A config file can add keys (its ConfigDict is unlocked): each block refuses one it does
    not know instead of dropping it."""
    cfg = smoke.get_config()
    cfg[block].unlock()
    cfg[block].lrr = 1.0
    with pytest.raises(ConfigError, match=rf"^{block}.lrr is not a"):
        check_config(cfg, 8)


def _numeric_fields(node, prefix=""):
    for key, value in node.items():
        if hasattr(value, "items") and key not in ("overrides", "rewards"):
            yield from _numeric_fields(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("field", [f for f, _ in _numeric_fields(smoke.get_config())])
def test_every_numeric_field_refuses_a_negative_value_by_name(field):
    """Defect 15: no count, rate, length or coefficient of any block may be negative (sft.lr=-1
    trained by gradient ascent); the error names the field."""
    cfg = smoke.get_config()
    *parents, name = field.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    node[name] = type(node[name])(-1)
    with pytest.raises(ConfigError) as e:
        check_config(cfg, 8)
    assert f"{field}=-1" in str(e.value), str(e.value)


def test_prompt_batch_must_split_over_the_data_devices():
    cfg = smoke.get_config()
    cfg.rl.batch_prompts, cfg.rl.group_size = 4, 4     # 16 rows divide, 4 prompts do not
    with pytest.raises(ConfigError, match="rl.batch_prompts=4: the prompt batch is split over "
                                          "the 8 data x fsdp devices"):
        check_config(cfg, 8)


def test_tis_needs_recomputed_old_logprobs():
    cfg = smoke.get_config()
    cfg.rl.tis_cap, cfg.rl.old_logprobs = 2.0, "rollout"
    with pytest.raises(ConfigError, match="tis_cap weighs tokens by pi_old / pi_rollout"):
        check_config(cfg, 8)


def test_good_config_returns_its_rl_settings():
    cfg = smoke.get_config()
    rl = check_config(cfg, 8)
    assert rl.rows == cfg.rl.batch_prompts * cfg.rl.group_size


@pytest.mark.parametrize("field", ["rl.batch_prompts", "sft.batch_size"])
def test_batches_must_divide_over_the_processes(field, monkeypatch):
    """Each process feeds an equal share: 3 hosts cannot split 8 prompts or 16 SFT rows."""
    import jax
    monkeypatch.setattr(jax, "process_count", lambda: 3)
    cfg = smoke.get_config()
    if field == "sft.batch_size":
        cfg.rl.batch_prompts = 6  # divides; the SFT batch of 16 does not
    with pytest.raises(ConfigError, match=f"{field}=.* is not divisible by the 3 processes"):
        check_config(cfg, 12)


def test_oversampled_prompts_must_split_over_devices_and_processes(monkeypatch):
    """8 prompts over 8 devices on 2 processes split; 12 (oversample 1.5) do not."""
    import jax
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    cfg = smoke.get_config()
    cfg.rl.batch_prompts, cfg.rl.algorithm = 8, "grpo"
    assert check_config(cfg, 8).sampled_prompts == 8
    cfg.rl.oversample = 1.5
    with pytest.raises(ConfigError, match="rl.oversample=1.5 samples 12 prompts, which the 8 "
                                          "data x fsdp devices and 2 processes cannot split"):
        check_config(cfg, 8)
    cfg.rl.oversample = 2.0
    assert check_config(cfg, 8).sampled_prompts == 16


def test_a_gs_data_dir_is_refused_before_anything_runs():
    cfg = smoke.get_config()
    cfg.data.data_dir = "gs://bkt/tfds"
    with pytest.raises(ConfigError, match="give a local directory"):
        check_config(cfg, 8)


@pytest.mark.parametrize("changes, match", [
    ({"selfplay.learnability": "bogus"}, "selfplay.learnability='bogus': one of"),
    ({"selfplay.gate_low": 0.9}, "selfplay.gate_low=0.9 is above gate_high=0.8"),
    ({"selfplay.buffer_fraction": 1.5}, "selfplay.buffer_fraction=1.5: must be in [0, 1]"),
    ({"selfplay.proposals": 0}, "selfplay.proposals=0: must be >= 1"),
    ({"rl.algorithm": "ppo"}, "selfplay needs a critic-free rl.algorithm"),
    ({"selfplay.proposals": 8}, "selfplay.proposals=8 leaves no seed or buffer problems"),
    ({"rl.minibatches": 3, "rl.batch_prompts": 6, "rl.group_size": 4},
     "does not divide the 26 rows of a self-play iteration"),
    ({"data.task": "jsonl"}, "self-play proposes problems in the forms of the synthetic tasks"),
    ({"rl.micro_batch": 2}, "rl.micro_batch=2 does not divide the 9 rows of a self-play"),
    ({"tools.enabled": True}, "self-play's proposer and solver do not call tools"),
    ({"selfplay.proposal_form": "expression"},
     "selfplay.proposal_form='expression': proposals state a solution in countdown_search's"),
])
def test_bad_selfplay_settings_are_named(changes, match):
    cfg = smoke.get_config()
    cfg.selfplay.enabled = True
    cfg.rl.algorithm = "grpo"
    cfg.selfplay.proposals = 2
    for field, value in changes.items():
        block, name = field.split(".")
        cfg[block][name] = value
    with pytest.raises(ConfigError) as e:
        check_config(cfg, 2)
    assert match in str(e.value)


def test_unknown_selfplay_key_is_an_error():
    cfg = smoke.get_config()
    cfg.selfplay.unlock()
    cfg.selfplay.gate = 0.5
    with pytest.raises(ConfigError, match="selfplay.gate is not a self-play setting"):
        check_config(cfg, 8)


def test_init_from_starts_from_another_runs_policy(tmp_path):
    """init_from=WORKDIR:sft reads that run's SFT policy into this run's sharded params."""
    import os
    import subprocess
    import sys

    import jax
    import numpy as np
    import orbax.checkpoint as ocp

    from o1jax import sharding
    from o1jax.policy import initial_params
    from o1jax.policy import from_config

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run([sys.executable, "-m", "o1jax.train", f"--config={smoke.__file__}",
                          f"--workdir={tmp_path / 'a'}", "--config.sft.num_steps=2",
                          "--config.rl.num_iterations=0", "--config.eval.num_examples=0",
                          "--config.progress_bar=False"], capture_output=True, text=True,
                         cwd=root, env=commands.env(), timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    cfg = smoke.get_config()
    cfg.init_from = f"{tmp_path / 'a'}:sft"
    policy = from_config(cfg, sharding.make_mesh((-1, 1, 1))).model
    got = initial_params(cfg, policy)
    # the whole saved SFT state, read by orbax itself
    directory = tmp_path / "a" / "checkpoints" / "sft"
    manager = ocp.CheckpointManager(directory)
    want = manager.restore(manager.latest_step())["state"]["params"]
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
    assert jax.tree.leaves(got)[0].sharding == jax.tree.leaves(policy.shardings())[0]
    cfg.init_from = f"{tmp_path / 'a'}:rl"
    with pytest.raises(ConfigError, match="init_from=.*no RL checkpoints"):
        initial_params(cfg, policy)


def test_routing_replay_needs_a_mixture_of_experts():
    cfg = smoke.get_config()
    cfg.rl.routing_replay = True
    with pytest.raises(ConfigError, match="rl.routing_replay replays a mixture of experts"):
        check_config(cfg, 8)
