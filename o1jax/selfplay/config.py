"""Self-play settings in one frozen object, checked before anything is built.

``SelfPlayConfig.from_config(cfg.selfplay)`` takes the ``selfplay`` block of an experiment
config; an unknown key or a bad value is an error naming the field and what is allowed.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

LEARNABILITY = ("absolute_zero", "r_zero")
BUFFER_BALANCE = ("none", "answer")
PROPOSAL_FORMS = ("target", "listed", "expression")


@dataclasses.dataclass(frozen=True)
class SelfPlayConfig:
    enabled: bool = False
    # proposer: ``proposals`` new problems an iteration, each written after ``examples`` problems
    # drawn from the buffer (seed problems while the buffer is small)
    proposals: int = 8
    examples: int = 2
    prompt_len: int = 40            # proposer prompt, tokens
    proposal_tokens: int = 16       # longest proposal, tokens
    prompt_prefix: str = "New problem like "
    learnability: str = "absolute_zero"   # 1 - p for 0 < p < 1 (else 0) | r_zero: 1 - 2|p - 1/2|
    # the solver's batch: rl.batch_prompts problems, ``proposals`` of them this iteration's
    # proposals (a rejected one's place taken by a seed problem), of the rest
    # ``buffer_fraction`` from the buffer of accepted problems, the others seed problems
    buffer_fraction: float = 0.5
    buffer_size: int = 512
    # how buffer problems are drawn (for the solver's rows and the proposer's examples): none,
    # uniformly; answer, each with weight 1 / (problems in the buffer with its answer), so that
    # one answer the proposer favours does not become what the solver learns to say
    buffer_balance: str = "none"
    # whether this iteration's accepted proposals that pass the gate train the solver at once
    # (True), or only once drawn from the buffer (False: the solver's training rows are seed and
    # buffer problems, so ``buffer_balance`` decides their answers; the proposals' own solver
    # rows still measure their pass rate)
    train_fresh: bool = True
    gate_low: float = 0.2           # a proposed problem trains the solver only when its solve
    gate_high: float = 0.8          # rate this iteration is in [gate_low, gate_high] (SeRL)
    # the referee's bounds
    max_chars: int = 40
    max_digits: int = 4             # per number
    max_operators: int = 3
    max_answer: float = 1e6         # |answer| (numerator and denominator of a fraction)
    check_timeout: float = 1.0      # seconds per proposal, in the worker pool
    # SFT: this fraction of each batch's rows become proposer demonstrations (a prompt of
    # examples -> another problem of the seed distribution), so the policy knows both roles
    sft_fraction: float = 0.25
    # a seed task with levels (countdown_search, a picture task): this fraction of the
    # demonstrations write a problem one level above the training level, so the proposer knows
    # that form exists
    sft_hard_fraction: float = 0.25
    # countdown_search: target, the proposer writes its numbers and target; listed / expression,
    # it states a solution (an expression; the referee takes its value), so a proposal is
    # solvable by construction, as in Absolute Zero's deduction tasks: after the numbers it
    # lists, or alone with the numbers it leaves unused (o1jax/selfplay/search_problems.py);
    # SFT's proposer demonstrations are written that way
    proposal_form: str = "target"
    # the proposer's reward x (1 + level_bonus * levels above the training level)
    # (``iteration.level_weight``; 0: off; the arithmetic forms are all level 0)
    level_bonus: float = 0.0
    # the proposer's reward x this for a problem whose answer is 0 (a picture without what its
    # question names: the easiest proposal to make valid, and a solver trained on many of
    # them learns to answer 0); 1: off. At 0 such a proposal also trains the solver only once
    # drawn from the buffer, not in its own iteration (``train_fresh``)
    zero_answer_weight: float = 1.0

    def __post_init__(self):
        for msg in self._problems():
            raise ValueError(f"selfplay.{msg}")

    def _problems(self):
        def bad(name, allowed):
            return f"{name}={getattr(self, name)!r}: {allowed}"
        if self.learnability not in LEARNABILITY:
            yield bad("learnability", f"one of {LEARNABILITY}")
        if self.buffer_balance not in BUFFER_BALANCE:
            yield bad("buffer_balance", f"one of {BUFFER_BALANCE}")
        if self.proposal_form not in PROPOSAL_FORMS:
            yield bad("proposal_form", f"one of {PROPOSAL_FORMS}")
        for name in ("proposals", "examples", "prompt_len", "proposal_tokens", "buffer_size",
                     "max_chars", "max_digits", "max_operators"):
            if getattr(self, name) < 1:
                yield bad(name, "must be >= 1")
        for name in ("buffer_fraction", "gate_low", "gate_high", "sft_fraction",
                     "sft_hard_fraction", "zero_answer_weight"):
            if not 0 <= getattr(self, name) <= 1:
                yield bad(name, "must be in [0, 1]")
        if self.gate_low > self.gate_high:
            yield f"gate_low={self.gate_low} is above gate_high={self.gate_high}"
        for name in ("max_answer", "check_timeout"):
            if not getattr(self, name) > 0:
                yield bad(name, "must be > 0")
        if not self.level_bonus >= 0:
            yield bad("level_bonus", "must be >= 0")

    @property
    def question_bytes(self) -> int:
        """Room for an accepted problem's question as UTF-8 bytes in the compiled iteration
        (its canonical text: a proposal of ``max_chars`` characters with spacing and ``=?``
        added); a longer one is rejected as ``enormous``."""
        return 2 * self.max_chars + 16

    @classmethod
    def from_config(cls, block: Mapping[str, Any] | None) -> "SelfPlayConfig":
        """From an experiment config's ``selfplay`` block (None: self-play off)."""
        if block is None:
            return cls()
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(block) - fields)
        if unknown:
            raise ValueError(f"selfplay.{unknown[0]} is not a self-play setting; known: "
                             f"{sorted(fields)}")
        return cls(**dict(block))

    def check_with(self, rl) -> None:
        """ValueError where these settings do not fit the RL block ``rl`` (an RLConfig)."""
        if not self.enabled:
            return
        if rl.uses_critic:
            raise ValueError(f"selfplay needs a critic-free rl.algorithm (grpo, dr_grpo, rloo, "
                             f"reinforce_pp): the proposer's rows have no value targets; got "
                             f"{rl.algorithm!r}")
        if self.proposals >= rl.batch_prompts:
            raise ValueError(f"selfplay.proposals={self.proposals} leaves no seed or buffer "
                             f"problems in rl.batch_prompts={rl.batch_prompts} (the solver's "
                             f"problems, proposals included): make it smaller")
        rows = rl.rows + self.proposals
        if rows % rl.minibatches:
            raise ValueError(f"rl.minibatches={rl.minibatches} does not divide the {rows} rows "
                             f"of a self-play iteration (rl.batch_prompts * rl.group_size "
                             f"solver rows + selfplay.proposals proposer rows)")
        if rl.micro_batch and (rows // rl.minibatches) % rl.micro_batch:
            raise ValueError(f"rl.micro_batch={rl.micro_batch} does not divide the "
                             f"{rows // rl.minibatches} rows of a self-play minibatch (solver and "
                             f"proposer rows / rl.minibatches): choose a divisor of it, or 0")

