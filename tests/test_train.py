"""The training CLI: exact resume after kill -9, SIGTERM checkpointing, config errors."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from o1jax.train import print_table
from tests import commands

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "smoke.py")
WALL_CLOCK = ("time/iteration_s", "tokens_per_s", "tokens_per_s_per_device",
              "flops_per_s_per_device", "mfu")  # wall-clock derived


def _cmd(workdir, *extra):
    return [sys.executable, "-m", "o1jax.train", f"--config={CONFIG}", f"--workdir={workdir}",
            "--config.progress_bar=False", *extra]


def _rl_only(workdir, *extra):
    return _cmd(workdir, "--config.sft.num_steps=0", "--config.eval.num_examples=0", *extra)


def _metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in rows]


def _final_params(workdir, step):
    mngr = ocp.CheckpointManager(os.path.join(workdir, "checkpoints", "rl"))
    state = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return state["state"]


def test_resume_after_kill_is_exact(tmp_path):
    n = 30
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    args = [f"--config.rl.num_iterations={n}", "--config.checkpoint.keep=2"]
    res = subprocess.run(_rl_only(straight, *args), capture_output=True, text=True,
                         env=commands.env(), cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])["rl_steps"] == n

    proc = subprocess.Popen(_rl_only(killed, *args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=commands.env(), cwd=ROOT)
    metrics_file = killed / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:
        if metrics_file.exists() and len(metrics_file.read_text().splitlines()) >= n // 2:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before_kill = len(metrics_file.read_text().splitlines())
    assert n // 2 <= done_before_kill < n, "the kill must land mid-run"

    res = subprocess.run(_rl_only(killed, *args), capture_output=True, text=True,
                         env=commands.env(), cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed RL from step" in res.stderr
    a, b = _metrics(straight), _metrics(killed)
    assert [r["step"] for r in b] == list(range(1, n + 1))
    assert a == b
    pa, pb = _final_params(straight, n), _final_params(killed, n)
    la, lb = _leaves(pa), _leaves(pb)
    assert len(la) == len(lb) > 20
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(x, y)


def _leaves(tree):
    import jax
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_sigterm_saves_a_checkpoint_and_exits(tmp_path):
    workdir = tmp_path / "w"
    proc = subprocess.Popen(_rl_only(workdir, "--config.rl.num_iterations=100000",
                                 "--config.checkpoint.every=1000"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=commands.env(), cwd=ROOT)
    metrics_file = workdir / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (metrics_file.exists() and
                                          len(metrics_file.read_text().splitlines()) >= 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]  # 128 + SIGTERM: a scheduler requeues it
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["preempted"] is True
    steps = sorted(int(d) for d in os.listdir(workdir / "checkpoints" / "rl") if d.isdigit())
    assert steps == [summary["rl_steps"]]  # off-cadence: saved because of the signal


def test_corrupt_latest_checkpoint_is_skipped(tmp_path):
    workdir = tmp_path / "w"
    res = subprocess.run(_rl_only(workdir, "--config.rl.num_iterations=3"), capture_output=True,
                         text=True, env=commands.env(), cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    latest = workdir / "checkpoints" / "rl" / "3"
    for root, _, files in os.walk(latest):  # truncate every data file of the latest save
        for f in files:
            if "metadata" not in f and not f.startswith("_"):
                open(os.path.join(root, f), "wb").close()
    res = subprocess.run(_rl_only(workdir, "--config.rl.num_iterations=4"), capture_output=True,
                         text=True, env=commands.env(), cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "checkpoint 3" in res.stderr and "unreadable" in res.stderr
    assert "resumed RL from step 2" in res.stderr
    assert [r["step"] for r in _metrics(workdir)] == [1, 2, 3, 4]


@pytest.mark.parametrize("flag, match", [
    ("--config.mesh_shape=(3,1,1)", "mesh_shape"),
    ("--config.rl.algorithm=a2c", "rl.algorithm"),
    ("--config.rl.minibatches=3", "rl.minibatches=3"),
    ("--config.rl.nonexistent=1", "nonexistent"),
    ("--config.rl.batch_prompts=abc", "batch_prompts"),
    ("--config.data.slip_rate=1.5", "data.slip_rate=1.5: must be in [0, 1]"),
    ("--config.sft.lr=-1", "sft.lr=-1.0: must be > 0"),
    ("--config.rl.loss_agg=sum", "rl.loss_agg='sum'"),
    ("--config.rl.kl_estimator=k4", "rl.kl_estimator='k4'"),
    ("--config.rl.top_p=0", "rl.top_p=0.0: must be in (0, 1]"),
    ("--config.rl.micro_batch=3", "rl.micro_batch=3 does not divide"),
    ("--config.rl.vocab_chunk=999", "rl.vocab_chunk=999 is above the vocabulary"),
    ("--config.eval.temperature=0", "eval.temperature=0.0: must be > 0"),
    ("--config.data.task=gsm9k", "data.task='gsm9k'"),
])
def test_config_errors_fail_fast_and_name_the_field(tmp_path, flag, match):
    env = commands.env(8, JAX_LOG_COMPILES="1")   # every XLA compilation is logged to stderr
    # the timeout only stops a hang: a loaded machine's start-up time says nothing of the check
    res = subprocess.run(_cmd(tmp_path / "w", flag), capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=300)
    assert res.returncode != 0
    assert match in res.stderr
    # failed fast: before anything was compiled, and before the workdir was written
    assert "Finished XLA compilation" not in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "w").exists()


def test_end_to_end_smoke_run_and_export(tmp_path):
    """SFT -> eval -> PPO -> eval through the CLI; workdir contents; finite metrics; export
    loaded by transformers gives our logits; generate accepts the workdir."""
    import torch
    import transformers

    workdir, out = tmp_path / "run", tmp_path / "hf"
    res = subprocess.run(_cmd(workdir), capture_output=True, text=True, env=commands.env(),
                         cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["workdir"] == str(workdir) and summary["rl_steps"] == 4
    for key in ("sft_accuracy", "rl_accuracy", "rl_maj4_accuracy"):
        assert 0.0 <= summary[key] <= 1.0
    assert "held-out greedy accuracy after SFT" in res.stdout
    for name in ("config.json", "metrics.jsonl", "eval_sft.json", "eval_rl.json",
                 "checkpoints", "tensorboard"):
        assert (workdir / name).exists(), name
    assert any(f.startswith("events.out.tfevents") for _, _, fs in os.walk(workdir / "tensorboard")
               for f in fs)
    rows = _metrics(workdir)
    assert [(r["stage"], r["step"]) for r in rows] == [("sft", i) for i in range(1, 5)] + \
        [("rl", i) for i in range(1, 5)]
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float):
                assert np.isfinite(v), (r["stage"], r["step"], k)

    res = subprocess.run([sys.executable, "-m", "o1jax.export", f"--workdir={workdir}",
                          f"--out={out}"], capture_output=True, text=True,
                         env=commands.env(), cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(os.listdir(out))

    import jax.numpy as jnp
    from o1jax.models import positions_from_mask
    from o1jax.policy import load_policy
    (model, tok, _), params = load_policy(str(workdir))
    ids = np.array([tok.encode("12+34=?\n")])
    mask = np.ones_like(ids, bool)
    ours, _ = model.apply(params, jnp.asarray(ids), positions_from_mask(jnp.asarray(mask)),
                          jnp.asarray(mask))
    ref = transformers.AutoModelForCausalLM.from_pretrained(str(out))
    with torch.no_grad():
        theirs = ref(input_ids=torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-4, rtol=1e-4)
    assert transformers.AutoTokenizer.from_pretrained(str(out))("7+8").input_ids == \
        tok.encode("7+8")

    res = subprocess.run([sys.executable, "-m", "o1jax.generate", "--model", str(workdir),
                          "--prompt", "12+34=?", "--max-new-tokens", "8", "--greedy"],
                         capture_output=True, text=True, env=commands.env(), cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]

    # the evaluate command on the trained workdir: its SFT checkpoint, then a step it lacks
    evaluate = [sys.executable, "-m", "o1jax.evaluate", f"--workdir={workdir}",
                "--num-problems=8", "--budgets=1,2,4", "--token-budgets=12,16",
                "--answer-tokens=8", "--min-thinking=2", "--batch-prompts=8"]
    res = subprocess.run(evaluate + ["--stage=sft"], capture_output=True, text=True,
                         env=commands.env(), cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [json.loads(line) for line in (workdir / "eval" / "results.jsonl").read_text()
            .splitlines()]
    greedy = next(r for r in rows if r["strategy"] == "greedy" and r["bin"] == "all")
    assert greedy["accuracy"] == summary["sft_accuracy"]   # training's stage: the same code
    assert {r["strategy"] for r in rows} == {"greedy", "sample", "majority", "pass_at_k",
                                             "think_longer", "budget_forcing"}
    assert (workdir / "eval" / "test_time_compute.png").exists()
    res = subprocess.run(evaluate + ["--step=999"], capture_output=True, text=True,
                         env=commands.env(), cwd=ROOT, timeout=300)
    assert res.returncode == 2 and "no checkpoint at step 999" in res.stderr, res.stderr


@pytest.mark.slow
def test_smoke_run_gives_the_same_metrics_on_every_mesh(tmp_path):
    """SFT and PPO (critic, reference) with checkpoints every step on 8 fake devices, on meshes
    with data = 1 (where eager per-leaf checks at a checkpoint deadlocked XLA's CPU all-reduce):
    every run exits 0 with the metrics of one device. fsdp and tensor each hold all 8 devices
    once, and (2,2,2) splits every axis at once; the default (8,1,1) runs through this command
    in test_multihost.py's one-process run, and its iteration against one device in
    tests/rl/test_iteration.py."""
    flags = ("--config.sft.num_steps=2", "--config.rl.num_iterations=2",
             "--config.eval.num_examples=0", "--config.checkpoint.async_save=False")
    ref = subprocess.run(_cmd(tmp_path / "one", *flags), capture_output=True, text=True,
                         env=commands.env(), cwd=ROOT, timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]
    expected = _metrics(tmp_path / "one")
    env = commands.env(8)
    for shape in ("(2,2,2)", "(1,1,8)", "(1,8,1)"):
        wd = tmp_path / shape.strip("()").replace(",", "_")
        res = subprocess.run(_cmd(wd, *flags, f"--config.mesh_shape={shape}"),
                             capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
        assert res.returncode == 0, (shape, res.stderr[-3000:])
        got = _metrics(wd)
        assert [r["step"] for r in got] == [r["step"] for r in expected]
        for a, b in zip(got, expected):
            for k, v in b.items():
                if isinstance(v, float):
                    np.testing.assert_allclose(a[k], v, rtol=1e-5, atol=1e-6,
                                               err_msg=f"{shape} {a['stage']} {k}")


def test_rl_rows_log_truncated_prompts_and_the_logprob_mismatch(smoke_run):
    _, rows = smoke_run
    rl = [r for r in rows if r["stage"] == "rl"]
    assert rl and all(r["truncated_prompts"] == 0 for r in rl)   # 12-token prompts fit
    for r in rl:   # f32: the sampler and the trainer agree closely; the ratio starts near 1
        assert 0 <= r["logprob_mismatch_mean"] <= r["logprob_mismatch_max"] < 1e-3
        assert r["logprob_mismatch_frac"] == 0 and r["first_ratio_max_dev"] < 1e-3


def test_print_table(capsys):
    print_table({"sft_accuracy": 0.42, "rl_accuracy": 0.685, "rl_maj16_accuracy": None}, 16)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].endswith(" 42.0%") and "after SFT" in lines[1]
    assert lines[2].endswith(" 68.5%") and "after RL" in lines[2]
    assert "maj@16" in lines[3] and lines[3].endswith("-")
    assert lines[0] == lines[-1] and set(lines[0]) == {"-"}


def _stored_elements(workdir, stage, step):
    """Array elements of a checkpoint's train state, read back (file sizes are not a measure:
    Orbax compresses and packs its chunks, so they vary from run to run)."""
    mngr = ocp.CheckpointManager(os.path.join(workdir, "checkpoints", stage))
    state = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return sum(int(np.size(x)) for x in jax.tree.leaves(state["state"]))


def test_a_lora_run_checkpoints_adapters_resumes_and_exports_merged_and_peft(tmp_path):
    """SFT -> PPO with rl.lora_rank: the RL checkpoints hold the adapters and the critic's, not
    the base (a fraction of SFT's bytes); a rerun resumes on the base rebuilt from SFT's
    checkpoint; ``export`` writes merged weights transformers loads with our merged logits, and
    with ``--peft`` the base and a PEFT adapter directory that transformers + peft load on top
    of it with the same logits."""
    import numpy as np
    import peft
    import torch
    import transformers
    from o1jax import export
    from o1jax.policy import load_policy
    from tests import hf_fixtures

    workdir = tmp_path / "run"
    lora = ["--config.rl.lora_rank=4", "--config.rl.num_iterations=2",
            "--config.eval.num_examples=0"]
    res = subprocess.run(_cmd(workdir, *lora), capture_output=True, text=True, env=commands.env(),
                         cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    # SFT's arrays are the parameters and two Adam moments: a base copy alone would be a third
    assert _stored_elements(workdir, "rl", 2) < 0.4 * _stored_elements(workdir, "sft", 4)
    res = subprocess.run(_cmd(workdir, *lora[:1], "--config.rl.num_iterations=3",
                              "--config.eval.num_examples=0"),
                         capture_output=True, text=True, env=commands.env(), cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed RL from step 2" in res.stderr
    assert [r["step"] for r in _metrics(workdir) if r["stage"] == "rl"] == [1, 2, 3]

    (model, _, _), merged = load_policy(str(workdir))
    (_, _, _), sft = load_policy(str(workdir), stage="sft")
    rng = np.random.RandomState(0)
    tokens = rng.randint(0, hf_fixtures.VOCAB, (2, 12))
    mask = np.ones_like(tokens)
    ours = np.asarray(model.apply(merged, tokens, np.cumsum(mask, 1) - 1, mask)[0])
    base = np.asarray(model.apply(sft, tokens, np.cumsum(mask, 1) - 1, mask)[0])
    assert np.abs(ours - base).max() > 1e-4     # the adapters trained

    assert export.main(["--workdir", str(workdir), "--out", str(tmp_path / "merged")]) == 0
    full = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged"))
    np.testing.assert_allclose(hf_fixtures.hf_logits(full, tokens, mask), ours, atol=1e-4,
                               rtol=1e-4)
    assert export.main(["--workdir", str(workdir), "--out", str(tmp_path / "peft"),
                        "--peft"]) == 0
    base_model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "peft/base"))
    np.testing.assert_allclose(hf_fixtures.hf_logits(base_model, tokens, mask), base,
                               atol=1e-4, rtol=1e-4)
    adapted = peft.PeftModel.from_pretrained(base_model, str(tmp_path / "peft/adapter"))
    with torch.no_grad():
        np.testing.assert_allclose(hf_fixtures.hf_logits(adapted, tokens, mask), ours,
                                   atol=1e-4, rtol=1e-4)
