"""The TPU and SLURM launchers: argument parsing and the command lines they build."""

import importlib.util
import os
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "scripts", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


tpu = _load("tpu")
slurm = _load("slurm")
BASE = ["--name", "o1", "--zone", "us-central2-b"]


def test_tpu_create_plain_and_queued():
    cmd = tpu.build_command(tpu.parse_args(["create", *BASE, "--type", "v5litepod-8", "--spot"]))
    assert cmd[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "o1"]
    assert cmd[cmd.index("--accelerator-type") + 1] == "v5litepod-8" and "--spot" in cmd
    q = tpu.build_command(tpu.parse_args(["create", *BASE, "--queued"]))
    assert q[3:5] == ["queued-resources", "create"] and q[q.index("--node-id") + 1] == "o1"


def test_tpu_install_and_train_run_on_all_workers():
    inst = tpu.build_command(tpu.parse_args(["install", *BASE, "--repo", "https://x/r.git"]))
    assert "--worker=all" in inst
    remote = inst[inst.index("--command") + 1]
    assert "git clone -b main https://x/r.git o1jax" in remote
    assert "bash scripts/setup.sh" in remote and "jax[tpu]==0.10.2" in remote
    train = tpu.build_command(tpu.parse_args(
        ["train", *BASE, "--config", "configs/a b.py", "--workdir", "gs://b/run",
         "--overrides=--config.seed=3"]))
    remote = train[train.index("--command") + 1]
    assert "--worker=all" in train
    assert "-m o1jax.train --config='configs/a b.py' --workdir=gs://b/run" in remote
    assert "--config.distributed=True --config.seed=3" in remote
    assert remote.endswith("> train.log 2>&1 &")


def test_tpu_logs_and_stop():
    logs = tpu.build_command(tpu.parse_args(["logs", *BASE]))
    assert "--worker=0" in logs and "tail" in logs[logs.index("--command") + 1]
    stop = tpu.build_command(tpu.parse_args(["stop", *BASE, "--project", "p"]))
    assert stop[3:5] == ["tpu-vm", "delete"] and stop[stop.index("--project") + 1] == "p"


def test_tpu_dry_run_prints(capsys):
    assert tpu.main(["stop", *BASE, "--dry-run"]) == 0
    assert shlex.split(capsys.readouterr().out)[:5] == ["gcloud", "compute", "tpus", "tpu-vm",
                                                        "delete"]


def test_tpu_rejects_unknown_action():
    with pytest.raises(SystemExit):
        tpu.parse_args(["reboot", *BASE])


def test_slurm_script(tmp_path):
    out = tmp_path / "job.sbatch"
    a = slurm.parse_args(["--nodes", "4", "--gpus-per-node", "8", "--config", "configs/x.py",
                          "--workdir", "/s/run", "--partition", "h100", "--out", str(out)])
    assert slurm.main(["--nodes", "4", "--config", "configs/x.py", "--workdir", "/s/run",
                       "--out", str(out)]) == 0
    text = slurm.batch_script(a)
    assert "#SBATCH --nodes=4" in text and "#SBATCH --ntasks-per-node=1" in text
    assert "#SBATCH --gpus-per-node=8" in text and "#SBATCH --partition=h100" in text
    assert "srun --kill-on-bad-exit=1 .venv/bin/python -m o1jax.train --config=configs/x.py " \
           "--workdir=/s/run --config.distributed=True" in text
    assert out.read_text().startswith("#!/bin/bash")
    with pytest.raises(SystemExit):
        slurm.parse_args(["--nodes", "0", "--config", "c", "--workdir", "w"])


@pytest.mark.parametrize("srun_status, requeued", [(143, True), (1, False), (0, False)])
def test_slurm_script_requeues_a_preempted_job(tmp_path, srun_status, requeued):
    """The batch script run by bash with stand-ins for srun and scontrol: exit 143 (the trainer
    saved after SIGTERM) puts the job back in the queue; other statuses pass through."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(f"#!/bin/bash\nexit {srun_status}\n")
    (bin_dir / "scontrol").write_text(f"#!/bin/bash\necho \"$@\" > {tmp_path}/scontrol.txt\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    a = slurm.parse_args(["--config", "c.py", "--workdir", "/s/run", "--repo-dir", str(tmp_path)])
    script = tmp_path / "job.sbatch"
    script.write_text(slurm.batch_script(a))
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_ID="77")
    res = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert res.returncode == srun_status
    assert (tmp_path / "scontrol.txt").exists() == requeued
    if requeued:
        assert (tmp_path / "scontrol.txt").read_text().split() == ["requeue", "77"]


@pytest.mark.parametrize("tpu_type, version", [("v4-8", "tpu-ubuntu2204-base"),
                                               ("v5litepod-8", "v2-alpha-tpuv5-lite"),
                                               ("v5p-64", "v2-alpha-tpuv5"),
                                               ("v6e-8", "v2-alpha-tpuv6e")])
def test_tpu_create_uses_the_software_version_of_the_generation(tpu_type, version):
    res = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "tpu.py"), "create", *BASE,
                          "--type", tpu_type, "--dry-run"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    cmd = shlex.split(res.stdout.strip().splitlines()[-1])
    assert cmd[cmd.index("--version") + 1] == version
    q = tpu.build_command(tpu.parse_args(["create", *BASE, "--type", tpu_type, "--queued"]))
    assert q[q.index("--runtime-version") + 1] == version


def test_every_config_the_launchers_name_exists():
    for script in ("tpu", "slurm"):
        with open(os.path.join(ROOT, "scripts", f"{script}.py")) as f:
            text = f.read()
        import re
        for path in set(re.findall(r"configs/[\w.]+\.py", text)):
            assert os.path.exists(os.path.join(ROOT, path)), (script, path)
