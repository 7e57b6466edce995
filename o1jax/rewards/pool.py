"""Worker processes that run untrusted checks with a time limit, and are killed on timeout.

Each worker is a spawned process (safe next to JAX's threads) with a memory limit. A check that
exceeds its time limit gets its worker killed and replaced; the caller gets ``TIMEOUT`` back and
the pool counts it. Exceptions inside a check come back as ``ERROR``; nothing raises into the
caller.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import threading
import time
from multiprocessing.connection import wait
from typing import Any, Sequence

TIMEOUT = "__timeout__"
ERROR = "__error__"
READY = "__ready__"
MEMORY_LIMIT_BYTES = 2 << 30


def _resolve(path: str):
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def _worker_main(conn, memory_limit: int, preload: tuple[str, ...]) -> None:
    for module in preload:  # before the first timed check
        importlib.import_module(module)
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    except (ImportError, ValueError, OSError):
        pass
    conn.send(READY)
    cache: dict[str, Any] = {}
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        fn_path, args = job
        try:
            fn = cache.get(fn_path) or cache.setdefault(fn_path, _resolve(fn_path))
            result = fn(*args)
        except BaseException:  # noqa: BLE001 - anything a hostile input provokes
            result = ERROR
        try:
            conn.send(result)
        except Exception:  # noqa: BLE001 - unpicklable result
            conn.send(ERROR)


class _Worker:
    def __init__(self, ctx, memory_limit, preload):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, memory_limit, preload),
                                daemon=True)
        self.proc.start()
        child.close()

    def wait_ready(self, timeout: float = 120.0) -> None:
        if not self.conn.poll(timeout) or self.conn.recv() != READY:
            raise RuntimeError("check worker failed to start")

    def kill(self):
        self.proc.kill()
        self.proc.join(timeout=5)
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
        self.num_workers = num_workers or max(1, min(4, os.cpu_count() or 1))
        self.timeout = timeout
        self.memory_limit = memory_limit
        self.preload = tuple(preload)
        self._ctx = mp.get_context("spawn")
        self._lock = threading.Lock()
        self._workers = [self._start() for _ in range(self.num_workers)]
        for wk in self._workers:
            wk.wait_ready()
        self.stats = {"checks": 0, "timeouts": 0, "errors": 0}

    def _start(self) -> _Worker:
        return _Worker(self._ctx, self.memory_limit, self.preload)

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
                        self._workers[w].conn.send((fn_path, tuple(arg_list[j])))
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
                wk.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            wk.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
