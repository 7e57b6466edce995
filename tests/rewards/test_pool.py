"""The check pool: time limits kill and replace workers; errors come back as values."""

import os
import signal
import time

from o1jax.rewards.pool import ERROR, TIMEOUT, CheckPool


def test_timeout_kills_and_replaces_the_worker():
    with CheckPool(num_workers=1, timeout=0.5, preload=("time",)) as pool:
        old = pool._workers[0].proc
        t = time.monotonic()
        assert pool.map("time:sleep", [(60,)]) == [TIMEOUT]
        # stopped, not waited for: far sooner than the 60 s the check would take (the margin is
        # a replacement worker's start on a loaded machine), its worker killed
        assert time.monotonic() - t < 30
        assert old.returncode == -signal.SIGKILL
        assert pool._workers[0].proc.pid != old.pid and pool._workers[0].proc.poll() is None
        assert pool.map("time:sleep", [(0,)]) == [None]  # the new worker works
        assert pool.stats == {"checks": 2, "timeouts": 1, "errors": 0}


def test_errors_are_values_and_checks_run_in_parallel(tmp_path):
    fifo = str(tmp_path / "rendezvous")
    os.mkfifo(fifo)
    with CheckPool(num_workers=2, timeout=30.0, preload=("math",)) as pool:
        assert pool.map("math:sqrt", [(-1,), (4,)]) == [ERROR, 2.0]
        # opening a FIFO waits for its other end: the reader and the writer both return only
        # when the two checks run at the same time (one after the other, both would time out)
        got = pool.map("os:open", [(fifo, os.O_RDONLY), (fifo, os.O_WRONLY)])
        assert all(isinstance(fd, int) for fd in got), got
        assert pool.stats["errors"] == 1


def test_memory_bomb_is_contained():
    with CheckPool(num_workers=1, timeout=5.0, memory_limit=1 << 30,
                   preload=("o1jax.rewards.verifier",)) as pool:
        # 8 GB of zeros cannot be allocated under a 1 GB limit: an error, not a dead parent
        assert pool.map("builtins:bytearray", [(8 << 30,)]) == [ERROR]
        assert pool.map("builtins:len", [("abc",)]) == [3]


def test_a_worker_does_not_import_the_program_that_started_it(tmp_path):
    """A trainer (JAX, orbax, TFDS imported in its main module) starts a pool: its worker holds
    the verifier only. multiprocessing's spawn workers re-imported the main module (~480 MB)."""
    import subprocess
    import sys
    script = tmp_path / "trainer_like.py"
    script.write_text(
        "import jax, orbax.checkpoint, tensorflow_datasets, o1jax.train\n"
        "from o1jax.rewards.pool import CheckPool\n"
        "if __name__ == '__main__':\n"
        "    with CheckPool(num_workers=1) as pool:\n"
        "        pid = pool._workers[0].proc.pid\n"
        "        status = open(f'/proc/{pid}/status').read()\n"
        "        print(next(l.split()[1] for l in status.splitlines() if l.startswith('VmRSS')))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rss_mb = int(out.stdout.split()[-1]) / 1024
    assert rss_mb < 150, rss_mb
