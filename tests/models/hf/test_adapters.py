"""LoRA adapters leave o1jax as transformers + peft read them: a PEFT adapter directory over the
base checkpoint, and full weights with the adapters merged, each giving our adapted logits."""

import jax
import jax.numpy as jnp
import numpy as np
import peft  # a test-only pin (requirements-test.txt)
import pytest
import transformers

from o1jax.models import hf, lora, positions_from_mask
from o1jax.models.hf import adapters as hf_adapters
from tests import hf_fixtures
from tests.models.test_hf import _batch



def _adapted(path, cfg):
    model, params = hf.load(path)
    fresh = lora.init(jax.random.key(3), params, cfg)
    leaves, tree = jax.tree.flatten(fresh)
    keys = jax.random.split(jax.random.key(4), len(leaves))
    trained = jax.tree.unflatten(tree, [x + 0.1 * jax.random.normal(k, x.shape, x.dtype)
                                        for x, k in zip(leaves, keys)])
    return model, params, trained


def _logits(model, params, tokens, mask):
    m = jnp.asarray(mask)
    out, _ = jax.jit(model.apply)(params, jnp.asarray(tokens), positions_from_mask(m), m)
    return np.asarray(out)


@pytest.mark.parametrize("targets", [lora.ATTENTION + lora.MLP, ("wq", "wv")])
def test_peft_directory_and_merged_export_give_our_adapted_logits(qwen2_dir, tmp_path, targets):
    cfg = lora.LoraConfig(rank=4, alpha=8.0, targets=targets)
    model, params, adapters = _adapted(qwen2_dir, cfg)
    merged = lora.merge(params, adapters, cfg)
    tokens, mask = _batch()
    real = mask.astype(bool)
    ours = _logits(model, merged, tokens, mask)
    base_logits = _logits(model, params, tokens, mask)
    assert np.abs(ours - base_logits)[real].max() > 1e-2     # the adapters change the model

    hf_adapters.save_peft(str(tmp_path / "adapter"), adapters, cfg, model.cfg, qwen2_dir)
    base = transformers.Qwen2ForCausalLM.from_pretrained(qwen2_dir)
    with_adapter = peft.PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    np.testing.assert_allclose(hf_fixtures.hf_logits(with_adapter, tokens, mask)[real],
                               ours[real], atol=1e-4, rtol=1e-4)

    hf.save_pretrained(str(tmp_path / "merged"), merged, model.cfg)
    full = transformers.Qwen2ForCausalLM.from_pretrained(str(tmp_path / "merged"))
    np.testing.assert_allclose(hf_fixtures.hf_logits(full, tokens, mask)[real], ours[real],
                               atol=1e-4, rtol=1e-4)
