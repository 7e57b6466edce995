"""What self-play feeds its compiled iteration: the buffer of accepted problems, the proposer's
prompts, and the solver's batch mixed from the buffer and the seed tasks; resumable.

Every process computes the same global batch (seeded by the iteration; each then puts only its
own devices' part) and records the same iteration results into its own copy of the buffer, so
the copies agree.
"""

from __future__ import annotations

import collections
import json
from typing import Callable, Sequence

import jax
import numpy as np

from o1jax.data import visual
from o1jax.data.pipeline import PromptPipeline, decode_example
from o1jax.data.prompts import PromptFormat, pad_prompts, prompt_ids, truncate_prompt
from o1jax.data.tasks import generate
from o1jax.selfplay import search_problems
from o1jax.selfplay.config import SelfPlayConfig
from o1jax.selfplay.problems import Problem
from o1jax.selfplay.referee import encode_questions
from o1jax.selfplay.scenes import image_of, proposal_text
from o1jax.tokenizer import Tokenizer

BUFFER_ID = -1  # example id of a solver row whose problem is given by its prompt


class ProblemBuffer:
    """Accepted problems that passed the solve-rate gate, first in first out, and the
    normalised forms of every problem ever accepted (``seen``: the referee's duplicates)."""

    def __init__(self, size: int):
        self.entries: collections.deque = collections.deque(maxlen=size)
        self.seen: set[str] = set()

    def add(self, problem: Problem, solve_rate: float, iteration: int) -> None:
        self.entries.append({"question": problem.question, "task": problem.task,
                             "answer": problem.answer, "meta": problem.meta, "key": problem.key,
                             "pattern": problem.pattern, "digits": problem.digits,
                             "operators": problem.operators, "magnitude": problem.magnitude,
                             "level": problem.level, "solve_rate": float(solve_rate),
                             "iteration": int(iteration)})

    def __len__(self) -> int:
        return len(self.entries)

    def draw(self, rng: np.random.Generator, k: int, balance: str = "none") -> list[dict]:
        """``k`` distinct entries: uniformly (``balance`` "none"), or ("answer") each with weight
        1 / (entries with its answer), so every answer the buffer holds is drawn about equally
        often."""
        if balance == "none":
            return [self.entries[int(j)] for j in rng.choice(len(self), k, replace=False)]
        counts = collections.Counter(str(e["answer"]) for e in self.entries)
        w = np.array([1.0 / counts[str(e["answer"])] for e in self.entries])
        return [self.entries[int(j)] for j in rng.choice(len(self), k, replace=False,
                                                         p=w / w.sum())]

    def stats(self) -> dict[str, float]:
        """Size, mean difficulty (digits, operators, answer magnitude, level, solve rate when it
        entered) and diversity (distinct operator patterns) of what the buffer holds."""
        out = {"buffer/size": float(len(self.entries)), "buffer/seen": float(len(self.seen))}
        for name in ("digits", "operators", "magnitude", "level", "solve_rate"):
            # entries saved before levels existed have none: level 0
            out[f"buffer/{name}"] = (float(np.mean([e.get(name, 0) for e in self.entries]))
                                     if self.entries else float("nan"))
        out["buffer/distinct_patterns"] = float(len({e["pattern"] for e in self.entries}))
        return out

    def state(self) -> dict:
        return {"entries": list(self.entries), "seen": sorted(self.seen)}

    def restore(self, state: dict) -> None:
        self.entries.clear()
        self.entries.extend(state["entries"])
        self.seen.clear()  # in place: the referee holds this set
        self.seen.update(state["seen"])


def proposer_question(prefix: str, examples: Sequence[str]) -> str:
    """The proposer's "question": the examples after the prefix (the data template wraps it)."""
    return prefix + "; ".join(examples)


def problem_text(example: dict, pictures: bool) -> str:
    """A seed example as the proposer writes problems: its question, or for a picture task its
    specification and question (``scenes.proposal_text``)."""
    return proposal_text(example) if pictures else example["question"]


def harder_problems(task: str, difficulty: int, seed: int, num: int = 256,
                    pictures: bool = False, max_chars: int = 0) -> list[str]:
    """The problems of the train partition one level above ``difficulty`` (of ``num`` drawn
    there), as the proposer writes them, for a seed task with levels: ``search_problems.TASK``'s
    questions, or with ``pictures`` a visual task's specifications and questions of at most
    ``max_chars`` characters (the referee's bound; longer ones are dropped). None for any other
    task."""
    if pictures and task in visual.TASKS:
        drawn = visual.generate(task, "train", num, seed, difficulty + 1)
        texts = (proposal_text(ex) for ex in drawn if visual.level_of(
            visual.spec_of(ex), json.loads(ex["meta"]).get("ask")) == difficulty + 1)
        return [t for t in texts if len(t) <= max_chars]
    if task != search_problems.TASK:
        return []
    return [ex["question"] for ex in generate(task, "train", num, seed, difficulty + 1)]


def proposer_demonstrations(examples: list[dict], source, sp: SelfPlayConfig,
                            rng: np.random.Generator, pictures: bool = False,
                            harder: Sequence[str] = ()) -> list[dict]:
    """SFT rows with ``sp.sft_fraction`` of them replaced by proposer demonstrations: a prompt
    of ``sp.examples`` seed problems -> another seed problem (all from ``source``, the train
    split), so SFT teaches the proposer's format and the seed distribution; with ``harder``
    (``harder_problems``) the problem written is one of them in ``sp.sft_hard_fraction`` of
    the demonstrations. With ``pictures`` the demonstration's image is its first example's;
    the problem written in ``sp.proposal_form`` (``search_problems.with_solution``)."""
    out = list(examples)
    for i in np.flatnonzero(rng.random(len(out)) < sp.sft_fraction):
        picks = [decode_example(source[int(j)])
                 for j in rng.choice(len(source), sp.examples + 1, replace=False)]
        texts = [problem_text(ex, pictures) for ex in picks]
        if harder and rng.random() < sp.sft_hard_fraction:
            texts[-1] = harder[int(rng.integers(len(harder)))]
        if sp.proposal_form != "target":
            texts[-1] = search_problems.with_solution(texts[-1], sp.proposal_form,
                                                      int(rng.integers(1 << 30)))
        out[i] = {"question": proposer_question(sp.prompt_prefix, texts[:-1]),
                  "solution": texts[-1]}
        if pictures:
            out[i]["image"] = picks[0]["image"]
    return out


def proposer_mix(exp, sp: SelfPlayConfig):
    """The SFT stage's ``mix``: step -> examples with proposer demonstrations, seeded by the
    step and the process (resumable)."""
    seed, pictures, data = exp.cfg.seed, bool(exp.policy.cfg.vision), exp.cfg.data
    harder = harder_problems(data.task, data.difficulty, seed, pictures=pictures,
                             max_chars=sp.max_chars)

    def mix(step: int, examples: list[dict]) -> list[dict]:
        rng = np.random.default_rng([seed, step, jax.process_index(), 11])
        return proposer_demonstrations(examples, exp.sources["train"], sp, rng, pictures,
                                       harder)
    return mix


class SelfPlayFeed:
    """The host side of self-play between iterations: batches in, results recorded.
    ``state()`` / ``restore()`` make it a resumable pipeline for ``o1jax.loop.run_loop``."""

    def __init__(self, source, tokenizer: Tokenizer, sp: SelfPlayConfig, batch_prompts: int,
                 fmt: PromptFormat, seed: int, register: Callable[[Problem], int] | None = None,
                 image_size: int = 0, buffer: ProblemBuffer | None = None):
        """``fmt``: the run's prompt format (solver prompts of ``fmt.max_prompt_len`` tokens);
        ``fmt.image_tokens`` > 0: a vision policy on picture problems; every prompt holds its
        image, a buffer problem's is drawn again from its specification at ``image_size``,
        and its example id is ``register(problem)`` (the referee's handle). ``buffer``: the
        buffer to fill (the one whose ``seen`` the referee reads), else a new one."""
        self.source, self.tok, self.sp, self.fmt = source, tokenizer, sp, fmt
        self.seed, self.image_tokens = seed, fmt.image_tokens
        self.register, self.image_size = register, image_size
        self.solve_n = batch_prompts - sp.proposals
        self.pipeline = PromptPipeline(source, tokenizer, batch_prompts, fmt, seed=seed)
        self.buffer = ProblemBuffer(sp.buffer_size) if buffer is None else buffer

    def state(self) -> dict:
        return {"pipeline": self.pipeline.state(), "buffer": self.buffer.state()}

    def restore(self, state: dict) -> None:
        self.pipeline.restore(state["pipeline"])
        self.buffer.restore(state["buffer"])

    def _encode(self, questions: Sequence[str], length: int) -> tuple[np.ndarray, np.ndarray]:
        return pad_prompts([self._prompt(q) for q in questions], self.tok.pad_id, length)

    def _prompt(self, question: str) -> list[int]:
        return prompt_ids({"question": question, "image": None}, self.tok, self.fmt)

    def _image(self, entry: dict) -> np.ndarray:
        """A seed example's image, or a buffer problem's drawn again."""
        if "image" in entry:
            return np.asarray(entry["image"])
        return image_of(Problem("accepted", meta=entry["meta"]), self.image_size)

    def _proposer_prompt(self, rng: np.random.Generator, seed_rows: np.ndarray
                         ) -> tuple[list[int], dict]:
        """A proposer prompt: ``examples`` problems, each from the buffer with probability
        ``buffer_fraction`` (once it has any), else a seed problem; fewer when too long. Also
        the first problem (a picture prompt shows its image)."""
        picks = []
        for _ in range(self.sp.examples):
            if self.buffer.entries and rng.random() < self.sp.buffer_fraction:
                if self.sp.buffer_balance == "none":   # the draws of runs before the option
                    entry = self.buffer.entries[rng.integers(len(self.buffer))]
                else:
                    entry = self.buffer.draw(rng, 1, self.sp.buffer_balance)[0]
                picks.append((entry["key"] if self.image_tokens else entry["question"], entry))
            else:
                ex = decode_example(self.source[int(rng.choice(seed_rows))])
                picks.append((problem_text(ex, bool(self.image_tokens)), ex))
        while True:
            ids = self._prompt(proposer_question(self.sp.prompt_prefix, [t for t, _ in picks]))
            if len(ids) <= self.sp.prompt_len or len(picks) == 1:
                if len(ids) > self.sp.prompt_len and self.image_tokens:
                    raise ValueError(f"selfplay.prompt_len={self.sp.prompt_len} cannot hold a "
                                     f"proposer prompt with its image ({len(ids)} tokens)")
                return truncate_prompt(ids, self.sp.prompt_len), picks[0][1]
            picks.pop()

    def next_batch(self, iteration: int) -> dict:
        """The iteration's global batch (numpy, the same on every process):

        propose_tokens, propose_mask [proposals, prompt_len]   the proposer's prompts
        solve_tokens, solve_mask [batch_prompts - proposals, max_prompt_len], solve_ids
            (dataset row, or -1 for a buffer problem), solve_questions [n, sp.question_bytes]
            (a buffer problem's question, ``referee.encode_questions``; zeros for a seed row)
            the solver's seed and buffer problems
        spare_tokens, spare_mask, spare_ids, spare_questions [proposals, ...]   seed problems
            that take the places of rejected proposals
        and on picture problems propose_images, solve_images, spare_images [n, S, S, 3] uint8
        (a proposer prompt shows its first example's image), buffer problems' ids their handles
        """
        rng = np.random.default_rng([self.seed, iteration, 7])
        rows = self.pipeline.next_indices()
        n_buf = min(int(round(self.sp.buffer_fraction * self.solve_n)), len(self.buffer))
        buffered = self.buffer.draw(rng, n_buf, self.sp.buffer_balance) if n_buf else []
        seed_rows = rows[:self.solve_n - n_buf]
        spare_rows = rows[self.solve_n - n_buf:self.solve_n - n_buf + self.sp.proposals]
        seeds = [decode_example(self.source[int(i)]) for i in seed_rows]
        spares = [decode_example(self.source[int(i)]) for i in spare_rows]
        solve_t, solve_m = self._encode([e["question"] for e in seeds + buffered],
                                        self.fmt.max_prompt_len)
        spare_t, spare_m = self._encode([e["question"] for e in spares], self.fmt.max_prompt_len)
        proposer = [self._proposer_prompt(rng, rows) for _ in range(self.sp.proposals)]
        prop_t, prop_m = pad_prompts([ids for ids, _ in proposer], self.tok.pad_id,
                                     self.sp.prompt_len)
        buffer_ids = [self.register(Problem("accepted", e["task"], e["question"], e["answer"],
                                            e["meta"], e["key"]))
                      if self.image_tokens else BUFFER_ID for e in buffered]
        batch = {"propose_tokens": prop_t, "propose_mask": prop_m,
                 "solve_tokens": solve_t, "solve_mask": solve_m,
                 "solve_ids": np.concatenate([seed_rows, np.array(buffer_ids, np.int64)]
                                             ).astype(np.int32),
                 "solve_questions": encode_questions(
                     [""] * len(seeds) + [e["question"] for e in buffered], self.sp.question_bytes),
                 "spare_tokens": spare_t, "spare_mask": spare_m,
                 "spare_ids": spare_rows.astype(np.int32),
                 "spare_questions": encode_questions([""] * len(spares), self.sp.question_bytes)}
        if self.image_tokens:
            stack = lambda entries: np.stack([self._image(e) for e in entries])  # noqa: E731
            batch.update(propose_images=stack([ex for _, ex in proposer]),
                         solve_images=stack(seeds + buffered), spare_images=stack(spares))
        return batch

    def record(self, problems: Sequence[Problem | None], solve_rates: np.ndarray,
               iteration: int) -> None:
        """After an iteration: every accepted proposal's form is ``seen``; those whose solve
        rate passed the gate enter the buffer."""
        for p, rate in zip(problems, solve_rates):
            if p is None:
                continue
            self.buffer.seen.add(p.key)
            if self.sp.gate_low <= rate <= self.sp.gate_high:
                self.buffer.add(p, rate, iteration)
