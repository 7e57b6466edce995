"""RLConfig: every bad field fails naming the field and what is allowed; unknown keys are an
error; the sampling settings it builds carry every field."""

import pytest

from configs import base
from o1jax.rl.config import RLConfig


@pytest.mark.parametrize("field, value, match", [
    ("algorithm", "a2c", "rl.algorithm='a2c': one of"),
    ("loss_agg", "sum", "rl.loss_agg='sum': one of"),
    ("kl_estimator", "k4", r"rl.kl_estimator='k4': one of \('k1', 'k2', 'k3'\)"),
    ("top_p", 0.0, r"rl.top_p=0.0: must be in \(0, 1\]"),
    ("temperature", 0.0, "rl.temperature=0.0: must be > 0"),
    ("epochs", 0, "rl.epochs=0: must be >= 1"),
    ("gamma", 1.5, r"rl.gamma=1.5: must be in \[0, 1\]"),
    ("dual_clip", 0.5, "rl.dual_clip=0.5: None or > 1"),
    ("kl_target", -1.0, "rl.kl_target=-1.0"),
    ("kl_horizon", 0.0, "rl.kl_horizon=0.0: must be > 0"),
    ("minibatches", 3, r"rl.minibatches=3 does not divide the 16 rollout rows"),
    ("rewards", {"corectness": 1.0}, r"rl.rewards: unknown \['corectness'\]"),
    ("oversample", 0.5, r"rl.oversample=0.5: must be >= 1"),
    ("overlong_window", 99, r"rl.overlong_window=99: in 0..rl.max_new_tokens \(16\)"),
])
def test_bad_field_is_named(field, value, match):
    kw = dict(batch_prompts=8, group_size=2, **{field: value})
    with pytest.raises(ValueError, match=match):
        RLConfig(**kw)


def test_group_algorithms_need_groups():
    with pytest.raises(ValueError, match="rl.algorithm=grpo needs rl.group_size >= 2"):
        RLConfig(algorithm="grpo", group_size=1)
    RLConfig(algorithm="ppo", group_size=1)


def test_from_config_rejects_unknown_keys_and_reads_every_field():
    cfg = base.get_config()
    rl = RLConfig.from_config(cfg.rl)
    assert rl.kl_coef == cfg.rl.kl_coef and rl.reward_weights == dict(cfg.rl.rewards)
    with cfg.unlocked():
        cfg.rl.kl_cooef = 0.1
    with pytest.raises(ValueError, match="rl.kl_cooef is not an RL setting"):
        RLConfig.from_config(cfg.rl)


def test_sampling_carries_top_p_and_group_size():
    s = RLConfig(top_p=0.9, temperature=0.7, group_size=4, max_new_tokens=5).sampling(
        stop_ids=(2,), pad_id=1)
    assert (s.top_p, s.temperature, s.num_samples, s.max_new_tokens, s.stop_ids, s.pad_id) == \
        (0.9, 0.7, 4, 5, (2,), 1)


def test_reference_model_only_with_a_kl_term():
    assert not RLConfig(kl_coef=0.0).uses_reference
    assert RLConfig(kl_coef=0.01).uses_reference
    assert RLConfig(kl_coef=0.01, kl_target=0.1).uses_reference


def test_adaptive_kl_needs_a_starting_coefficient():
    with pytest.raises(ValueError, match="kl_target=0.1 needs rl.kl_coef > 0"):
        RLConfig(kl_coef=0.0, kl_target=0.1)


def test_dynamic_sampling_needs_a_group_baseline_and_samples_more_prompts():
    with pytest.raises(ValueError, match="use it with a critic-free algorithm, not ppo"):
        RLConfig(algorithm="ppo", oversample=2.0)
    assert RLConfig(algorithm="grpo", batch_prompts=8, oversample=1.5).sampled_prompts == 12
    assert RLConfig(algorithm="grpo", batch_prompts=3, oversample=1.1).sampled_prompts == 4
    assert RLConfig(algorithm="grpo", batch_prompts=8).sampled_prompts == 8
