"""A Qwen2.5-VL checkpoint trained end to end through the CLIs: ``python -m o1jax.train`` with
``model.hf_path`` at a tiny random Qwen2.5-VL that transformers writes (its chat template and
vision markers, tests/hf_fixtures.py) on an ``image_qa`` JSONL in Geometry3K's layout (images
of three sizes, each read at its own size) runs SFT and two GRPO iterations, each stage
compiling at most one program per image bucket; the workdir exports to a directory
transformers loads, and transformers' greedy completion of a chat prompt with an image (its
own processor sizing it) equals o1jax's."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests import commands, hf_fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = '''
import ml_collections
from configs import smoke

def get_config():
    c = smoke.get_config()
    c.model.hf_path = {model!r}
    c.model.overrides = ml_collections.ConfigDict()
    c.data.task = "image_qa"
    c.data.train_path, c.data.test_path = {train!r}, {test!r}
    c.data.use_chat_template = True
    c.data.template = "{{question}}"
    c.data.max_prompt_len = 128
    c.sft.num_steps, c.sft.batch_size, c.sft.max_len = 3, 4, 160
    c.eval.num_examples, c.eval.batch_prompts, c.eval.max_new_tokens = 4, 4, 8
    c.rl.algorithm, c.rl.num_iterations, c.rl.batch_prompts, c.rl.group_size = "grpo", 2, 4, 2
    c.rl.max_new_tokens = 8
    return c
'''


def _png(path, seed):
    """A random picture of one of three sizes (the model reads each at its own size: 4, 6 or
    8 image tokens)."""
    from PIL import Image
    shape = ((40, 64, 3), (100, 45, 3), (60, 60, 3))[seed % 3]
    rgb = np.random.RandomState(seed).randint(0, 256, shape).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    return os.path.basename(path)


def _write_data(root) -> tuple[str, str]:
    """Geometry3K's layout: ``problem`` with a literal <image>, ``answer``, ``images``."""
    paths = []
    for split, n in (("train", 8), ("test", 4)):
        rows = [{"problem": f"<image>How many sides has shape {i}?", "answer": str(3 + i % 2),
                 "solution": f"It has \\boxed{{{3 + i % 2}}}",
                 "images": [_png(root / f"{split}{i}.png", seed=i + 10 * (split == "test"))]}
                for i in range(n)]
        path = root / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths.append(str(path))
    return paths[0], paths[1]


def _run(*args, timeout=300):
    env = commands.env()   # one CPU device, as a user runs it
    res = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def _hf_greedy(path, question, image_file, n):
    """transformers on the exported directory: its tokenizer's chat template with the image as a
    part of the user's message, the placeholder repeated as its image processor counts tokens,
    greedy decoding."""
    import torch
    import transformers
    from PIL import Image

    model = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(path).eval()
    proc = transformers.AutoImageProcessor.from_pretrained(path)
    tok = transformers.AutoTokenizer.from_pretrained(path)
    feats = proc(images=[Image.open(image_file)], return_tensors="pt")
    count = int(feats["image_grid_thw"][0].prod()) // 4
    text = tok.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}],
        tokenize=False, add_generation_prompt=True)
    ids = torch.tensor([tok(text.replace("<|image_pad|>", "<|image_pad|>" * count))["input_ids"]])
    image_id = hf_fixtures.VL_CHAT_IDS["<|image_pad|>"]
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                             do_sample=False, eos_token_id=hf_fixtures.VL_CHAT_IDS["<|im_end|>"],
                             pad_token_id=256, pixel_values=feats["pixel_values"],
                             image_grid_thw=feats["image_grid_thw"],
                             mm_token_type_ids=(ids == image_id).long())
    new = out[0, ids.shape[1]:].tolist()
    return tok.decode(new, skip_special_tokens=True)


@pytest.mark.slow
def test_a_qwen25vl_checkpoint_trains_exports_and_generates_as_transformers(tmp_path):
    model_dir = hf_fixtures.save_tiny_qwen25vl(tmp_path / "qwen", chat=True)
    data = tmp_path / "geo"
    data.mkdir()
    train, test = _write_data(data)
    config = tmp_path / "config_qwen25vl.py"
    config.write_text(CONFIG.format(model=model_dir, train=train, test=test))
    workdir, out = tmp_path / "run", tmp_path / "hf"
    stdout = _run("o1jax.train", f"--config={config}", f"--workdir={workdir}",
                  "--config.progress_bar=False", timeout=600)
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["rl_steps"] == 2
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in rows] == [("sft", 1), ("sft", 2), ("sft", 3),
                                                       ("rl", 1), ("rl", 2)]
    assert all(np.isfinite(v) for r in rows for v in r.values() if isinstance(v, float))
    assert 1 <= max(r["compiled_programs"] for r in rows if r["stage"] == "rl") <= 4
    assert (workdir / "model" / "config.json").exists()        # the checkpoint's files, recorded
    from o1jax.experiment import load_problems
    from o1jax.policy import from_workdir
    from o1jax.workdir import load_config
    assert from_workdir(workdir).prompt.image_patch == (14, 2)   # images at their own sizes
    shapes = {p["image"].shape for p in load_problems(load_config(workdir), workdir, "test", 4)}
    assert shapes == {(56, 84, 3), (112, 56, 3), (56, 56, 3)}   # as the processor sizes them

    _run("o1jax.export", f"--workdir={workdir}", f"--out={out}")
    exported = json.loads((out / "config.json").read_text())
    assert exported["vision_start_token_id"] == hf_fixtures.VL_CHAT_IDS["<|vision_start|>"]
    question, image = "How many sides has it?", str(data / "test0.png")   # 100 x 45
    ours = _run("o1jax.generate", "--model", str(workdir), "--image", image, "--prompt",
                question, "--greedy", "--max-new-tokens", "12")
    assert len(ours.strip()) > 3          # a completion to compare, not an empty one
    assert ours == _hf_greedy(str(out), question, image, 12) + "\n"
