"""Every RL setting in one frozen object, checked in one place.

``RLConfig.from_config(cfg.rl)`` takes the ``rl`` block of an experiment config: every key must
be a field here (a misspelt key is an error, never silently dropped), and every value is checked
before anything is built, with the field and its allowed values in the message.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax.numpy as jnp

from o1jax.models import lora as lora_lib
from o1jax.rewards.functions import REWARDS
from o1jax.rl import losses
from o1jax.rollout.decoding import SamplingConfig

ALGORITHMS = ("ppo", "grpo", "dr_grpo", "rloo", "reinforce_pp")
KL_ESTIMATORS = ("k1", "k2", "k3")
OLD_LOGPROBS = ("auto", "rollout", "recompute")
IMPORTANCE_LEVELS = ("token", "sequence")


@dataclasses.dataclass(frozen=True)
class RLConfig:
    # what one iteration trains on
    algorithm: str = "ppo"          # ppo (critic + GAE) or a critic-free group baseline
    num_iterations: int = 4
    batch_prompts: int = 8          # prompts per iteration (global, over all processes)
    group_size: int = 2             # G samples per prompt
    rewards: tuple[tuple[str, float], ...] = (("correctness", 1.0), ("format", 0.1))
    # DAPO's batch shaping (o1jax/rl/dapo.py)
    oversample: float = 1.0         # dynamic sampling: roll out ceil(oversample * batch_prompts)
                                    # prompts, train on batch_prompts groups, informative first
    overlong_window: int = 0        # over-long shaping: a penalty falling to -overlong_coef
    overlong_coef: float = 1.0      # over the budget's last overlong_window tokens (0: off)
    mask_truncated: bool = False    # truncated responses leave the loss
    # rollout
    max_new_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    # update: E epochs x M minibatches
    epochs: int = 1
    minibatches: int = 1
    policy_lr: float = 1e-4
    value_lr: float = 5e-4
    max_grad_norm: float = 1.0
    clip_low: float = 0.2
    clip_high: float = 0.2          # > clip_low: DAPO's clip-higher
    dual_clip: float | None = None  # e.g. 3.0
    importance_level: str = "token"  # token: PPO's ratio per token; sequence: GSPO's per row
    value_clip: float | None = 0.2
    gamma: float = 1.0
    lam: float = 1.0
    whiten_advantages: bool = True  # PPO only; group methods normalise themselves
    kl_coef: float = 0.0            # 0 and no kl_target: no reference model at all
    kl_estimator: str = "k3"
    kl_in_reward: bool = False      # k1 penalty in the reward instead of a loss term
    kl_target: float | None = None  # adaptive controller when set
    kl_horizon: float = 10000.0
    entropy_coef: float = 0.0
    critic_warmup: int = 0          # PPO: iterations that train only the critic (veRL's option)
    loss_agg: str = "token_mean"
    # numerics and memory
    old_logprobs: str = "auto"      # rollout: the sampler's; recompute: a training forward pass
                                    # (veRL's default); auto: recompute unless compute is f32
    tis_cap: float | None = None    # truncated importance sampling: token weight
                                    # min(pi_old / pi_rollout, cap), needs recomputed old log-probs
    micro_batch: int = 0            # rows per forward/backward pass in scoring and update
                                    # (gradients accumulated); 0: the whole (mini)batch at once
    vocab_chunk: int = 0            # log-probs over this many vocabulary entries at a time; 0: all
    length_buckets: int = 1         # padding-free training: scoring and update micro-batches
                                    # (rows grouped by length) each run over the shortest of
                                    # this many response lengths that holds their rows
                                    # (1: always max_new_tokens)
    routing_replay: bool = False    # a mixture of experts: the trainer's forward passes route
                                    # each token to the experts the sampler chose (R3)
    router_aux_coef: float = 0.0    # a mixture of experts' load-balancing loss in the policy
                                    # loss (Qwen3's router_aux_loss_coef 0.001); always logged
    # LoRA (o1jax/models/lora.py): train rank-r adapters of the policy (and the critic) on the
    # frozen base, which is also the KL reference; 0: train every weight
    lora_rank: int = 0
    lora_alpha: float = 16.0        # the update is scaled by lora_alpha / lora_rank
    lora_targets: tuple[str, ...] = lora_lib.ATTENTION + lora_lib.MLP

    def __post_init__(self):
        object.__setattr__(self, "rewards", tuple((str(k), float(w)) for k, w in
                                                  dict(self.rewards).items()))
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        for msg in self._problems():
            raise ValueError(f"rl.{msg}")

    def _problems(self):
        """Messages 'field=value: what is allowed', the first one raised."""
        def bad(name, allowed):
            return f"{name}={getattr(self, name)!r}: {allowed}"
        for name, options in (("algorithm", ALGORITHMS), ("loss_agg", losses.AGGREGATIONS),
                              ("kl_estimator", KL_ESTIMATORS), ("old_logprobs", OLD_LOGPROBS),
                              ("importance_level", IMPORTANCE_LEVELS)):
            if getattr(self, name) not in options:
                yield bad(name, f"one of {options}")
        if self.lora_rank > 0:
            try:
                self.lora
            except ValueError as e:
                yield f"lora_targets={self.lora_targets!r}: {e}"
        for name in ("num_iterations", "critic_warmup", "micro_batch", "vocab_chunk",
                     "lora_rank"):
            if getattr(self, name) < 0:
                yield bad(name, "must be >= 0")
        for name in ("batch_prompts", "group_size", "max_new_tokens", "epochs", "minibatches",
                     "length_buckets"):
            if getattr(self, name) < 1:
                yield bad(name, "must be >= 1")
        for name in ("policy_lr", "value_lr", "max_grad_norm", "temperature", "kl_horizon",
                     "lora_alpha"):
            if not getattr(self, name) > 0:
                yield bad(name, "must be > 0")
        for name in ("clip_low", "clip_high", "kl_coef", "entropy_coef", "router_aux_coef"):
            if getattr(self, name) < 0:
                yield bad(name, "must be >= 0")
        for name in ("gamma", "lam"):
            if not 0 <= getattr(self, name) <= 1:
                yield bad(name, "must be in [0, 1]")
        if not 0 < self.top_p <= 1:
            yield bad("top_p", "must be in (0, 1]")
        if self.dual_clip is not None and not self.dual_clip > 1:
            yield bad("dual_clip", "None or > 1 (e.g. 3.0)")
        if self.value_clip is not None and not self.value_clip > 0:
            yield bad("value_clip", "None or > 0")
        if self.length_buckets > self.max_new_tokens:
            yield bad("length_buckets", f"at most rl.max_new_tokens ({self.max_new_tokens})")
        if self.tis_cap is not None and not self.tis_cap >= 1:
            yield bad("tis_cap", "None or >= 1 (e.g. 2.0)")
        if self.tis_cap is not None and self.old_logprobs == "rollout":
            yield ("tis_cap weighs tokens by pi_old / pi_rollout, which needs "
                   "rl.old_logprobs='recompute' (or 'auto'), not 'rollout'")
        if self.micro_batch and (self.rows // self.minibatches) % self.micro_batch:
            yield (f"micro_batch={self.micro_batch} does not divide the "
                   f"{self.rows // self.minibatches} rows of a minibatch (rl.batch_prompts * "
                   "rl.group_size / rl.minibatches): choose a divisor of it, or 0")
        if self.kl_target is not None and not self.kl_target > 0:
            yield bad("kl_target", "None or > 0")
        if self.kl_target is not None and not self.kl_coef > 0:
            yield f"kl_target={self.kl_target} needs rl.kl_coef > 0 (the controller scales it)"
        if self.oversample < 1:
            yield bad("oversample", "must be >= 1 (1: no dynamic sampling)")
        if self.oversample > 1 and self.uses_critic:
            yield ("oversample > 1 (DAPO's dynamic sampling) drops groups whose rewards are all "
                   "equal, which only a group baseline makes useless: use it with a critic-free "
                   f"algorithm, not {self.algorithm}")
        if not 0 <= self.overlong_window <= self.max_new_tokens:
            yield bad("overlong_window", f"in 0..rl.max_new_tokens ({self.max_new_tokens})")
        if self.overlong_coef < 0:
            yield bad("overlong_coef", "must be >= 0")
        if self.algorithm != "ppo" and self.group_size < 2:
            yield f"algorithm={self.algorithm} needs rl.group_size >= 2, got {self.group_size}"
        if self.rows % self.minibatches:
            yield (f"minibatches={self.minibatches} does not divide the {self.rows} rollout rows "
                   "(rl.batch_prompts * rl.group_size)")
        unknown = sorted(set(dict(self.rewards)) - set(REWARDS))
        if unknown or not self.rewards:
            yield f"rewards: unknown {unknown or 'none given'}; registered: {sorted(REWARDS)}"

    @classmethod
    def from_config(cls, rl: Mapping[str, Any]) -> "RLConfig":
        """From an experiment config's ``rl`` block; unknown keys are an error."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(rl) - fields)
        if unknown:
            raise ValueError(f"rl.{unknown[0]} is not an RL setting; known: {sorted(fields)}")
        kw = dict(rl)
        if "rewards" in kw:
            kw["rewards"] = tuple(dict(kw["rewards"]).items())
        return cls(**kw)

    @property
    def rows(self) -> int:
        """Rollout rows per iteration: batch_prompts * group_size."""
        return self.batch_prompts * self.group_size

    @property
    def sampled_prompts(self) -> int:
        """Prompts rolled out per iteration: batch_prompts, more with dynamic sampling."""
        return -(-round(self.oversample * self.batch_prompts * 1000) // 1000)

    @property
    def lora(self) -> lora_lib.LoraConfig | None:
        """The adapters RL trains (``lora_rank`` > 0), or None: every weight trains."""
        if self.lora_rank <= 0:
            return None
        return lora_lib.LoraConfig(self.lora_rank, self.lora_alpha, self.lora_targets)

    @property
    def uses_critic(self) -> bool:
        return self.algorithm == "ppo"

    @property
    def uses_reference(self) -> bool:
        """A frozen reference policy is kept (and scored) only for a KL term."""
        return self.kl_coef > 0 or self.kl_target is not None

    def recomputes_old_logprobs(self, compute_dtype) -> bool:
        """Whether the old log-probs come from a training forward pass rather than the sampler:
        always for ``recompute`` or a TIS cap; for ``auto`` when compute is not float32 (where
        the sampler's and the trainer's numerics differ)."""
        if self.old_logprobs == "auto":
            return self.tis_cap is not None or str(jnp.dtype(compute_dtype)) != "float32"
        return self.old_logprobs == "recompute"

    @property
    def reward_weights(self) -> dict[str, float]:
        return dict(self.rewards)

    def sampling(self, stop_ids=(), pad_id: int = 0, tools=None) -> SamplingConfig:
        """The rollout's sampling settings (G = group_size samples per prompt; ``tools``: the
        rollout's tool calls, o1jax/rollout/tools.py)."""
        return SamplingConfig(max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                              top_p=self.top_p, num_samples=self.group_size,
                              stop_ids=tuple(stop_ids), pad_id=pad_id, tools=tools)
