"""The one builder of a policy, its tokenizer and its prompt format: from a config, from a
workdir (its chat template choice and dtype), and a checkpoint read back as the policy's
parameters only, sharded on the command's mesh (8 fake CPU devices)."""

import json
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import smoke
from o1jax import sharding
from o1jax import workdir as wd
from o1jax.checkpoint import Checkpointer
from o1jax.data.prompts import render_prompt
from o1jax.policy import ConfigError, from_config, from_workdir, load_policy, restore_params
from o1jax.rl.config import RLConfig
from o1jax.rl.state import init_state

CHAT = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}<|assistant|>"


@pytest.fixture
def chat_dir(qwen2_dir, tmp_path):
    """The tiny Qwen2 with a chat template in its tokenizer_config.json."""
    model_dir = tmp_path / "chat"
    shutil.copytree(qwen2_dir, model_dir)
    tok_cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    (model_dir / "tokenizer_config.json").write_text(json.dumps(dict(tok_cfg,
                                                                     chat_template=CHAT)))
    return str(model_dir)


def chat_config(model_dir):
    cfg = smoke.get_config()
    cfg.model.hf_path, cfg.model.overrides = model_dir, {}
    cfg.data.use_chat_template, cfg.data.template = True, "Q: {question}"
    return cfg


def test_model_vocabulary_must_hold_the_tokenizer():
    cfg = smoke.get_config()
    cfg.model.overrides.vocab_size = 100
    with pytest.raises(ConfigError, match="model.vocab_size=100 is smaller"):
        from_config(cfg)


def test_use_chat_template_reaches_the_prompt_format(chat_dir):
    cfg = smoke.get_config()
    cfg.data.use_chat_template = True
    with pytest.raises(ConfigError, match="data.use_chat_template=True but the tokenizer has no"):
        from_config(cfg)
    cfg = chat_config(chat_dir)
    _, tok, fmt = from_config(cfg)
    assert fmt.max_prompt_len == cfg.data.max_prompt_len and fmt.image_tokens == 0
    assert render_prompt("1+1?", tok, fmt) == "<|user|>Q: 1+1?\n<|assistant|>"
    cfg.data.use_chat_template = False
    _, tok, fmt = from_config(cfg)
    assert render_prompt("1+1?", tok, fmt) == "Q: 1+1?"


def make_workdir(root, cfg, stage="rl", step=3):
    """A workdir as a run leaves it: config.json, model/ for a Hugging Face start, and one
    checkpoint of the stage's whole train state (optimizer state included). Returns the saved
    policy parameters."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(cfg.to_json_best_effort())
    if cfg.model.hf_path:
        wd.record_model(root, cfg.model.hf_path)
    model = from_config(cfg).model
    params = model.init(jax.random.key(7))
    if stage == "rl":
        state = init_state(params, RLConfig.from_config(cfg.rl), jax.random.key(1))
    else:
        state = {"params": params, "opt": jax.tree.map(np.zeros_like, params),
                 "step": np.int32(step), "skipped_updates": np.int32(0)}
    ckpt = Checkpointer(root / "checkpoints" / stage, async_save=False)
    ckpt.save(step, state, {"pipeline": {}}, force=True)
    ckpt.close()
    return params


def test_a_workdir_policy_has_the_runs_chat_template_and_dtype(chat_dir, tmp_path):
    cfg = chat_config(chat_dir)
    cfg.model.overrides = {"dtype": "bfloat16"}
    root = tmp_path / "w"
    make_workdir(root, cfg)
    model, tok, fmt = from_workdir(root)
    assert render_prompt("1+1?", tok, fmt) == "<|user|>Q: 1+1?\n<|assistant|>"
    assert fmt.max_prompt_len == cfg.data.max_prompt_len
    assert model.cfg.dtype == "bfloat16"                 # the run's
    assert from_workdir(root, dtype="float32").model.cfg.dtype == "float32"


@pytest.mark.parametrize("stage", ["rl", "sft"])
def test_a_checkpoint_is_read_as_the_policy_only_sharded_on_the_mesh(stage, tmp_path,
                                                                     monkeypatch):
    cfg = smoke.get_config()
    cfg.model.overrides.update(num_heads=4, num_kv_heads=4, mlp_dim=128)
    saved = make_workdir(tmp_path / "w", cfg, stage)
    read = []   # names of the arrays orbax deserialises
    handler = ocp.type_handlers.ArrayHandler
    original = handler.deserialize

    async def spy(self, infos, args=None):
        read.extend(info.name for info in infos)
        return await original(self, infos, args)

    monkeypatch.setattr(handler, "deserialize", spy)
    mesh = sharding.make_mesh((1, 2, 4))
    (model, _, _), params = load_policy(tmp_path / "w", mesh=mesh)
    assert model.mesh is mesh
    want = model.shardings()
    for got, w, s in zip(jax.tree.leaves(params), jax.tree.leaves(saved), jax.tree.leaves(want)):
        assert got.sharding.is_equivalent_to(s, got.ndim)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(w))
    assert any(not s.is_fully_replicated for s in jax.tree.leaves(want))   # really sharded
    key = wd.POLICY_KEY[stage]
    assert len(read) == len(jax.tree.leaves(saved))
    assert all(name.split(".")[0] == key for name in read), read   # no optimizer state read
    _, got_stage, got_step = restore_params(tmp_path / "w", model)
    assert (got_stage, got_step) == (stage, 3)
    with pytest.raises(ValueError, match="no checkpoint at step 9"):
        restore_params(tmp_path / "w", model, step=9)
