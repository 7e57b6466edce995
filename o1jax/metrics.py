"""Metrics sinks: WORKDIR/metrics.jsonl (one object per iteration with a ``step`` key),
TensorBoard event files, and a console progress bar. Process 0 writes them; on other processes
the writer only keeps the progress bar off.

A local metrics.jsonl gets each row appended as it comes; an object store cannot append, so a
gs:// one is rewritten whole at ``flush()`` (the loop flushes at every checkpoint, and a resume
truncates back to the checkpoint anyway).
"""

from __future__ import annotations

import json
import math
import sys

import tqdm
from etils import epath

from o1jax import flops as flops_lib
from o1jax import workdir as wd


class MetricsWriter:
    def __init__(self, workdir: epath.Path, total_steps: int, resume_from: int = 0,
                 stage: str = "rl", console: bool = True):
        self.enabled = wd.is_writer()
        self.path = epath.Path(workdir) / "metrics.jsonl"
        self.remote = wd.is_remote(workdir)
        self.stage = stage
        self.tb = None
        if self.enabled:
            self._truncate_after(resume_from)
            # why here: tensorboardX imports torch when it is installed (2-3 s), which the
            # commands that never write metrics (plan, evaluate, trace, ...) should not pay
            from tensorboardX import SummaryWriter
            self.tb = SummaryWriter(str(epath.Path(workdir) / "tensorboard" / stage))
        # a bar redrawn in place on a terminal; in a log (stderr not a tty) a line every 5%
        # of the run instead, not one per redraw
        show, tty = console and self.enabled, sys.stderr.isatty()
        self.total, self.log_every = total_steps, max(1, total_steps // 20)
        self.log_lines = show and not tty
        self.bar = tqdm.tqdm(total=total_steps, initial=resume_from, desc=stage,
                             disable=not (show and tty), dynamic_ncols=True)

    def _truncate_after(self, step: int) -> None:
        """On resume, drop lines of this stage past the restored step (they are recomputed);
        every other line is kept as it is."""
        self.rows = []
        if self.path.exists():
            rows = wd.read_jsonl(self.path)
            self.rows = [r for r in rows if r.get("stage") != self.stage or r["step"] <= step]
            if len(self.rows) < len(rows):
                self.flush(force=True)
        self._dirty = False

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        row = {"stage": self.stage, "step": int(step)}
        row.update({k: _jsonable(v) for k, v in metrics.items()})
        self.rows.append(row)
        if self.remote:
            self._dirty = True
        else:
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")
        for k, v in row.items():
            if isinstance(v, float) and math.isfinite(v):
                self.tb.add_scalar(f"{self.stage}/{k}", v, step)
        shown = {k: f"{row[k]:.3f}" for k in ("reward_mean", "accuracy", "loss", "kl")
                 if isinstance(row.get(k), float)}
        self.bar.set_postfix(shown, refresh=False)
        self.bar.update(1)
        if self.log_lines and (step % self.log_every == 0 or step == self.total):
            print(f"{self.stage} {step}/{self.total} " + " ".join(
                f"{k}={v}" for k, v in shown.items()), file=sys.stderr, flush=True)

    def flush(self, force: bool = False) -> None:
        """Makes the rows written so far durable (a gs:// file is rewritten whole)."""
        if self.enabled and (force or self._dirty):
            wd.write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.rows))
            self._dirty = False
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        self.flush()
        if self.tb is not None:
            self.tb.close()
        self.bar.close()


def rl_log_row(metrics: dict, seconds: float, flops: float, peak_flops_per_s: float,
               devices: int) -> dict:
    """An RL iteration's metrics as logged: the compiled program's scalars plus the headline
    names (``accuracy`` = mean correctness reward, ``format_rate``), wall time, throughput
    (``tokens_per_s`` over all ``devices``, and per device), the iteration's model FLOPs
    (``flops``, over all devices) and MFU (that work in ``seconds`` against ``devices`` times
    one device's peak, ``o1jax.flops.mfu``)."""
    row = {k: float(v) for k, v in metrics.items()}
    row["accuracy"] = row.get("reward/correctness", float("nan"))
    row["format_rate"] = row.get("reward/format", float("nan"))
    row["time/iteration_s"] = seconds
    row["tokens_per_s"] = row["generated_tokens"] / seconds
    row["tokens_per_s_per_device"] = row["tokens_per_s"] / devices
    row["flops_per_s_per_device"] = flops / seconds / devices
    row["mfu"] = flops_lib.mfu(flops, seconds, peak_flops_per_s, devices)
    row["flops"] = flops
    return row


def _jsonable(v):
    """A JSON value: a non-finite float becomes null (JSON has no NaN; "nan" strings would
    break every reader that expects a number)."""
    v = float(v) if hasattr(v, "__float__") else v
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
