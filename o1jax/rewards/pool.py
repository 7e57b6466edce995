"""Worker processes that run untrusted checks with a time limit, and are killed on timeout.

Each worker is a fresh interpreter (``python -m o1jax.rewards.worker``, safe next to JAX's
threads) with a memory limit. It imports only the verifier, never the program that started it: a
worker spawned by ``multiprocessing`` re-imports the parent's main module (the trainer, and with
it JAX, orbax and TFDS: 480 MB per worker measured), this one holds 66 MB. A check
that exceeds its time limit gets its worker killed and replaced; the caller gets ``TIMEOUT`` back
and the pool counts it. Exceptions inside a check come back as ``ERROR``; nothing raises into the
caller.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection, wait
from typing import Sequence

TIMEOUT = "__timeout__"
ERROR = "__error__"
READY = "__ready__"
MEMORY_LIMIT_BYTES = 2 << 30


def _worker_env() -> dict:
    """The parent's environment, with this o1jax first on the path: a worker runs the same code
    as its parent (a checkout, a worktree), whatever is installed."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=root + (os.pathsep + path if path else ""))


class _Worker:
    """One worker process and the two pipes to it (jobs in, results out)."""

    def __init__(self, memory_limit, preload):
        job_r, job_w = os.pipe()
        res_r, res_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "o1jax.rewards.worker", str(job_r), str(res_w),
             str(memory_limit), *preload], pass_fds=(job_r, res_w), stdin=subprocess.DEVNULL,
            env=_worker_env())
        os.close(job_r)
        os.close(res_w)
        self.jobs = Connection(job_w, readable=False)
        self.conn = Connection(res_r, writable=False)

    def wait_ready(self, timeout: float = 120.0) -> None:
        if not self.conn.poll(timeout) or self.conn.recv() != READY:
            raise RuntimeError("check worker failed to start")

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=5)
        self.jobs.close()
        self.conn.close()


class CheckPool:
    """``map(fn_path, list_of_args) -> results``, each call under ``timeout`` seconds.

    ``fn_path`` is "module:function" (importable in the worker); ``preload`` modules are
    imported by every worker (a replacement too) before it takes its first timed check, so a
    time limit never includes start-up. Thread-safe; ``stats`` counts checks, timeouts and
    errors since creation.
    """

    def __init__(self, num_workers: int | None = None, timeout: float = 1.0,
                 memory_limit: int = MEMORY_LIMIT_BYTES,
                 preload: Sequence[str] = ("o1jax.rewards.verifier",)):
        self.num_workers = num_workers or len(os.sched_getaffinity(0))
        self.timeout = timeout
        self.memory_limit = memory_limit
        self.preload = tuple(preload)
        self._lock = threading.Lock()
        self._workers = [self._start() for _ in range(self.num_workers)]
        for wk in self._workers:
            wk.wait_ready()
        self.stats = {"checks": 0, "timeouts": 0, "errors": 0}

    def _start(self) -> _Worker:
        return _Worker(self.memory_limit, self.preload)

    def map(self, fn_path: str, arg_list: Sequence[tuple], timeout: float | None = None) -> list:
        timeout = self.timeout if timeout is None else timeout
        with self._lock:
            results: list = [None] * len(arg_list)
            pending = list(range(len(arg_list)))[::-1]
            busy: dict[int, tuple[int, float]] = {}  # worker index -> (job index, deadline)
            idle = list(range(len(self._workers)))
            while pending or busy:
                while pending and idle:
                    w, j = idle.pop(), pending.pop()
                    try:
                        self._workers[w].jobs.send((fn_path, tuple(arg_list[j])))
                        busy[w] = (j, time.monotonic() + timeout)
                    except (BrokenPipeError, OSError):
                        self._replace(w)
                        results[j] = ERROR
                        idle.append(w)
                if not busy:
                    continue
                next_deadline = min(d for _, d in busy.values())
                ready = wait([self._workers[w].conn for w in busy],
                             timeout=max(0.0, next_deadline - time.monotonic()))
                for w in list(busy):
                    j, deadline = busy[w]
                    conn = self._workers[w].conn
                    if conn in ready:
                        try:
                            results[j] = conn.recv()
                        except (EOFError, OSError):  # worker died (e.g. memory limit)
                            results[j] = ERROR
                            self._replace(w)
                    elif time.monotonic() >= deadline:
                        results[j] = TIMEOUT
                        self._replace(w)
                    else:
                        continue
                    del busy[w]
                    idle.append(w)
            self.stats["checks"] += len(results)
            self.stats["timeouts"] += sum(r == TIMEOUT for r in results if isinstance(r, str))
            self.stats["errors"] += sum(r == ERROR for r in results if isinstance(r, str))
            return results

    def _replace(self, w: int) -> None:
        self._workers[w].kill()
        self._workers[w] = self._start()
        self._workers[w].wait_ready()

    def close(self) -> None:
        for wk in self._workers:
            try:
                wk.jobs.send(None)
            except (BrokenPipeError, OSError):
                pass
            wk.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

