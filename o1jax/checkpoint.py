"""Orbax checkpoints of the train state plus the data-pipeline position.

Asynchronous saves every N steps, the last K kept, one more save on SIGTERM/SIGINT (agreed by
all processes). A state with a non-finite value is never written. Restoring takes the latest
checkpoint that reads back; one whose files are missing or corrupt is skipped with a warning
naming it, and any other error (permissions, a state layout that changed) stops the run.
"""

from __future__ import annotations

import json
import logging
import signal
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from o1jax import sharding
from o1jax.optim import tree_all_finite

log = logging.getLogger(__name__)

# One compiled program over the whole state: eager checks would dispatch one reduction (each
# with its own collectives) per sharded leaf while other work is in flight, which deadlocked
# XLA's CPU all-reduce rendezvous on meshes with data = 1.
_state_is_finite = jax.jit(tree_all_finite)


class Checkpointer:
    def __init__(self, directory: epath.PathLike, every: int = 1, keep: int = 3,
                 async_save: bool = True):
        self.directory = epath.Path(directory)
        self.every = every
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, enable_async_checkpointing=async_save, create=True))

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any, extra: dict, force: bool = False) -> bool:
        """Saves when ``step`` is on the cadence (or ``force``); never a non-finite state."""
        if not force and step % self.every:
            return False
        if step in self.manager.all_steps():
            return False
        if not bool(_state_is_finite(state)):
            log.warning("step %d: state has non-finite values, not checkpointed", step)
            return False
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), extra=ocp.args.JsonSave(extra)), force=True)
        return True

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
        """(step, state, extra) from the newest readable checkpoint, or None if there is none.

        A checkpoint whose files are missing or corrupt is skipped; any other error raises, and
        so does a directory whose every checkpoint is unreadable: a run never silently starts
        over."""
        steps = sorted(self.manager.all_steps(), reverse=True)
        for step in steps:
            try:
                out = self.manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state),
                    extra=ocp.args.JsonRestore()))
                return step, out["state"], dict(out["extra"])
            except Exception as e:  # noqa: BLE001 - classified just below
                if isinstance(e, ValueError) and not is_unreadable(e):
                    raise RuntimeError(
                        f"checkpoint {self.directory / str(step)} does not read back into this "
                        f"run's state ({str(e)[:300]}): a changed config (e.g. rl.algorithm) or "
                        "an older o1jax wrote it; resume with the config that wrote it, or use "
                        "a new workdir") from e
                if not is_unreadable(e):
                    raise
                log.warning("checkpoint %d in %s is unreadable (%s: %s); trying the previous "
                            "one", step, self.directory, type(e).__name__, str(e)[:300])
        if steps:
            raise RuntimeError(
                f"every checkpoint in {self.directory} ({sorted(steps)}) is unreadable; move "
                "them away to start this stage over, or use a new workdir")
        return None

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


# tensorstore's status for a file that is missing, truncated or corrupt
_UNREADABLE_STATUS = ("NOT_FOUND", "OUT_OF_RANGE", "DATA_LOSS")


def is_unreadable(e: Exception) -> bool:
    """Whether a restore error means the checkpoint's own files are missing, partial or corrupt
    (skip it), rather than a permission, I/O or state-layout problem (stop)."""
    if isinstance(e, PermissionError):
        return False
    if isinstance(e, (FileNotFoundError, json.JSONDecodeError)):
        return True
    return isinstance(e, ValueError) and str(e).startswith(_UNREADABLE_STATUS)


class StopSignal:
    """Turns SIGTERM / SIGINT (TPU preemption, Ctrl-C) into a flag the loop checks, so the loop
    can save a last checkpoint and exit. The signal may reach hosts at different times:
    ``agreed()`` is a collective that tells every process whether any of them got one, so all
    save the same step."""

    def __init__(self):
        self.received: int | None = None
        self._old = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.received = signum

    def agreed(self) -> bool:
        """Whether any process received a signal (every process must call this at each step)."""
        return sharding.any_process(self.received is not None)

    def restore(self):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
