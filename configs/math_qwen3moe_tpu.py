"""GRPO on MATH with Qwen3-30B-A3B (mixture of experts: 128 experts, 8 per token, 3.3B active
parameters of 30.5B) on a TPU v5p-64 (32 chips): the experts split over the 8 fsdp devices
(expert parallelism, the logical axis "experts"), heads and expert hidden units over 4.

    python scripts/tpu.py create --name o1-moe --zone us-east5-a --type v5p-64 --queued
    python scripts/tpu.py train  --name o1-moe --zone us-east5-a --config configs/math_qwen3moe_tpu.py \\
        --workdir gs://BUCKET/runs/math_moe
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    c = base.get_config()
    c.hardware = "v5p-64"
    c.mesh_shape = (1, 8, 4)
    c.model.preset = "qwen3-30b-a3b"
    c.model.hf_path = "/data/Qwen3-30B-A3B"
    c.model.overrides = ml_collections.ConfigDict({"dtype": "bfloat16", "remat": True,
                                                   "max_seq_len": 4096})

    c.data.task = "math"
    c.data.manual_dir = "/data/MATH"
    c.data.max_prompt_len = 512
    c.data.template = base.REASONING_TEMPLATE
    c.data.use_chat_template = True

    c.sft.num_steps = 0

    c.rl.algorithm = "grpo"
    c.rl.importance_level = "sequence"   # GSPO: the Qwen3 team's ratio for mixtures of experts
    c.rl.clip_low = 3e-4                 # GSPO's clip ranges (its paper's)
    c.rl.clip_high = 4e-4
    c.rl.num_iterations = 500
    c.rl.batch_prompts = 64              # x 16 samples = 1024 sequences per iteration
    c.rl.group_size = 16
    c.rl.max_new_tokens = 3072
    c.rl.epochs = 1
    c.rl.minibatches = 8                 # 128 sequences per optimizer step
    c.rl.micro_batch = 8
    c.rl.vocab_chunk = 8192
    c.rl.policy_lr = 1e-6
    c.rl.kl_coef = 0.0                   # no reference: 30B more parameters kept for nothing
    c.rl.loss_agg = "seq_mean_token_mean"
    c.rl.rewards = ml_collections.ConfigDict({"correctness": 1.0})

    c.eval.num_examples = 500
    c.eval.max_new_tokens = 3072
    c.eval.maj_k = 16
    c.eval.batch_prompts = 64

    c.checkpoint.every = 10
    c.checkpoint.keep = 2
    return c
