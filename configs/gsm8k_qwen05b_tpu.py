"""GRPO on GSM8K with Qwen2.5-0.5B-Instruct on a TPU v5e-8 (8 chips; sized by o1jax.plan).

    python scripts/tpu.py train --name o1 --zone us-central2-b --config configs/gsm8k_qwen05b_tpu.py \\
        --workdir gs://BUCKET/runs/gsm8k --overrides="--config.model.hf_path=/data/Qwen2.5-0.5B-Instruct"
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    c = base.get_config()
    c.hardware = "v5e-8"
    c.mesh_shape = (1, -1, 1)        # pure FSDP over every chip: 0.5B needs no tensor parallelism
    c.model.preset = "qwen2.5-0.5b"  # shapes, for abstract checks; weights come from hf_path
    c.model.hf_path = "/data/Qwen2.5-0.5B-Instruct"   # local HF download (config.json, weights)
    c.model.overrides = ml_collections.ConfigDict({"dtype": "bfloat16", "remat": True,
                                                   "max_seq_len": 1024})

    c.data.task = "gsm8k"
    c.data.manual_dir = "/data/grade-school-math/data"   # train.jsonl, test.jsonl
    c.data.max_prompt_len = 256
    c.data.template = base.REASONING_TEMPLATE

    c.sft.num_steps = 0              # the instruct model already answers in the format

    c.rl.algorithm = "grpo"
    c.rl.num_iterations = 500
    c.rl.batch_prompts = 64          # x 8 samples = 512 sequences per iteration
    c.rl.group_size = 8
    c.rl.max_new_tokens = 512
    c.rl.temperature = 1.0
    c.rl.epochs = 1
    c.rl.minibatches = 8             # 64 sequences per optimizer step
    c.rl.policy_lr = 1e-6
    c.rl.max_grad_norm = 1.0
    c.rl.clip_low = 0.2
    c.rl.clip_high = 0.28            # clip-higher (DAPO)
    c.rl.kl_coef = 0.0               # no reference term (TRL / Open-Reasoner-Zero default)
    c.rl.loss_agg = "token_mean"
    c.rl.rewards = ml_collections.ConfigDict({"correctness": 1.0, "format": 0.1})

    c.eval.num_examples = 1319       # the whole GSM8K test split
    c.eval.max_new_tokens = 512
    c.eval.maj_k = 16
    c.eval.batch_prompts = 64

    c.checkpoint.every = 25          # ~10 min of v4-8 time between saves
    c.checkpoint.keep = 3
    return c
