"""The step training runs, lowered ahead of time: a self-play config lowers the self-play
iteration (referee and reward callbacks, self-play's metrics and results, its batch), with no
worker process started."""

import re

import pytest

from configs import selfplay
from o1jax.rewards import api
from o1jax.rewards.pool import CheckPool
from o1jax.run.rl import lower_rl_step
from o1jax.selfplay.config import SelfPlayConfig


def _no_pool(monkeypatch):
    """Starting or using a worker pool fails the test."""
    def fail(*a, **k):
        raise AssertionError("a worker pool was started or used while lowering")
    monkeypatch.setattr(CheckPool, "__init__", fail)
    monkeypatch.setattr(CheckPool, "map", fail)
    monkeypatch.setattr(api, "_pool", None)


def _callbacks(lowered) -> list[int]:
    """The number of results of each host callback in the lowered program, in order."""
    return [int(n) for n in re.findall(r"%\S+?(?::(\d+))? = stablehlo\.custom_call "
                                       r"@xla_ffi_python_cpu_callback", lowered.as_text())]


def test_a_selfplay_config_lowers_the_selfplay_step_and_starts_no_process(monkeypatch):
    _no_pool(monkeypatch)
    cfg = selfplay.get_config()
    sp = SelfPlayConfig.from_config(cfg.selfplay)
    low = lower_rl_step(cfg).lowered
    # the referee's callback (its 8 Verdicts fields) before the solver's reward callback
    # (rewards, metrics, correctness)
    assert _callbacks(low) == [8, 3]
    _, metrics, results = low.out_info
    assert {"proposer/accept_rate", "solver/accuracy_seed", "proposal_tokens"} <= set(metrics)
    assert {k: v.shape for k, v in results.items()} == {
        "status": (sp.proposals,), "ids": (sp.proposals,), "pass_rate": (sp.proposals,),
        "questions": (sp.proposals, sp.question_bytes)}
    batch = low.args_info[0][1]
    n_solve = cfg.rl.batch_prompts - sp.proposals
    assert batch["propose_tokens"].shape == (sp.proposals, sp.prompt_len)
    assert batch["solve_tokens"].shape == (n_solve, cfg.data.max_prompt_len)
    assert batch["spare_questions"].shape == (sp.proposals, sp.question_bytes)


def test_the_same_config_without_selfplay_lowers_plain_rl():
    cfg = selfplay.get_config()
    cfg.selfplay.enabled = False
    low = lower_rl_step(cfg).lowered
    assert _callbacks(low) == [2]           # the reward callback alone: rewards, metrics
    _, metrics, results = low.out_info
    assert results == {} and "proposer/accept_rate" not in metrics
    assert low.args_info[0][1]["tokens"].shape == (cfg.rl.batch_prompts,
                                                    cfg.data.max_prompt_len)


def test_the_pool_check_catches_a_started_pool(monkeypatch):
    """The guard of the first test is live: starting a pool under it fails."""
    _no_pool(monkeypatch)
    with pytest.raises(AssertionError, match="worker pool"):
        api.default_pool()
