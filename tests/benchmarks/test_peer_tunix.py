"""benchmarks/peer_tunix.py's o1jax side runs on today's code (its phase timing once crashed
unseen when ``iteration.rollout`` took a new argument): the fused step and each phase, at toy
batch and length, on the 2.94M model whose parameter count the Tunix side must match."""

from benchmarks import peer_tunix


def test_o1jax_side_times_the_step_and_its_phases(monkeypatch):
    monkeypatch.setattr(peer_tunix, "PROMPTS", 2)
    monkeypatch.setattr(peer_tunix, "G", 2)
    monkeypatch.setattr(peer_tunix, "NEW", 4)
    out = peer_tunix.run_ours(steps=1)
    assert round(out["params_m"], 2) == 2.94      # the work's model, as the docstring states
    assert out["step_s"] > 0 and out["rollout_s"] > 0 and out["update_s"] > 0
