"""The generate CLI against transformers' generate on the same tiny checkpoints."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch
import transformers

from o1jax import generate
from o1jax.data.builders import load_image
from o1jax.data.prompts import PromptFormat, pad_prompts, prompt_ids
from o1jax.models import Transformer, hf
from o1jax.rollout import SamplingConfig, make_sampler
from o1jax.tokenizer import Tokenizer, response_texts
from tests import hf_fixtures
from tests.test_policy import chat_config, chat_dir, make_workdir  # noqa: F401 - a fixture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _hf_greedy(path, prompt, n):
    model = transformers.AutoModelForCausalLM.from_pretrained(path)
    tok = Tokenizer.from_dir(path)
    ids = torch.tensor([tok.encode(prompt)])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                             do_sample=False, eos_token_id=tok.stop_ids, pad_token_id=tok.pad_id)
    new = out[0, ids.shape[1]:].tolist()
    if new and new[-1] in tok.stop_ids:
        new = new[:-1]
    return tok.decode(new), new


def test_cli_greedy_equals_transformers_subprocess(llama_dir):
    expected, ids = _hf_greedy(llama_dir, "12+35=", 24)
    assert len(ids) > 5
    res = subprocess.run([sys.executable, "-m", "o1jax.generate", "--model", llama_dir,
                          "--prompt", "12+35=", "--max-new-tokens", "24", "--greedy"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout == expected + "\n"


@pytest.mark.parametrize("arch,prompt", [("qwen2", "Q: 7*8?"), ("qwen2", "a"),
                                         ("qwen3", "Q: 7*8?"), ("qwen3_moe", "Q: 7*8?")])
def test_cli_greedy_equals_transformers_qwen(arch, prompt, request, capsys):
    path = request.getfixturevalue(f"{arch}_dir")
    expected, ids = _hf_greedy(path, prompt, 20)
    assert len(ids) > 5
    assert generate.main(["--model", path, "--prompt", prompt, "--max-new-tokens", "20",
                          "--greedy"]) == 0
    assert capsys.readouterr().out == expected + "\n"


def test_cli_prompts_file_jsonl(llama_dir, tmp_path, capsys):
    prompts = ["1+1=", "what is 12*12?", "x"]
    f = tmp_path / "prompts.txt"
    f.write_text("\n".join(prompts) + "\n")
    assert generate.main(["--model", llama_dir, "--prompts-file", str(f), "--num-samples", "2",
                          "--max-new-tokens", "8", "--temperature", "0.8", "--top-p", "0.9",
                          "--seed", "3"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["prompt"] for r in rows] == [p for p in prompts for _ in range(2)]
    assert all(isinstance(r["completion"], str) and isinstance(r["finished"], bool) for r in rows)
    # greedy rows for each prompt agree with transformers too (mixed lengths, left padding)
    assert generate.main(["--model", llama_dir, "--prompts-file", str(f), "--greedy",
                          "--max-new-tokens", "12"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["completion"] for r in rows] == [_hf_greedy(llama_dir, p, 12)[0] for p in prompts]


def test_cli_same_seed_same_samples(llama_dir, capsys):
    args = ["--model", llama_dir, "--prompt", "hi", "--max-new-tokens", "16", "--seed", "7"]
    generate.main(args)
    a = capsys.readouterr().out
    generate.main(args)
    assert capsys.readouterr().out == a
    generate.main(args[:-1] + ["8"])
    assert capsys.readouterr().out != a


@pytest.mark.parametrize("extra, match", [
    (["--max-new-tokens", "0"], "max_new_tokens must be >= 1"),
    (["--num-samples", "0"], "num_samples"),
    (["--max-new-tokens", "1000"], "exceeds the model's max_seq_len"),
])
def test_cli_bad_input(llama_dir, extra, match, capsys):
    assert generate.main(["--model", llama_dir, "--prompt", "hi"] + extra) == 2
    assert match in capsys.readouterr().err


def test_cli_empty_prompt_is_an_error(llama_dir, tmp_path, capsys):
    assert generate.main(["--model", llama_dir, "--prompt", "", "--max-new-tokens", "4"]) == 2
    assert "empty prompt" in capsys.readouterr().err
    f = tmp_path / "p.txt"
    f.write_text("\n\n")
    assert generate.main(["--model", llama_dir, "--prompts-file", str(f)]) == 2
    assert "no prompts" in capsys.readouterr().err


# ------------------------------------------------------------------ images (vision-language)
@pytest.fixture(scope="module")
def vl_dir(tmp_path_factory):
    """A tiny random Qwen2.5-VL saved by transformers (tests/hf_fixtures.py)."""
    return hf_fixtures.save_tiny_qwen25vl(tmp_path_factory.mktemp("qwen25vl"))


def _png(path, seed=0, size=(90, 70)):
    """A random RGBA PNG whose size is not the model's (load_image resizes it)."""
    from PIL import Image
    rgba = np.random.RandomState(seed).randint(0, 256, (size[1], size[0], 4)).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(path)
    return str(path)


def _hf_vl_greedy(path, prompt, image, n):
    """transformers' greedy generate on the prompt in prompt_ids' layout (<s>, the image's 16
    placeholders, the text), pixel_values from its own image processor (loaded from the
    checkpoint) applied to the image as load_image resized it to 112 x 112."""
    model = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(path).eval()
    proc = transformers.AutoImageProcessor.from_pretrained(path)
    tok = Tokenizer.from_dir(path)
    text = tok.encode(prompt)
    ids = torch.tensor([text[:1] + [tok.image_id] * 16 + text[1:]])
    feats = proc(images=[load_image(image, hf_fixtures.VL_IMAGE_SIZE)], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                             do_sample=False, eos_token_id=list(tok.stop_ids),
                             pad_token_id=tok.pad_id, pixel_values=feats["pixel_values"],
                             image_grid_thw=feats["image_grid_thw"],
                             mm_token_type_ids=(ids == tok.image_id).long())
    new = out[0, ids.shape[1]:].tolist()
    if new and new[-1] in tok.stop_ids:
        new = new[:-1]
    return tok.decode(new), new


def test_cli_image_greedy_equals_transformers(vl_dir, tmp_path, capsys):
    image = _png(tmp_path / "scene.png")
    prompts = ["How many?", "what is in the picture, exactly"]
    f = tmp_path / "prompts.txt"
    f.write_text("\n".join(prompts) + "\n")
    args = ["--model", vl_dir, "--image", image, "--image-size", "112", "--greedy",
            "--max-new-tokens", "16"]
    assert generate.main(args + ["--prompt", prompts[0]]) == 0
    expected, ids = _hf_vl_greedy(vl_dir, prompts[0], image, 16)
    assert len(ids) > 5
    assert capsys.readouterr().out == expected + "\n"
    # two prompts of different lengths in one left-padded batch, the same image
    assert generate.main(args + ["--prompts-file", str(f)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["completion"] for r in rows] == [_hf_vl_greedy(vl_dir, p, image, 16)[0]
                                               for p in prompts]


def test_cli_image_at_its_own_size_greedy_equals_transformers(vl_dir, tmp_path, capsys):
    """Without --image-size a Qwen2.5-VL reads the image as its processor sizes it: a 90 x 70
    RGBA image becomes 84 x 56 pixels, 3 x 2 = 6 image tokens, on both sides."""
    from PIL import Image
    image = _png(tmp_path / "wide.png", seed=4)
    assert generate.main(["--model", vl_dir, "--image", image, "--greedy", "--max-new-tokens",
                          "16", "--prompt", "How many?"]) == 0
    got = capsys.readouterr().out
    model = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(vl_dir).eval()
    feats = transformers.AutoImageProcessor.from_pretrained(vl_dir)(
        images=[Image.open(image)], return_tensors="pt")
    assert feats["image_grid_thw"].tolist() == [[1, 4, 6]]
    tok = Tokenizer.from_dir(vl_dir)
    text = tok.encode("How many?")
    ids = torch.tensor([text[:1] + [tok.image_id] * 6 + text[1:]])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16,
                             do_sample=False, eos_token_id=list(tok.stop_ids),
                             pad_token_id=tok.pad_id, pixel_values=feats["pixel_values"],
                             image_grid_thw=feats["image_grid_thw"],
                             mm_token_type_ids=(ids == tok.image_id).long())
    new = [t for t in out[0, ids.shape[1]:].tolist() if t not in tok.stop_ids]
    assert len(new) > 5 and got == tok.decode(new) + "\n"


def test_cli_image_bad_input(vl_dir, llama_dir, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    assert generate.main(["--model", vl_dir, "--image", str(bad), "--prompt", "hi",
                          "--image-size", "112"]) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "does not decode" in err
    image = _png(tmp_path / "ok.png")
    assert generate.main(["--model", llama_dir, "--image", image, "--prompt", "hi"]) == 2
    assert "text-only model" in capsys.readouterr().err
    assert generate.main(["--model", vl_dir, "--prompt", "hi", "--image-size", "112"]) == 2
    assert "give --image" in capsys.readouterr().err


def test_cli_image_from_a_vision_workdir(tmp_path, capsys):
    """A training workdir whose policy has o1jax's own encoder (configs/visual_grpo.py, made
    tiny): the CLI samples what the sampler gives for prompt_ids' prompt and load_image's image."""
    import orbax.checkpoint as ocp

    from configs import visual_grpo
    from o1jax.policy import model_shapes
    from o1jax.tokenizer import byte_tokenizer

    cfg = visual_grpo.get_config()
    cfg.model.overrides.update(num_layers=1, mlp_dim=64, hidden_size=64)
    cfg.model.overrides.vision.update(num_layers=1, hidden_size=32, mlp_dim=32)
    root = tmp_path / "run"
    (root / "checkpoints").mkdir(parents=True)
    (root / "config.json").write_text(cfg.to_json())
    model = Transformer(model_shapes(cfg))
    params = jax.tree.map(lambda a: a * 10, model.init(jax.random.key(1)))
    mngr = ocp.CheckpointManager(root / "checkpoints" / "sft")
    mngr.save(3, args=ocp.args.Composite(state=ocp.args.StandardSave({"params": params})))
    mngr.wait_until_finished()
    image = _png(tmp_path / "scene.png", seed=2)
    assert generate.main(["--model", str(root), "--image", image, "--prompt", "How many?",
                          "--greedy", "--max-new-tokens", "12"]) == 0
    got = capsys.readouterr().out
    tok = byte_tokenizer(image_token=True)
    pixels = load_image(image, 32)
    tokens, mask = pad_prompts([prompt_ids({"question": "How many?", "image": pixels}, tok,
                                           PromptFormat("{question}", image_tokens=16))],
                               tok.pad_id)
    roll = make_sampler(model, SamplingConfig(max_new_tokens=12, greedy=True,
                                              stop_ids=tok.stop_ids, pad_id=tok.pad_id),
                        gather=True)(params, tokens, mask, jax.random.key(0), images=pixels[None])
    assert got == response_texts(roll.tokens, roll.response_mask, roll.finished, tok)[0] + "\n"
    assert generate.main(["--model", str(root), "--prompt", "How many?"]) == 2
    assert "give --image" in capsys.readouterr().err


# ------------------------------------------------------------------ a workdir's own settings
def test_cli_on_a_workdir_prompts_in_the_runs_chat_template(chat_dir, tmp_path, capsys):
    """A run that trained in its tokenizer's chat template: the prompt is the user's turn of
    it (rendered here by hand), not the raw text."""
    root = tmp_path / "w"
    params = make_workdir(root, chat_config(chat_dir))
    assert generate.main(["--model", str(root), "--prompt", "What is 2+3?", "--greedy",
                          "--max-new-tokens", "10"]) == 0
    got = capsys.readouterr().out
    tok = Tokenizer.from_dir(chat_dir)
    model = Transformer(hf.load_config(chat_dir))
    sampler = make_sampler(model, SamplingConfig(max_new_tokens=10, greedy=True,
                                                 stop_ids=tok.stop_ids, pad_id=tok.pad_id),
                           gather=True)

    def greedy(text):
        tokens, mask = pad_prompts([tok.encode(text)], tok.pad_id)
        roll = sampler(params, tokens, mask, jax.random.key(0))
        return response_texts(roll.tokens, roll.response_mask, roll.finished, tok)[0] + "\n"

    assert got == greedy("<|user|>What is 2+3?\n<|assistant|>")
    assert got != greedy("What is 2+3?")   # the raw text's completion tells the two apart


def test_cli_on_a_workdir_takes_the_mesh_and_dtype_flags(tmp_path):
    from configs import smoke
    cfg = smoke.get_config()
    cfg.model.overrides.update(num_heads=4, num_kv_heads=4, mlp_dim=128)
    make_workdir(tmp_path / "w", cfg)
    args = generate.parse_args(["--model", str(tmp_path / "w"), "--prompt", "1+2=?",
                                "--mesh-shape", "1,2,4", "--dtype", "bfloat16"])
    (model, _, fmt), params = generate.load(args)
    assert dict(model.mesh.shape) == {"data": 1, "fsdp": 2, "tensor": 4}
    assert model.cfg.dtype == "bfloat16" and fmt.template == "{question}"
    for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(model.shardings())):
        assert got.sharding.is_equivalent_to(want, got.ndim)
    assert generate.main(["--model", str(tmp_path / "w"), "--prompt", "1+2=?", "--mesh-shape",
                          "1,2,4", "--dtype", "bfloat16", "--max-new-tokens", "4"]) == 0
