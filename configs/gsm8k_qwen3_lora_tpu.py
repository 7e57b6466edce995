"""GRPO with LoRA on GSM8K with Qwen3-8B on a TPU v5e-8 (8 chips, 16 GiB each): rank-32 adapters
on every projection train, the base stays frozen and is the KL reference (no second copy), so
only the adapters have optimizer moments. Full fine-tuning of the same model does not fit this
slice (docs/hardware.md has both plans).

    python scripts/tpu.py train --name o1-q3 --zone us-central1-a --config configs/gsm8k_qwen3_lora_tpu.py \\
        --workdir gs://BUCKET/runs/gsm8k_q3 --overrides="--config.model.hf_path=/data/Qwen3-8B"
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    c = base.get_config()
    c.hardware = "v5e-8"
    c.mesh_shape = (1, -1, 1)        # FSDP over the 8 chips
    c.model.preset = "qwen3-8b"      # shapes, for abstract checks; weights come from hf_path
    c.model.hf_path = "/data/Qwen3-8B"
    c.model.overrides = ml_collections.ConfigDict({"dtype": "bfloat16", "remat": True,
                                                   "max_seq_len": 2048})

    c.data.task = "gsm8k"
    c.data.manual_dir = "/data/grade-school-math/data"
    c.data.max_prompt_len = 256
    c.data.template = base.REASONING_TEMPLATE
    c.data.use_chat_template = True   # the user's turn of Qwen3's template: it thinks first

    c.sft.num_steps = 0

    c.rl.algorithm = "grpo"
    c.rl.num_iterations = 300
    c.rl.batch_prompts = 16          # x 8 samples = 128 sequences per iteration (32 prompts
    c.rl.group_size = 8              # plan to 16.5 GiB a chip: the KV cache alone is 5.6 GiB)
    c.rl.max_new_tokens = 1024
    c.rl.epochs = 1
    c.rl.minibatches = 2             # 64 sequences per optimizer step
    c.rl.micro_batch = 8             # 1 sequence per chip per forward/backward
    c.rl.vocab_chunk = 8192
    c.rl.policy_lr = 1e-5            # LoRA takes a larger step than full fine-tuning's 1e-6
    c.rl.clip_high = 0.28
    c.rl.kl_coef = 0.001             # the reference is the frozen base: free
    c.rl.rewards = ml_collections.ConfigDict({"correctness": 1.0, "format": 0.1})
    c.rl.lora_rank = 32
    c.rl.lora_alpha = 64.0

    c.eval.num_examples = 1319
    c.eval.max_new_tokens = 1024
    c.eval.maj_k = 8
    c.eval.batch_prompts = 64

    c.checkpoint.every = 25
    c.checkpoint.keep = 3
    return c
