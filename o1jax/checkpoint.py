"""Orbax checkpoints of the train state plus the data-pipeline position.

Asynchronous saves every N steps, the last K kept, one more save on SIGTERM/SIGINT. A state with
a non-finite value is never written. Restoring takes the latest checkpoint that reads back
completely; a corrupt or partial one is skipped with a warning.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

import orbax.checkpoint as ocp

from o1jax.optim import tree_all_finite

log = logging.getLogger(__name__)


class Checkpointer:
    def __init__(self, directory: str, every: int = 1, keep: int = 3,
                 async_save: bool = True):
        self.directory = os.path.abspath(directory)
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
        if not bool(tree_all_finite(state)):
            log.warning("step %d: state has non-finite values, not checkpointed", step)
            return False
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), extra=ocp.args.JsonSave(extra)), force=True)
        return True

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
        """(step, state, extra) from the newest readable checkpoint, or None if there is none.

        Raises when checkpoints exist but none reads back into ``abstract_state``: a config or
        code change that altered the state's layout must not silently start the run over."""
        steps = sorted(self.manager.all_steps(), reverse=True)
        for step in steps:
            try:
                out = self.manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state),
                    extra=ocp.args.JsonRestore()))
                return step, out["state"], dict(out["extra"])
            except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is skipped
                log.warning("checkpoint %d in %s is unreadable (%s: %s); trying the previous "
                            "one", step, self.directory, type(e).__name__, e)
        if steps:
            raise RuntimeError(
                f"none of the checkpoints {sorted(steps)} in {self.directory} reads back into "
                "this run's state (a changed config, e.g. rl.algorithm or rl.kl_coef, or an older "
                "o1jax); resume with the config that wrote them, or use a new workdir")
        return None

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


class StopSignal:
    """Turns SIGTERM / SIGINT (TPU preemption, Ctrl-C) into a flag the loop checks, so the loop
    can save a last checkpoint and exit cleanly."""

    def __init__(self):
        self.received: int | None = None
        self._old = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.received = signum

    def restore(self):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
