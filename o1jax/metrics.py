"""Metrics sinks: WORKDIR/metrics.jsonl (one object per iteration with a ``step`` key),
TensorBoard event files, and a console progress bar."""

from __future__ import annotations

import json
import math
import os

import tqdm
from tensorboardX import SummaryWriter


class MetricsWriter:
    def __init__(self, workdir: str, total_steps: int, resume_from: int = 0,
                 stage: str = "rl", console: bool = True):
        os.makedirs(workdir, exist_ok=True)
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.stage = stage
        self._truncate_after(resume_from)
        self.tb = SummaryWriter(os.path.join(workdir, "tensorboard", stage))
        self.bar = tqdm.tqdm(total=total_steps, initial=resume_from, desc=stage,
                             disable=not console, dynamic_ncols=True)

    def _truncate_after(self, step: int) -> None:
        """On resume, drop lines of this stage past the restored step (they are recomputed)."""
        if not os.path.exists(self.path):
            return
        with open(self.path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        keep = [r for r in rows if r.get("stage") != self.stage or r["step"] <= step]
        with open(self.path + ".tmp", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in keep)
        os.replace(self.path + ".tmp", self.path)

    def write(self, step: int, metrics: dict) -> None:
        row = {"stage": self.stage, "step": int(step)}
        row.update({k: _jsonable(v) for k, v in metrics.items()})
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        for k, v in row.items():
            if isinstance(v, float) and math.isfinite(v):
                self.tb.add_scalar(f"{self.stage}/{k}", v, step)
        shown = {k: row[k] for k in ("reward_mean", "accuracy", "loss", "kl") if k in row}
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in shown.items()}, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.tb.close()
        self.bar.close()


def rl_log_row(metrics: dict, seconds: float, flops: float, peak_flops_per_s: float) -> dict:
    """An RL iteration's metrics as logged: the compiled program's scalars plus the headline
    names (``accuracy`` = mean correctness reward, ``format_rate``), wall time, tokens/s and MFU
    (``flops`` of work in ``seconds`` against the measured peak)."""
    row = {k: float(v) for k, v in metrics.items()}
    row["accuracy"] = row.get("reward/correctness", float("nan"))
    row["format_rate"] = row.get("reward/format", float("nan"))
    row["time/iteration_s"] = seconds
    row["tokens_per_s"] = row["generated_tokens"] / seconds
    row["mfu"] = flops / seconds / peak_flops_per_s
    return row


def _jsonable(v):
    v = float(v) if hasattr(v, "__float__") else v
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v
