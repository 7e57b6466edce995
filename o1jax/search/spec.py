"""What a test-time-compute evaluation runs and whether it fits: ``EvalSpec`` (strategies,
budgets, sampling and search settings, each checked before anything is compiled) and
``check_memory`` (one sampler call against the devices' memory)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from o1jax.config.blocks import ToolsConfig
from o1jax.data.prompts import PromptFormat
from o1jax.models.transformer import Transformer
from o1jax.rollout.forcing import BudgetForcing
from o1jax.search import strategies


@dataclasses.dataclass(frozen=True)
class EvalSpec:
    """What to evaluate and how. ``budgets``: samples per problem (sample, majority, pass@k,
    the verifier strategies; for beam search and DVTS the candidates per step, ``beam_width``
    per beam); ``token_budgets``: maximum new tokens (think_longer, budget_forcing). Budget
    forcing at budget B forces the answer marker at B - ``answer_tokens`` thinking tokens and
    holds it back before ``min_thinking`` (default: half of that). A search step ends at a
    token with a newline, after at most ``step_tokens`` tokens.

    Left at None (or ``()``), ``answer_tokens``, ``step_tokens`` and ``token_budgets`` follow
    the run's lengths so that the defaults fit any ``max_new_tokens`` (``answer_room``,
    ``step_length``, ``token_budgets_or_default``); values given are checked as given."""
    max_prompt_len: int
    max_new_tokens: int
    strategies: tuple[str, ...] = ("greedy", "sample", "majority")
    budgets: tuple[int, ...] = (1, 2, 4, 8, 16)
    token_budgets: tuple[int, ...] = ()
    temperature: float = 1.0
    batch_prompts: int = 64
    seed: int = 0
    prompt: PromptFormat = PromptFormat()   # how prompts are rendered; cut at max_prompt_len
    answer_marker: str | None = None   # None: the tokenizer's end of thinking, else \boxed{
    cue: str = "Wait"
    give_up: str = ""      # a search's give-up line: with it, only that line gets the cue
    answer_on_new_line: bool = False   # a forced answer marker starts a line of its own
    answer_after_give_up: bool = False   # ... after the give-up line (needs both above)
    answer_at_line_end: bool = False   # ... at a line end up to step_tokens before the budget
    stop_loops: int = 0    # ... at the end of a line that repeats one of the stop_loops before it
    min_thinking: int | None = None
    answer_tokens: int | None = None
    beam_width: int = 4
    step_tokens: int | None = None
    probes: int = 4
    tools: ToolsConfig = ToolsConfig()   # tool calls while sampling (o1jax/rollout/tools.py)

    @property
    def answer_room(self) -> int:
        """Budget forcing's tokens for the answer: ``answer_tokens``, default 16 but at most
        half of ``max_new_tokens`` (the other half thinks)."""
        return self.answer_tokens if self.answer_tokens is not None else min(
            16, self.max_new_tokens // 2)

    @property
    def step_length(self) -> int:
        """The longest search step: ``step_tokens``, default 32 but at most half of
        ``max_new_tokens`` (MCTS's prefix keeps room for a step)."""
        return self.step_tokens if self.step_tokens is not None else max(
            1, min(32, self.max_new_tokens // 2))

    def token_budgets_or_default(self) -> tuple[int, ...]:
        """``token_budgets``, default a quarter, half, three quarters and all of
        ``max_new_tokens``, with budget forcing only those above the answer room (all of them
        when none is: ``check`` then names the answer room that leaves no thinking)."""
        if self.token_budgets:
            return self.token_budgets
        budgets = sorted({max(1, self.max_new_tokens * q // 4) for q in (1, 2, 3, 4)})
        if "budget_forcing" in self.strategies:
            budgets = [b for b in budgets if b > self.answer_room] or budgets
        return tuple(budgets)

    def check(self, model: Transformer | None = None) -> None:
        """ValueError naming the field and the fix; run before anything is compiled (without
        ``model``: the checks that do not need it)."""
        unknown = sorted(set(self.strategies) - set(strategies.STRATEGIES))
        if unknown or not self.strategies:
            raise ValueError(f"unknown strategies {unknown or '(none given)'}; choose from "
                             f"{', '.join(strategies.STRATEGIES)}")
        if ("compute_optimal" in self.strategies and
                not set(self.strategies) & set(strategies.SELECTING)):
            raise ValueError("compute_optimal chooses among the other strategies at each budget: "
                             f"add some of {', '.join(strategies.SELECTING)}")
        if set(self.strategies) & set(strategies.SAMPLED) and not self.budgets:
            raise ValueError("sample and majority need --budgets (samples per problem)")
        for name in ("budgets", "token_budgets"):
            bad = [b for b in getattr(self, name) if b < 1]
            if bad:
                raise ValueError(f"{name} must be >= 1, got {bad}")
        for name in ("max_new_tokens", "batch_prompts", "max_prompt_len", "beam_width",
                     "step_tokens", "probes", "answer_tokens"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.answer_after_give_up and not (self.give_up and self.answer_on_new_line):
            raise ValueError("--answer-after-give-up writes the give-up line before a forced "
                             "answer: give it with --give-up and --answer-on-new-line")
        if self.answer_at_line_end and not self.answer_on_new_line:
            raise ValueError("--answer-at-line-end forces the answer where a line ends: give "
                             "--answer-on-new-line too")
        if self.stop_loops < 0 or (self.stop_loops and not self.answer_on_new_line):
            raise ValueError(f"--stop-loops {self.stop_loops} must be >= 0; it forces the "
                             "answer where a repeated line ends: give --answer-on-new-line too")
        untooled = sorted(set(self.strategies) & set(strategies.SEARCHED + ("budget_forcing",)))
        if self.tools.enabled and untooled:
            raise ValueError(f"{', '.join(untooled)} do not run tool calls: evaluate them "
                             "without tools (evaluate --tools off)")
        if "budget_forcing" in self.strategies:
            for b in self.token_budgets_or_default():
                # raises on a minimum above the maximum
                self.forcing(b, [0], [0], (), [0] if self.answer_break else ())
        if model is None:
            return
        longest = max((self.max_new_tokens,) + self.token_budgets_or_default())
        if self.max_prompt_len + longest > model.cfg.max_seq_len:
            raise ValueError(f"prompt length {self.max_prompt_len} + {longest} new tokens "
                             f"exceeds the model's max_seq_len {model.cfg.max_seq_len}; lower "
                             "--max-new-tokens / --token-budgets")

    @property
    def answer_break(self) -> str:
        """What a forced answer marker is written after: nothing, a newline
        (``answer_on_new_line``), or a newline, the give-up line and a newline
        (``answer_after_give_up``)."""
        if self.answer_after_give_up:
            return f"\n{self.give_up}\n"
        return "\n" if self.answer_on_new_line else ""

    def forcing(self, budget: int, marker_ids, cue_ids, give_up_ids=(), break_ids=()
                ) -> BudgetForcing:
        """Budget forcing at a token budget (marker, cue, the give-up line's first token and
        ``answer_break`` as token ids; see ``BudgetForcing``)."""
        answer = self.answer_room
        break_ids = tuple(break_ids)
        if answer < len(break_ids) + len(marker_ids):
            raise ValueError(f"--answer-tokens {answer} leaves no room for the answer marker "
                             f"{self.answer_marker!r} ({len(break_ids) + len(marker_ids)} "
                             "tokens with its line break); raise --answer-tokens")
        hi = budget - answer
        if hi < 1:
            raise ValueError(f"budget_forcing at {budget} tokens leaves no thinking before the "
                             f"{answer} answer tokens; raise the token budget or lower "
                             "--answer-tokens")
        lo = hi // 2 if self.min_thinking is None else self.min_thinking
        if lo > hi:
            raise ValueError(f"--min-thinking {lo} is above the maximum thinking length {hi} "
                             f"of token budget {budget} (budget - {answer} answer tokens); "
                             "lower --min-thinking or raise the token budgets")
        return BudgetForcing(lo, hi, tuple(marker_ids), tuple(cue_ids), tuple(give_up_ids)[:1],
                             break_ids, self.step_length if self.answer_at_line_end else 0,
                             self.stop_loops)


def check_memory(model: Transformer, rows: int, length: int) -> None:
    """ValueError when one sampler call (``rows`` sequences of ``length`` tokens: its KV cache,
    f32 logits and the weights) would not fit the local devices' memory (the host's available
    memory on CPU)."""
    c = model.cfg
    itemsize = np.dtype(c.compute_dtype).itemsize
    need = (rows * length * c.num_layers * 2 * c.num_kv_heads * c.head_dim * itemsize
            + 3 * rows * c.vocab_size * 4 + c.num_params() * (4 + itemsize))
    stats = [d.memory_stats() or {} for d in jax.local_devices()]
    have = sum(s.get("bytes_limit", 0) - s.get("bytes_in_use", 0) for s in stats)
    if not have:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        have = int(info["MemAvailable"].split()[0]) * 1024
    if need > have:
        raise ValueError(f"one sampler call of {rows} sequences x {length} tokens needs about "
                         f"{need / 2**30:.1f} GiB, more than the {have / 2**30:.1f} GiB "
                         "available; lower --batch-prompts (or the budgets)")
