#!/usr/bin/env python3
"""Cloud TPU launcher: create a TPU VM (or queued resource), install o1jax on every worker,
launch training on all workers, tail the logs, stop.

    python scripts/tpu.py create  --name o1 --zone us-central2-b --type v4-8
    python scripts/tpu.py install --name o1 --zone us-central2-b --repo https://github.com/you/o1jax
    python scripts/tpu.py train   --name o1 --zone us-central2-b \\
        --config configs/gsm8k_qwen05b_tpu.py --workdir gs://bucket/runs/gsm8k
    python scripts/tpu.py logs    --name o1 --zone us-central2-b
    python scripts/tpu.py stop    --name o1 --zone us-central2-b

Each subcommand runs gcloud; ``--dry-run`` prints the command instead.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

# TPU VM software versions by generation (Cloud TPU's "TPU software versions" page): v2-v4
# run tpu-ubuntu2204-base; v5e, v5p and v6e have their own images.
RUNTIMES = {"v5litepod": "v2-alpha-tpuv5-lite", "v5e": "v2-alpha-tpuv5-lite",
            "v5p": "v2-alpha-tpuv5", "v6e": "v2-alpha-tpuv6e"}
DEFAULT_RUNTIME = "tpu-ubuntu2204-base"
JAX_TPU = ('pip install "jax[tpu]==0.10.2" '
           "-f https://storage.googleapis.com/jax-releases/libtpu_releases.html")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("action", choices=["create", "install", "train", "logs", "stop"])
    ap.add_argument("--name", required=True)
    ap.add_argument("--zone", required=True)
    ap.add_argument("--project", default=None)
    ap.add_argument("--type", default="v4-8", help="accelerator type, e.g. v4-8, v5litepod-8")
    ap.add_argument("--version", default=None,
                    help="TPU VM software version (default: the one for --type's generation)")
    ap.add_argument("--queued", action="store_true", help="use a queued resource")
    ap.add_argument("--spot", action="store_true")
    ap.add_argument("--repo", default="https://github.com/o1jax/o1jax")
    ap.add_argument("--branch", default="main")
    ap.add_argument("--config", default="configs/gsm8k_qwen05b_tpu.py")
    ap.add_argument("--workdir", default="runs/default")
    ap.add_argument("--overrides", default="",
                    help='extra flags, written --overrides="--config.seed=1 ..."')
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args(argv)
    if a.version is None:
        a.version = runtime_version(a.type)
    return a


def runtime_version(accelerator_type: str) -> str:
    """The software version Cloud TPU lists for a type's generation (v5p-64 -> v2-alpha-tpuv5)."""
    return RUNTIMES.get(accelerator_type.split("-")[0], DEFAULT_RUNTIME)


def _scope(a) -> list[str]:
    return ["--zone", a.zone] + (["--project", a.project] if a.project else [])


def ssh(a, command: str, worker: str = "all") -> list[str]:
    return ["gcloud", "compute", "tpus", "tpu-vm", "ssh", a.name, *_scope(a),
            f"--worker={worker}", "--command", command]


def build_command(a) -> list[str]:
    if a.action == "create":
        if a.queued:
            return ["gcloud", "compute", "tpus", "queued-resources", "create", a.name,
                    "--node-id", a.name, *_scope(a), "--accelerator-type", a.type,
                    "--runtime-version", a.version] + (["--spot"] if a.spot else [])
        return ["gcloud", "compute", "tpus", "tpu-vm", "create", a.name, *_scope(a),
                "--accelerator-type", a.type, "--version", a.version] + \
            (["--spot"] if a.spot else [])
    if a.action == "install":
        repo, branch = shlex.quote(a.repo), shlex.quote(a.branch)
        return ssh(a, f"(git clone -b {branch} {repo} o1jax || git -C o1jax pull) && cd o1jax "
                      f"&& bash scripts/setup.sh && .venv/bin/{JAX_TPU}")
    if a.action == "train":
        flags = (f"--config={shlex.quote(a.config)} --workdir={shlex.quote(a.workdir)} "
                 f"--config.distributed=True {a.overrides}").strip()
        return ssh(a, f"cd o1jax && nohup .venv/bin/python -m o1jax.train {flags} "
                      "> train.log 2>&1 &")
    if a.action == "logs":
        return ssh(a, "tail -n 100 -f o1jax/train.log", worker="0")
    if a.queued:
        return ["gcloud", "compute", "tpus", "queued-resources", "delete", a.name, *_scope(a),
                "--force", "--quiet"]
    return ["gcloud", "compute", "tpus", "tpu-vm", "delete", a.name, *_scope(a), "--quiet"]


def main(argv=None) -> int:
    a = parse_args(argv)
    cmd = build_command(a)
    if a.dry_run:
        print(shlex.join(cmd))
        return 0
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
