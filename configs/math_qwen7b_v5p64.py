"""Dr. GRPO on MATH with Qwen2.5-7B on a TPU v5p-64 (32 chips): FSDP x tensor parallelism.

    python scripts/tpu.py create --name o1-7b --zone us-east5-a --type v5p-64 --queued
    python scripts/tpu.py train  --name o1-7b --zone us-east5-a --config configs/math_qwen7b_v5p64.py \\
        --workdir gs://BUCKET/runs/math7b
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    c = base.get_config()
    c.hardware = "v5p-64"
    c.mesh_shape = (1, 8, 4)         # 32 chips: params split 8 ways (FSDP) x 4 (heads, MLP)
    c.model.preset = "qwen2.5-7b"
    c.model.hf_path = "/data/Qwen2.5-7B"
    c.model.overrides = ml_collections.ConfigDict({"dtype": "bfloat16", "remat": True,
                                                   "max_seq_len": 4096})

    c.data.task = "math"
    c.data.manual_dir = "/data/MATH"  # the official MATH/{train,test}/<subject>/*.json
    c.data.max_prompt_len = 512
    c.data.template = base.REASONING_TEMPLATE

    c.sft.num_steps = 0

    c.rl.algorithm = "dr_grpo"        # Dr. GRPO: no std normalisation ...
    c.rl.num_iterations = 1000
    c.rl.batch_prompts = 128         # x 16 samples = 2048 sequences per iteration
    c.rl.group_size = 16
    c.rl.max_new_tokens = 3072
    c.rl.temperature = 1.0
    c.rl.epochs = 1
    c.rl.minibatches = 16            # 128 sequences per optimizer step
    c.rl.micro_batch = 16            # 2 sequences per chip per forward/backward (plan: fits)
    c.rl.vocab_chunk = 8192          # log-probs over 8k of the 152k vocabulary at a time
    c.rl.policy_lr = 1e-6
    c.rl.clip_high = 0.28
    c.rl.kl_coef = 0.001
    c.rl.kl_estimator = "k3"
    c.rl.loss_agg = "seq_mean_token_sum"   # ... and no length normalisation
    c.rl.rewards = ml_collections.ConfigDict({"correctness": 1.0})

    c.eval.num_examples = 500        # MATH-500 sized held-out slice
    c.eval.max_new_tokens = 3072
    c.eval.maj_k = 16
    c.eval.batch_prompts = 128

    c.checkpoint.every = 10
    c.checkpoint.keep = 2
    return c
