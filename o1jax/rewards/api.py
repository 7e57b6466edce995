"""The public verification API over a shared pool of time-limited worker processes."""

from __future__ import annotations

import atexit
import threading
from typing import Sequence

from o1jax.rewards.pool import CheckPool

EQUIVALENCE = "o1jax.rewards.verifier:is_equivalent"
_pool: CheckPool | None = None
_pool_lock = threading.Lock()


def default_pool() -> CheckPool:
    """The process-wide pool (created on first use, closed at exit)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = CheckPool()
            atexit.register(_pool.close)
        return _pool


def checks_done() -> int:
    """Answers this process's shared pool has checked (0 before its first use)."""
    return _pool.stats["checks"] if _pool is not None else 0


def verify_batch(responses: Sequence[str], references: Sequence[str],
                 pool: CheckPool | None = None, timeout: float | None = None) -> list[bool]:
    """verify() over a batch, checked in parallel. A check that fails or times out is False."""
    if len(responses) != len(references):
        raise ValueError(f"{len(responses)} responses but {len(references)} references")
    pool = pool or default_pool()
    results = pool.map(EQUIVALENCE, list(zip(responses, references)), timeout=timeout)
    return [r is True for r in results]


def verify(response: str, reference: str, timeout: float | None = None) -> bool:
    """Whether the final answer in ``response`` is mathematically equivalent to ``reference``.

    The answer is extracted as ``o1jax.rewards.answers.extract_answer`` says (last \\boxed{},
    '#### X', the final-answer sentence, the last $...$ / \\(...\\) / \\[...\\], a lone
    number only for plain-number references) and compared by ``verifier.answers_equivalent``.
    Runs in a worker process under a time limit (default 1 s); never raises on any response
    text.
    """
    return verify_batch([response], [reference], timeout=timeout)[0]
