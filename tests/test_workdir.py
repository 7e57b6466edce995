"""Workdirs: a gs:// workdir on a local GCS emulator, a bucket that cannot be reached, config
changes on resume, and the tokenizer a run records for export and generate."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import tokenizers
from tokenizers import decoders, models, pre_tokenizers

from o1jax.workdir import config_changes
from tests import commands, hf_fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "smoke.py")


def _cmd(workdir, *extra):
    return [sys.executable, "-m", "o1jax.train", f"--config={CONFIG}", f"--workdir={workdir}",
            "--config.progress_bar=False", *extra]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gcs_env(port: int, home) -> dict:
    """Every Google client pointed at 127.0.0.1 (the emulator, and no metadata server)."""
    url = f"http://127.0.0.1:{port}"
    return commands.env(JAX_PLATFORMS="cpu", HOME=str(home),
                STORAGE_EMULATOR_HOST=url, TENSORSTORE_GCS_HTTP_URL=url,
                GOOGLE_AUTH_TOKEN_FOR_TESTING="dummy", GCE_METADATA_HOST="127.0.0.1",
                GCE_METADATA_IP="127.0.0.1", GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false")


@pytest.fixture
def gcs(tmp_path):
    """A GCS emulator on 127.0.0.1 with bucket ``bkt``; yields the environment for clients."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "gcs_emulator.py"),
                             str(port), "bkt"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            assert time.time() < deadline, "the GCS emulator did not start"
            time.sleep(0.1)
    home = tmp_path / "home"
    home.mkdir()
    yield _gcs_env(port, home)
    proc.terminate()
    proc.wait(timeout=30)


def _bucket_files(env) -> dict:
    """{path: bytes} of everything in gs://bkt/run, read back through gcsfs."""
    code = ("import gcsfs, json, sys; fs = gcsfs.GCSFileSystem(); "
            "files = [f for f in fs.find('bkt/run')]; "
            "print(json.dumps({f: fs.cat(f).decode('latin-1') for f in files}))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_training_and_resume_on_a_gcs_workdir(gcs, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    run = lambda *extra: subprocess.run(  # noqa: E731
        _cmd("gs://bkt/run", "--config.rl.num_iterations=2", *extra), capture_output=True,
        text=True, env=dict(gcs, PYTHONPATH=ROOT), cwd=cwd, timeout=900)
    first = run()
    assert first.returncode == 0, first.stderr[-3000:]
    second = run("--config.rl.num_iterations=3")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed RL from step 2" in second.stderr
    assert list(cwd.iterdir()) == []  # nothing written locally

    files = _bucket_files(gcs)
    rows = [json.loads(line) for line in files["bkt/run/metrics.jsonl"].splitlines()]
    assert [(r["stage"], r["step"]) for r in rows] == \
        [("sft", s) for s in range(1, 5)] + [("rl", s) for s in range(1, 4)]
    assert json.loads(files["bkt/run/config.json"])["rl"]["num_iterations"] == 3
    assert json.loads(files["bkt/run/eval_rl.json"])["step"] == 3
    assert files["bkt/run/report.png"].startswith("\x89PNG")
    names = list(files)
    assert any(n.startswith("bkt/run/checkpoints/rl/3/") for n in names)
    assert any(n.startswith("bkt/run/checkpoints/sft/4/") for n in names)
    assert any(n.startswith("bkt/run/tensorboard/rl/events.out.tfevents") for n in names)
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert summary["workdir"] == "gs://bkt/run" and summary["rl_steps"] == 3


def test_an_unreachable_bucket_fails_at_start_and_writes_nothing(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = _gcs_env(_free_port(), tmp_path)  # nothing listens on that port
    # every XLA compilation is logged: failing at start means before any; the timeout only
    # stops a hang (a loaded machine's start-up time says nothing of where it failed)
    res = subprocess.run(_cmd("gs://bkt/run", "--config.workdir_timeout=10"),
                         capture_output=True, text=True, timeout=300,
                         env=dict(env, PYTHONPATH=ROOT, JAX_LOG_COMPILES="1"), cwd=cwd)
    assert res.returncode == 2, res.stderr[-3000:]
    assert "workdir gs://bkt/run" in res.stderr
    assert "credentials" in res.stderr
    assert "Finished XLA compilation" not in res.stderr, res.stderr[-3000:]
    assert list(cwd.iterdir()) == []


def test_the_workdir_module_reads_paths_and_builds_nothing():
    """Path I/O, layout and resume rules only: building a policy from a workdir is
    o1jax.policy's, above it, so workdir.py imports no o1jax module at all."""
    import ast

    from o1jax import workdir
    with open(workdir.__file__) as f:
        tree = ast.parse(f.read())
    names = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    names += [a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
              for a in node.names]
    assert not [n for n in names if n and n.split(".")[0] == "o1jax"], names


def test_config_changes_are_sorted_into_what_a_resume_can_honour():
    saved = {"seed": 0, "model": {"preset": "tiny", "overrides": {"num_layers": 1}},
             "rl": {"algorithm": "ppo", "num_iterations": 4, "policy_lr": 1e-5, "kl_coef": 0.0},
             "data": {"task": "arithmetic"}, "mesh_shape": [-1, 1, 1]}
    new = json.loads(json.dumps(saved))
    new["model"]["overrides"]["num_layers"] = 2
    new["rl"].update(num_iterations=8, policy_lr=3e-5, kl_coef=0.01)
    new["mesh_shape"] = [1, -1, 1]
    incompatible, compatible = config_changes(saved, new)
    assert incompatible == ["model.overrides.num_layers", "rl.kl_coef"]
    assert compatible == ["mesh_shape", "rl.num_iterations", "rl.policy_lr"]
    assert config_changes(saved, saved) == ([], [])


@pytest.mark.slow
def test_rerun_with_other_shapes_stops_before_touching_the_workdir(tmp_path):
    workdir = tmp_path / "w"
    env = commands.env()
    quick = ("--config.sft.num_steps=2", "--config.rl.num_iterations=1",
             "--config.eval.num_examples=0")
    res = subprocess.run(_cmd(workdir, *quick), capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    before = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
    res = subprocess.run(_cmd(workdir, *quick, "--config.model.overrides.num_layers=2"),
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert res.returncode == 2
    assert "model.overrides.num_layers" in res.stderr and "new --workdir" in res.stderr
    after = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
    assert after == before  # checkpoints, metrics.jsonl and config.json untouched
    res = subprocess.run(_cmd(workdir, *quick[:1], "--config.rl.num_iterations=2",
                              "--config.eval.num_examples=0", "--config.rl.policy_lr=2e-5"),
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming" in res.stderr and "rl.num_iterations, rl.policy_lr" in res.stderr
    assert "resumed RL from step 1" in res.stderr
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in rows] == [("sft", 1), ("sft", 2), ("rl", 1),
                                                        ("rl", 2)]


def _qwen_style_tokenizer(path):
    """A byte-level tokenizer with Qwen's special tokens: eos <|im_end|> = id 256."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = tokenizers.Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)},
                                          merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|im_end|>", "<|endoftext|>", "<|im_start|>"])
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None}))
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": 256}))


@pytest.mark.slow
def test_a_hf_run_exports_and_generates_with_its_own_tokenizer(tmp_path):
    model_dir = tmp_path / "qwen"
    hf_fixtures.tiny_hf_model("qwen2").save_pretrained(str(model_dir))
    _qwen_style_tokenizer(model_dir)
    workdir, out = tmp_path / "w", tmp_path / "export"
    env = commands.env()
    res = subprocess.run(_cmd(workdir, f"--config.model.hf_path={model_dir}",
                              "--config.model.overrides.vocab_size=259",  # the model's shapes
                              "--config.model.overrides.num_layers=2",
                              "--config.sft.num_steps=2", "--config.rl.num_iterations=0",
                              "--config.eval.num_examples=0"),
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (workdir / "model" / "tokenizer.json").read_text() == \
        (model_dir / "tokenizer.json").read_text()
    res = subprocess.run([sys.executable, "-m", "o1jax.export", "--workdir", str(workdir),
                          "--out", str(out)], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == 256
    exported = json.loads((out / "tokenizer.json").read_text())
    assert [t["content"] for t in exported["added_tokens"]] == \
        ["<|im_end|>", "<|endoftext|>", "<|im_start|>"]
    generate = lambda model: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "o1jax.generate", "--model", str(model), "--prompt",
         "What is 2 + 3?", "--greedy", "--max-new-tokens", "12"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    from_workdir, from_export = generate(workdir), generate(out)
    assert from_workdir.returncode == 0, from_workdir.stderr[-3000:]
    assert from_workdir.stdout == from_export.stdout
