"""The referee inside the compiled self-play iteration: proposals (token ids) -> each one's
verdict, and for the accepted ones the solver's prompt, through one host callback.

Every proposal is judged by ``problems.judge`` in the verifier's worker pool (time and memory
limited; a check that runs over is a ``timeout`` rejection), then duplicates are rejected: a
problem whose normalised form was accepted in an earlier iteration (``seen``, kept with the
buffer) or earlier in the same batch. The referee remembers each accepted problem by its
question, which the compiled iteration carries beside its prompt (``Verdicts.questions``), so the
solver's reward finds the exact answer whatever template rendered the prompt.
"""

from __future__ import annotations

import collections
import math
import time
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from o1jax.data.prompts import PromptFormat, pad_prompts, prompt_ids
from o1jax.rewards.api import default_pool
from o1jax.rewards.pool import ERROR, TIMEOUT, CheckPool
from o1jax.rollout.sampler import Rollout
from o1jax.selfplay.problems import CODE, FEATURES, Bounds, Problem
from o1jax.selfplay.scenes import image_of
from o1jax.tokenizer import Tokenizer, response_texts

JUDGE = "o1jax.selfplay.problems:judge"
SCENES = "o1jax.selfplay.scenes:judge"
SEARCH = "o1jax.selfplay.search_problems:judge"
# a seed task whose problems have a form of their own; any other text task proposes in the
# forms of ``problems.judge``
TASK_JUDGES = {"countdown_search": SEARCH}
DIVERSITY = ("distinct_problems", "distinct_patterns", "trigram_entropy_bits")


class Verdicts(NamedTuple):
    """The referee's answer for P proposals, as arrays in the compiled program.

    status:    [P] int32   0 accepted, else the index of the reason in ``problems.STATUSES``
    tokens:    [P, L] int32 the solver's prompt for an accepted problem (left-padded)
    mask:      [P, L] bool
    features:  [P, 4] f32  digits, operators, log10(1 + |answer|), level (0 when rejected;
                           ``problems.FEATURES``)
    diversity: [3] f32     distinct accepted problems, distinct operator patterns among them,
                           entropy (bits) of the character trigrams of every proposal
    ids:       [P] int32   the reward's example id of each accepted problem: -1 (found by its
                           question) or, for a picture, its referee handle (<= -2)
    questions: [P, Q] uint8 an accepted text problem's question, UTF-8, zero-padded
                           (``encode_questions``): how the reward and the host find the problem
                           on any process, whatever template rendered its prompt
    images:    [P, S, S, 3] uint8, an accepted picture problem's image (None for text)
    """
    status: jax.Array
    tokens: jax.Array
    mask: jax.Array
    features: jax.Array
    diversity: jax.Array
    ids: jax.Array
    questions: jax.Array
    images: jax.Array | None = None


def encode_questions(questions: Sequence[str], width: int) -> np.ndarray:
    """[n, width] uint8: each question's UTF-8 bytes, zero-padded (an empty one: all zeros)."""
    out = np.zeros((len(questions), width), np.uint8)
    for i, q in enumerate(questions):
        b = q.encode()
        if len(b) > width:
            raise ValueError(f"question {q!r} is over {width} bytes")
        out[i, :len(b)] = np.frombuffer(b, np.uint8)
    return out


def decode_question(row) -> str:
    """A question back from its ``encode_questions`` row."""
    return bytes(np.asarray(row, np.uint8)).rstrip(b"\0").decode()


def trigram_entropy(texts: Sequence[str]) -> float:
    """Shannon entropy (bits) of the character-trigram distribution over ``texts``."""
    counts = collections.Counter(t[i:i + 3] for t in texts for i in range(len(t) - 2))
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0


class Referee:
    """Judges proposal texts; ``seen`` is the set of normalised forms accepted before (the
    buffer owns and checkpoints it; the referee only reads it).

    ``image_size`` > 0: proposals are pictures (``judge_fn`` = ``SCENES``) drawn at that size;
    many pictures share a question, so each accepted one gets a handle (``register``) that the
    solver's rows carry as their example id instead of being found by their prompt.

    The pool (``pool``, else the process-wide one) is taken and warmed up (the judge imported,
    untimed) on the first judgement, not here: building the referee to lower the iteration
    ahead of time starts no process."""

    def __init__(self, bounds: Bounds, seen: set[str], timeout: float = 1.0,
                 pool: CheckPool | None = None, judge_fn: str = JUDGE, image_size: int = 0):
        self.bounds, self.seen, self.timeout = tuple(bounds), seen, timeout
        self.judge_fn = judge_fn  # "module:function" the workers run
        self.image_size = image_size
        self.pool, self.warm = pool, False
        self.known: dict[str, Problem] = {}     # question -> accepted problem
        self.handles: dict[str, int] = {}       # a picture problem's key -> its example id
        self.registry: list[Problem] = []       # picture problems by handle

    def _judge_all(self, texts: Sequence[str]) -> list:
        """``judge_fn`` over ``texts`` in the pool (started and warmed up on first use)."""
        if self.pool is None:
            self.pool = default_pool()
        if not self.warm:
            self.pool.map(self.judge_fn, [("1+2=?", self.bounds)], timeout=120.0)
            self.warm = True
        return self.pool.map(self.judge_fn, [(t, self.bounds) for t in texts],
                             timeout=self.timeout)

    def register(self, problem: Problem) -> int:
        """A picture problem's example id (-2, -3, ...), the same for the same key."""
        if problem.key not in self.handles:
            self.handles[problem.key] = -2 - len(self.registry)
            self.registry.append(problem)
        return self.handles[problem.key]

    def by_id(self, example_id: int) -> Problem:
        """The picture problem registered as ``example_id``."""
        if not -1 - len(self.registry) <= example_id <= -2:
            raise ValueError(f"example id {example_id} is no registered picture problem")
        return self.registry[-2 - example_id]

    def judge(self, texts: Sequence[str], finished: Sequence[bool]) -> list[Problem]:
        """One verdict per proposal, in order; never raises."""
        todo = [i for i, f in enumerate(finished) if f]
        results = self._judge_all([texts[i] for i in todo])
        out = [Problem("unfinished")] * len(texts)
        batch: set[str] = set()
        for i, r in zip(todo, results):
            if r == TIMEOUT:
                r = Problem("timeout")
            elif r == ERROR or not isinstance(r, Problem):
                r = Problem("error")
            elif r.status == "accepted" and (r.key in self.seen or r.key in batch):
                r = r._replace(status="duplicate")
            if r.status == "accepted":
                batch.add(r.key)
                self.known[r.question] = r
            out[i] = r
        return out

    def problem(self, question: str) -> Problem:
        """The accepted problem asking ``question`` (judged again if this process has not seen
        it: on a host other than the one that ran the referee)."""
        if question not in self.known:
            (r,) = self._judge_all([question])
            if not isinstance(r, Problem) or r.status not in ("accepted", "duplicate"):
                raise ValueError(f"not an accepted self-play problem: {question!r}")
            self.known[question] = r
        return self.known[question]

    def find(self, question: str, example_id: int) -> Problem:
        """A proposed or buffer problem as the solver's row names it: a picture by its handle
        (``example_id``), text by its ``question``."""
        return self.by_id(example_id) if self.image_size else self.problem(question)


def make_referee_fn(referee: Referee, tokenizer: Tokenizer, fmt: PromptFormat,
                    question_bytes: int, call_times: list[tuple[float, float]] | None = None):
    """A jittable ``(proposal rollout) -> Verdicts``: the referee as one host callback; the
    solver's prompts in the run's format ``fmt``. An accepted problem whose prompt would not fit
    ``fmt.max_prompt_len`` tokens is rejected as ``enormous``. ``fmt.image_tokens``: a vision
    policy's placeholders per prompt (picture problems: the solver's prompt holds the picture
    and the question only). ``question_bytes``: the width of ``Verdicts.questions``; a longer
    question is rejected as ``enormous`` too. ``call_times``, if given, gets the (start, end)
    ``time.perf_counter()`` of every host call appended (the caller owns and clears it)."""
    size, prompt_len = referee.image_size, fmt.max_prompt_len

    def prompt_of(question: str) -> list[int]:
        """The solver's prompt, as the feed renders its own problems (``prompt_ids``)."""
        return prompt_ids({"question": question, "image": None}, tokenizer, fmt)

    filler = prompt_of("")  # a rejected row's placeholder prompt (replaced in-graph)

    def host(tokens, response_mask, finished):
        start = time.perf_counter()
        finished = np.asarray(finished)
        texts = response_texts(tokens, response_mask, finished, tokenizer)
        problems = referee.judge(texts, finished)
        prompts = []
        for i, p in enumerate(problems):
            ids = prompt_of(p.question) if p.status == "accepted" else filler
            if len(ids) > prompt_len or len(p.question.encode()) > question_bytes:
                problems[i], ids = Problem("enormous"), filler
            prompts.append(ids or [tokenizer.pad_id])
        images = np.zeros((len(problems), size, size, 3), np.uint8)
        example_ids = np.full(len(problems), -1, np.int32)
        if size:
            for i, p in enumerate(problems):
                if p.status == "accepted":
                    images[i] = image_of(p, size)
                    example_ids[i] = referee.register(p)
        toks, mask = pad_prompts(prompts, tokenizer.pad_id, prompt_len)
        ok = [p for p in problems if p.status == "accepted"]
        status = np.array([CODE[p.status] for p in problems], np.int32)
        features = np.array([p.features() if p.status == "accepted" else [0.0] * len(FEATURES)
                             for p in problems], np.float32).reshape(
            len(problems), len(FEATURES))
        diversity = np.array([len({p.key for p in ok}), len({p.pattern for p in ok}),
                              trigram_entropy(texts)],
                             np.float32)
        questions = encode_questions([p.question if p.status == "accepted" and not size else ""
                                      for p in problems], question_bytes)
        if call_times is not None:
            call_times.append((start, time.perf_counter()))
        return status, toks, mask, features, diversity, example_ids, questions, images

    def referee_fn(roll: Rollout) -> Verdicts:
        n = roll.tokens.shape[0]
        out = (jax.ShapeDtypeStruct((n,), jnp.int32),
               jax.ShapeDtypeStruct((n, prompt_len), jnp.int32),
               jax.ShapeDtypeStruct((n, prompt_len), jnp.bool_),
               jax.ShapeDtypeStruct((n, len(FEATURES)), jnp.float32),
               jax.ShapeDtypeStruct((len(DIVERSITY),), jnp.float32),
               jax.ShapeDtypeStruct((n,), jnp.int32),
               jax.ShapeDtypeStruct((n, question_bytes), jnp.uint8),
               jax.ShapeDtypeStruct((n, size, size, 3), jnp.uint8))
        v = Verdicts(*jax.pure_callback(host, out, roll.tokens, roll.response_mask,
                                        roll.finished, vmap_method="sequential"))
        return v if size else v._replace(images=None)

    return referee_fn
