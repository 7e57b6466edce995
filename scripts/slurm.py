#!/usr/bin/env python3
"""GPU cluster launcher: writes (and submits) a SLURM batch script that starts one o1jax process
per host; ``jax.distributed.initialize()`` reads the SLURM environment to connect them.

    python scripts/slurm.py --nodes 2 --gpus-per-node 8 --config configs/gsm8k_h100x8.py \\
        --workdir /shared/runs/math [--partition gpu] [--submit]
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--gpus-per-node", type=int, default=8)
    ap.add_argument("--partition", default=None)
    ap.add_argument("--time", default="24:00:00")
    ap.add_argument("--job-name", default="o1jax")
    ap.add_argument("--config", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--overrides", default="")
    ap.add_argument("--repo-dir", default=".", help="o1jax checkout on the shared filesystem")
    ap.add_argument("--out", default="o1jax.sbatch")
    ap.add_argument("--submit", action="store_true", help="sbatch the script")
    a = ap.parse_args(argv)
    if a.nodes < 1 or a.gpus_per_node < 1:
        ap.error("--nodes and --gpus-per-node must be >= 1")
    return a


def batch_script(a) -> str:
    lines = ["#!/bin/bash", f"#SBATCH --job-name={a.job_name}", f"#SBATCH --nodes={a.nodes}",
             "#SBATCH --ntasks-per-node=1", f"#SBATCH --gpus-per-node={a.gpus_per_node}",
             f"#SBATCH --time={a.time}", "#SBATCH --output=%x-%j.out",
             "#SBATCH --requeue", "#SBATCH --signal=TERM@120"]
    if a.partition:
        lines.append(f"#SBATCH --partition={a.partition}")
    flags = (f"--config={shlex.quote(a.config)} --workdir={shlex.quote(a.workdir)} "
             f"--config.distributed=True {a.overrides}").strip()
    lines += ["set -euo pipefail", f"cd {shlex.quote(a.repo_dir)}",
              "# one process per host; each sees its node's GPUs",
              "# SIGTERM (preemption, or 120 s before the time limit) makes every process save",
              "# the same step and exit 143; the job then goes back in the queue and resumes",
              "status=0",
              f"srun --kill-on-bad-exit=1 .venv/bin/python -m o1jax.train {flags} || status=$?",
              'if [ "$status" -eq 143 ]; then scontrol requeue "$SLURM_JOB_ID"; fi',
              'exit "$status"']
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    a = parse_args(argv)
    with open(a.out, "w") as f:
        f.write(batch_script(a))
    print(a.out)
    if a.submit:
        return subprocess.call(["sbatch", a.out])
    return 0


if __name__ == "__main__":
    sys.exit(main())
