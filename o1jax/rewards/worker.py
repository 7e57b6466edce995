"""A verifier worker process of ``o1jax.rewards.pool.CheckPool``:
``python -m o1jax.rewards.worker JOB_FD RESULT_FD MEMORY_LIMIT [MODULE ...]``.

Imports only what it is told to preload (the verifier), then answers ``(fn_path, args)`` jobs
from one pipe on the other until the job pipe closes or sends None.
"""

from __future__ import annotations

import importlib
import sys
from multiprocessing.connection import Connection
from typing import Any

from o1jax.rewards.pool import ERROR, READY


def _resolve(path: str):
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def serve(conn_in, conn_out, memory_limit: int, preload: tuple[str, ...]) -> None:
    for module in preload:  # before the first timed check
        importlib.import_module(module)
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    except (ImportError, ValueError, OSError):
        pass
    conn_out.send(READY)
    cache: dict[str, Any] = {}
    while True:
        try:
            job = conn_in.recv()
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
            conn_out.send(result)
        except Exception:  # noqa: BLE001 - unpicklable result
            conn_out.send(ERROR)


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1]), writable=False),
                 Connection(int(sys.argv[2]), readable=False), int(sys.argv[3]),
                 tuple(sys.argv[4:]))
