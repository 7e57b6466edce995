"""Several hosts, emulated: 2 local processes x 4 fake CPU devices with JAX's CPU collectives
(gloo), running the training CLI as every host of a TPU slice or SLURM job would."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests import commands

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "smoke.py")
WALL_CLOCK = ("time/iteration_s", "tokens_per_s", "tokens_per_s_per_device",
              "flops_per_s_per_device", "mfu")
VERIFIED = re.compile(r"process (\d) of (\d) verified (\d+) responses")

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict:
    return commands.env(devices, JAX_PLATFORMS="cpu")


def _cmd(workdir, *extra):
    return [sys.executable, "-m", "o1jax.train", f"--config={CONFIG}", f"--workdir={workdir}",
            "--config.progress_bar=False", *extra]


def _launch(workdir, *extra, processes=2, port=None):
    port = port or _free_port()
    return [subprocess.Popen(
        _cmd(workdir, f"--coordinator_address=127.0.0.1:{port}",
             f"--num_processes={processes}", f"--process_id={i}", *extra),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(8 // processes),
        cwd=ROOT) for i in range(processes)]


def _wait(procs, timeout=900):
    outs = [p.communicate(timeout=timeout) for p in procs]
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outs)]


def _rows(workdir):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _strip(row):
    return {k: v for k, v in row.items() if k not in WALL_CLOCK}


def _verified(err):
    return [(int(i), int(n), int(v)) for i, n, v in VERIFIED.findall(err)]


def test_two_processes_match_one_and_write_one_copy(tmp_path):
    """SFT, evaluation, RL with a checkpoint, a resume that trains longer, evaluation again:
    metrics as one 8-device process gives them, one copy of every file, each process verifying
    only its own rows."""
    single = tmp_path / "single"
    res = subprocess.run(_cmd(single), capture_output=True, text=True, env=_env(8), cwd=ROOT,
                         timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    single_summary = json.loads(res.stdout.strip().splitlines()[-1])
    [(_, _, single_checks)] = _verified(res.stderr)

    multi = tmp_path / "multi"
    first = _wait(_launch(multi, "--config.rl.num_iterations=2"))
    for rc, _, err in first:
        assert rc == 0, err[-3000:]
    # each process verified half of what the single process verified in its first 2 iterations
    # + evaluations: the rows it holds, never the whole batch
    checks = sorted(v for _, _, err in first for v in [_verified(err)[0]])
    assert [(i, n) for i, n, _ in checks] == [(0, 2), (1, 2)]
    assert checks[0][2] == checks[1][2] > 0
    summaries = [[line for line in out.splitlines() if line.startswith("{")]
                 for _, out, _ in first]
    assert len(summaries[0]) == 1 and summaries[1] == []  # the summary: process 0 only

    second = _wait(_launch(multi))  # rl.num_iterations back to 4: resumes from RL step 2
    for rc, _, err in second:
        assert rc == 0, err[-3000:]
        said = [line for line in err.splitlines() if any(
            w in line for w in ("resum", "checkpoint", "WARNING", "Error"))]
        assert "resumed RL from step 2" in err and "rl.num_iterations" in err, said
    summary = json.loads(second[0][1].strip().splitlines()[-1])

    rows = _rows(multi)
    keys = [(r["stage"], r["step"]) for r in rows]
    assert keys == [("sft", s) for s in range(1, 5)] + [("rl", s) for s in range(1, 5)]
    for got, want in zip(rows, _rows(single)):
        got, want = _strip(got), _strip(want)
        assert got.keys() == want.keys()
        for k, v in want.items():
            expected = (v if v is None or isinstance(v, str)
                        else pytest.approx(v, rel=1e-3, abs=1e-4))
            assert got[k] == expected, (got["stage"], got["step"], k)
    for key in ("sft_accuracy", "rl_accuracy", "rl_maj4_accuracy"):
        assert summary[key] == pytest.approx(single_summary[key], abs=1e-6), key
    assert json.loads((multi / "eval_rl.json").read_text())["step"] == 4
    json.loads((multi / "config.json").read_text())  # one writer: a whole, parseable file
    assert sorted(p.name for p in multi.iterdir() if p.name.startswith("eval_")) == \
        ["eval_rl.json", "eval_sft.json"]
    assert len(list((multi / "tensorboard" / "rl").iterdir())) == 2  # one per invocation
    assert single_checks > 0


def test_a_signal_to_one_process_saves_the_same_step_on_all(tmp_path):
    workdir = tmp_path / "w"
    procs = _launch(workdir, "--config.sft.num_steps=0", "--config.eval.num_examples=0",
                    "--config.rl.num_iterations=100000", "--config.checkpoint.every=1000")
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline and not (metrics.exists() and
                                          len(metrics.read_text().splitlines()) >= 2):
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)  # the preemption notice reaches one host only
    results = _wait(procs, timeout=300)
    saved = [re.findall(r"checkpointed RL step (\d+)", err) for _, _, err in results]
    for rc, _, err in results:
        assert rc == 143, err[-3000:]
    assert saved[0] == saved[1] and len(saved[0]) == 1
    steps = sorted(int(p.name) for p in (workdir / "checkpoints" / "rl").iterdir()
                   if p.name.isdigit())
    assert steps == [int(saved[0][0])]
    assert "stop signal (15 on this process)" in results[1][2]
    assert "stop signal (None on this process)" in results[0][2]


def test_a_coordinator_that_never_answers_is_a_clear_error(tmp_path):
    port = _free_port()  # nothing listens there
    res = subprocess.run(
        _cmd(tmp_path / "w", f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
             "--process_id=1", "--initialization_timeout=3"),
        capture_output=True, text=True, env=_env(4), cwd=ROOT, timeout=120)
    assert res.returncode == 2
    assert f"coordinator 127.0.0.1:{port} did not answer within 3 s" in res.stderr
    assert "start process 0" in res.stderr
    assert not (tmp_path / "w").exists()


def test_export_and_evaluate_from_two_processes_write_one_copy(tmp_path):
    """Every host of a job runs the export and the evaluate command; each reads the checkpoint,
    process 0 writes; the evaluation's figures are those of one process."""
    workdir = tmp_path / "w"
    res = subprocess.run(_cmd(workdir, "--config.sft.num_steps=2", "--config.rl.num_iterations=0",
                              "--config.eval.num_examples=0"),
                         capture_output=True, text=True, env=_env(8), cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    export = lambda out, *extra, **kw: subprocess.Popen(  # noqa: E731
        [sys.executable, "-m", "o1jax.export", "--workdir", str(workdir), "--out", str(out),
         *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, **kw)
    [(rc, _, err)] = _wait([export(tmp_path / "one", env=_env(8))])
    assert rc == 0, err[-3000:]
    port = _free_port()
    results = _wait([export(tmp_path / "two", f"--coordinator-address=127.0.0.1:{port}",
                            "--num-processes=2", f"--process-id={i}", env=_env(4))
                     for i in range(2)])
    for rc, _, err in results:
        assert rc == 0, err[-3000:]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == \
        sorted(p.name for p in (tmp_path / "one").iterdir())
    for f in (tmp_path / "one").iterdir():
        assert (tmp_path / "two" / f.name).read_bytes() == f.read_bytes(), f.name
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".export")] == []

    evaluate = lambda out, *extra, **kw: subprocess.Popen(  # noqa: E731
        [sys.executable, "-m", "o1jax.evaluate", "--workdir", str(workdir), "--out", str(out),
         "--num-problems=6", "--budgets=1,2", "--token-budgets=12,16", "--answer-tokens=8",
         *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, **kw)
    [(rc, _, err)] = _wait([evaluate(tmp_path / "eval_one", env=_env(8))])
    assert rc == 0, err[-3000:]
    port = _free_port()
    results = _wait([evaluate(tmp_path / "eval_two", f"--coordinator-address=127.0.0.1:{port}",
                              "--num-processes=2", f"--process-id={i}", env=_env(4))
                     for i in range(2)])
    for rc, _, err in results:
        assert rc == 0, err[-3000:]
    assert "test_time_compute.png" in results[0][1] and "strategy" not in results[1][1]
    read = lambda d, name: [json.loads(line) for line in  # noqa: E731
                            (tmp_path / d / name).read_text().splitlines()]
    no_clock = lambda rows: [dict(r, seconds=None) for r in rows]  # noqa: E731
    assert no_clock(read("eval_two", "results.jsonl")) == no_clock(read("eval_one",
                                                                        "results.jsonl"))
    assert read("eval_two", "samples.jsonl") == read("eval_one", "samples.jsonl")


def test_selfplay_on_two_processes_matches_one(tmp_path):
    """The self-play iteration (the referee's callback runs once, on process 0's first device;
    the reward's on every device) gives the metrics one 8-device process gives."""
    args = ["--config.selfplay.enabled=True", "--config.rl.algorithm=grpo",
            "--config.rl.batch_prompts=8", "--config.rl.group_size=4",
            "--config.rl.minibatches=2", "--config.selfplay.proposals=4",
            "--config.data.max_prompt_len=16", "--config.sft.num_steps=0",
            "--config.eval.num_examples=0", "--config.rl.num_iterations=2"]
    single = tmp_path / "single"
    res = subprocess.run(_cmd(single, *args), capture_output=True, text=True, env=_env(8),
                         cwd=ROOT, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    multi = tmp_path / "multi"
    for rc, _, err in _wait(_launch(multi, *args)):
        assert rc == 0, err[-3000:]
    got, want = _rows(multi), _rows(single)
    assert [r["step"] for r in got] == [1, 2] and "proposer/accept_rate" in got[0]
    for g, w in zip(got, want):
        for k, v in w.items():
            if k.startswith("time/") or k in WALL_CLOCK:
                continue
            assert g[k] == (v if v is None or isinstance(v, str)
                            else pytest.approx(v, rel=1e-3, abs=1e-4)), k
