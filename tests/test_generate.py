"""The generate CLI against transformers' generate on the same tiny checkpoints."""

import json
import os
import subprocess
import sys

import pytest
import torch
import transformers

from o1jax import generate
from o1jax.tokenizer import Tokenizer

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


@pytest.mark.parametrize("prompt", ["Q: 7*8?", "a"])
def test_cli_greedy_equals_transformers_qwen2(qwen2_dir, prompt, capsys):
    expected, _ = _hf_greedy(qwen2_dir, prompt, 20)
    assert generate.main(["--model", qwen2_dir, "--prompt", prompt, "--max-new-tokens", "20",
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
