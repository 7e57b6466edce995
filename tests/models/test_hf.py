"""Hugging Face interop: our logits equal transformers' on checkpoints transformers wrote."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers

from o1jax.models import hf, positions_from_mask
from o1jax.tokenizer import Tokenizer
from tests import hf_fixtures


def _batch(seed=0, b=3, t=14):
    rng = np.random.RandomState(seed)
    tokens = rng.randint(0, hf_fixtures.VOCAB, (b, t))
    mask = np.ones((b, t), np.int64)
    mask[1, :5] = 0  # left padding
    mask[2, :t - 2] = 0  # a row with only two real tokens
    return tokens, mask


def _ours(path, tokens, mask, **overrides):
    model, params = hf.load(path, **overrides)
    m = jnp.asarray(mask)
    logits, _ = model.apply(params, jnp.asarray(tokens), positions_from_mask(m), m)
    return np.asarray(logits)


CLASSES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
           "qwen3_moe": "Qwen3MoeForCausalLM"}


@pytest.mark.parametrize("arch", sorted(CLASSES))
def test_logits_match_transformers_with_padding(arch, request):
    path = request.getfixturevalue(f"{arch}_dir")
    ref_model = getattr(transformers, CLASSES[arch]).from_pretrained(path)
    tokens, mask = _batch()
    ours = _ours(path, tokens, mask)
    ref = hf_fixtures.hf_logits(ref_model, tokens, mask)
    real = mask.astype(bool)
    assert np.abs(ref).max() > 0.5  # the comparison is not between near-zero arrays
    np.testing.assert_allclose(ours[real], ref[real], atol=1e-4, rtol=1e-4)


def test_llama3_rope_scaling_matches_transformers(tmp_path):
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 32,
               "rope_theta": 500000.0}
    model = hf_fixtures.tiny_hf_model("llama", rope_parameters=scaling, head_dim=32,
                                      num_attention_heads=2, num_key_value_heads=1)
    model.save_pretrained(str(tmp_path))
    cfg = hf.load_config(str(tmp_path))
    assert dict(cfg.rope_scaling)["factor"] == 8.0 and cfg.rope_theta == 500000.0
    rng = np.random.RandomState(1)
    tokens, mask = rng.randint(0, hf_fixtures.VOCAB, (2, 120)), np.ones((2, 120), np.int64)
    ours = _ours(str(tmp_path), tokens, mask)
    np.testing.assert_allclose(ours, hf_fixtures.hf_logits(model, tokens, mask), atol=1e-4,
                               rtol=1e-4)


def test_old_rope_theta_key_is_read(llama_dir, tmp_path):
    """Hub checkpoints written by transformers 4.x carry a top-level rope_theta."""
    d = tmp_path / "old"
    shutil.copytree(llama_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    theta = cfg.pop("rope_parameters")["rope_theta"]
    cfg["rope_theta"] = theta
    (d / "config.json").write_text(json.dumps(cfg))
    assert hf.load_config(str(d)).rope_theta == theta == 5000.0
    tokens, mask = _batch()
    np.testing.assert_array_equal(_ours(str(d), tokens, mask), _ours(llama_dir, tokens, mask))


def test_sharded_index_checkpoint(tmp_path):
    model = hf_fixtures.tiny_hf_model("qwen2")
    model.save_pretrained(str(tmp_path), max_shard_size="20KB")
    assert os.path.exists(tmp_path / "model.safetensors.index.json")
    tokens, mask = _batch()
    real = mask.astype(bool)
    np.testing.assert_allclose(_ours(str(tmp_path), tokens, mask)[real],
                               hf_fixtures.hf_logits(model, tokens, mask)[real], atol=1e-4,
                               rtol=1e-4)


@pytest.mark.parametrize("arch", sorted(CLASSES))
def test_export_reloads_in_transformers(arch, request, tmp_path):
    path = request.getfixturevalue(f"{arch}_dir")
    model, params = hf.load(path)
    out = tmp_path / "export"
    hf.save_pretrained(str(out), params, model.cfg, Tokenizer.from_dir(path))
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(str(out))
    tokens, mask = _batch(seed=3)
    real = mask.astype(bool)
    ours = _ours(path, tokens, mask)
    np.testing.assert_allclose(hf_fixtures.hf_logits(reloaded, tokens, mask)[real], ours[real],
                               atol=1e-4, rtol=1e-4)
    assert type(reloaded).__name__ == CLASSES[arch]
    tok = transformers.AutoTokenizer.from_pretrained(str(out))
    assert tok("7*8=").input_ids == Tokenizer.from_dir(path).encode("7*8=")


def test_qwen3_config_reads_its_head_dim_and_norms(qwen3_dir, tmp_path):
    """Qwen3 states head_dim (24 here, where hidden / heads = 16), has q/k norms per head and
    no q/k/v biases; Qwen2 has biases and no norms."""
    cfg = hf.load_config(qwen3_dir)
    assert (cfg.architecture, cfg.head_dim, cfg.qk_norm, cfg.qkv_bias) == ("qwen3", 24, True,
                                                                         False)
    model, params = hf.load(qwen3_dir)
    assert params["layers"]["q_norm"].shape == params["layers"]["k_norm"].shape == (2, 24)
    assert "bq" not in params["layers"]
    assert not hf.load_config(hf_fixtures.save_tiny_model(tmp_path, "qwen2")).qk_norm


@pytest.mark.parametrize("key", ["attention_bias", "use_sliding_window"])
def test_qwen3_options_it_does_not_compute_are_refused(qwen3_dir, tmp_path, key):
    d = tmp_path / "m"
    shutil.copytree(qwen3_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg[key] = True
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(hf.CheckpointError, match=f"{key}=True"):
        hf.load_config(str(d))


def test_export_refuses_nonempty_dir_and_leaves_no_partial(llama_dir, tmp_path):
    model, params = hf.load(llama_dir)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        hf.save_pretrained(str(tmp_path / "out"), params, model.cfg)
    layers = {k: v for k, v in params["layers"].items() if k != "w_up"}
    broken = dict(params, layers=layers)  # fails half-way through converting tensors
    with pytest.raises(KeyError):
        hf.save_pretrained(str(tmp_path / "new"), broken, model.cfg)
    assert sorted(os.listdir(tmp_path)) == ["out"]


def _copy_with(src, dst, edit_tensors=None, edit_config=None):
    from safetensors.numpy import load_file, save_file
    shutil.copytree(src, dst)
    if edit_tensors:
        tensors = load_file(os.path.join(dst, "model.safetensors"))
        edit_tensors(tensors)
        save_file(tensors, os.path.join(dst, "model.safetensors"))
    if edit_config:
        cfg = json.loads(open(os.path.join(dst, "config.json")).read())
        edit_config(cfg)
        open(os.path.join(dst, "config.json"), "w").write(json.dumps(cfg))
    return str(dst)


def test_missing_tensor_is_named(llama_dir, tmp_path):
    d = _copy_with(llama_dir, tmp_path / "m",
                   edit_tensors=lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(hf.CheckpointError, match=r"missing tensor model\.layers\.1\.mlp\.up_proj"):
        hf.load(d)


def test_wrong_shape_is_named(llama_dir, tmp_path):
    def shrink(t):
        t["model.layers.0.self_attn.k_proj.weight"] = t["model.layers.0.self_attn.k_proj.weight"][:8]
    d = _copy_with(llama_dir, tmp_path / "s", edit_tensors=shrink)
    with pytest.raises(hf.CheckpointError, match=r"k_proj\.weight: shape \(8, 64\), expected \(32, 64\)"):
        hf.load(d)


def test_unknown_architecture_is_named(llama_dir, tmp_path):
    d = _copy_with(llama_dir, tmp_path / "a",
                   edit_config=lambda c: c.update(architectures=["GPT2LMHeadModel"]))
    with pytest.raises(hf.CheckpointError, match="unknown architecture.*GPT2LMHeadModel"):
        hf.load(d)


def test_not_a_model_dir(tmp_path):
    with pytest.raises(hf.CheckpointError, match="no config.json"):
        hf.load(str(tmp_path))


@pytest.mark.parametrize("fsdp", [2, 4])
def test_qwen3_moe_experts_sharded_over_devices_give_the_one_device_logits(qwen3_moe_dir, fsdp):
    """The 4 experts split over 2 or 4 devices (logical axis "experts" on fsdp) compute what
    one device does."""
    from o1jax import sharding
    tokens, mask = _batch(seed=5)
    one = _ours(qwen3_moe_dir, tokens, mask)
    mesh = sharding.make_mesh((1, fsdp, 1), jax.devices()[:fsdp])
    model, params = hf.load(qwen3_moe_dir, mesh=mesh)
    w_up = params["layers"]["moe"]["w_up"]
    assert w_up.shape[1] == 4 and w_up.sharding.shard_shape(w_up.shape)[1] == 4 // fsdp
    m = jnp.asarray(mask)
    logits = jax.jit(model.apply)(params, jnp.asarray(tokens), positions_from_mask(m), m)[0]
    real = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(logits)[real], one[real], atol=1e-5, rtol=1e-5)


def test_qwen3_moe_layers_that_do_not_route_are_refused(qwen3_moe_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(qwen3_moe_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["mlp_only_layers"] = [1]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(hf.CheckpointError, match="mlp_only_layers"):
        hf.load_config(str(d))


def test_qwen3_moe_balance_loss_is_transformers_aux_loss(qwen3_moe_dir):
    """The load-balancing loss our forward returns equals transformers' aux_loss of the same
    left-padded batch (its load_balancing_loss_func over every layer's router)."""
    import torch
    tokens, mask = _batch(seed=7)
    model, params = hf.load(qwen3_moe_dir)
    m = jnp.asarray(mask)
    routing = model.hidden(params, jnp.asarray(tokens), positions_from_mask(m), m,
                           with_experts=True)[2]
    ref = transformers.Qwen3MoeForCausalLM.from_pretrained(qwen3_moe_dir)
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    with torch.no_grad():
        out = ref(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask),
                  position_ids=torch.tensor(positions), output_router_logits=True)
    np.testing.assert_allclose(float(routing["balance_loss"]), float(out.aux_loss), rtol=1e-5)
