"""PPO on GSM8K with Qwen2.5-1.5B-Instruct on one 8xH100 node (or several with SLURM).

    python scripts/slurm.py --nodes 1 --gpus-per-node 8 --config configs/gsm8k_h100x8.py \\
        --workdir /shared/runs/gsm8k15 --submit
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    c = base.get_config()
    c.hardware = "h100x8"
    c.mesh_shape = (1, -1, 1)        # FSDP over the 8 GPUs (NVLink all-gathers are cheap)
    c.model.preset = "qwen2.5-1.5b"
    c.model.hf_path = "/data/Qwen2.5-1.5B-Instruct"
    c.model.overrides = ml_collections.ConfigDict({"dtype": "bfloat16", "remat": True,
                                                   "max_seq_len": 2048})

    c.data.task = "gsm8k"
    c.data.manual_dir = "/data/grade-school-math/data"
    c.data.max_prompt_len = 256
    c.data.template = base.REASONING_TEMPLATE

    c.sft.num_steps = 0

    c.rl.algorithm = "ppo"
    c.rl.num_iterations = 300
    c.rl.batch_prompts = 128
    c.rl.group_size = 4              # 512 sequences per iteration
    c.rl.max_new_tokens = 768
    c.rl.epochs = 1
    c.rl.minibatches = 8             # 64 sequences per optimizer step
    c.rl.micro_batch = 16            # 2 sequences per GPU per forward/backward
    c.rl.vocab_chunk = 8192
    c.rl.policy_lr = 1e-6            # veRL's defaults: critic several times the actor
    c.rl.value_lr = 5e-6
    c.rl.gamma = 1.0
    c.rl.lam = 1.0
    c.rl.kl_coef = 0.001
    c.rl.rewards = ml_collections.ConfigDict({"correctness": 1.0})

    c.eval.num_examples = 1319
    c.eval.max_new_tokens = 768
    c.eval.maj_k = 16
    c.eval.batch_prompts = 128

    c.checkpoint.every = 20
    c.checkpoint.keep = 3
    return c
