"""GRPO on Geometry3K with Qwen2.5-VL-3B-Instruct on a TPU v5p-8 (4 chips), veRL's
``geo3k`` recipe in one compiled program per image bucket: each figure is read at the size the
checkpoint's processor gives it (aspect ratio kept, at most 448 image tokens: max_pixels
below), a batch padded to one of four image-token capacities up to ``data.max_prompt_len``;
the vision tower runs once per prompt. Prompts are the checkpoint's chat template, the figure
between its vision markers where the problem's "<image>" puts it.

Data: Geometry3K in its common layout (hiyouga/geometry3k's parquet files, or JSONL): a
``problem`` (with a literal "<image>" where the figure goes, else before the text), an
``answer``, and ``images`` (bytes or paths). The answer checker is the LaTeX one (math-verify).
Without the checkpoint directory (planning on a laptop) the preset's shapes stand in.

    python scripts/tpu.py train --name geo --zone us-east5-a \\
        --config configs/geo3k_qwen25vl_tpu.py --workdir gs://BUCKET/runs/geo3k
    python -m o1jax.plan --config configs/geo3k_qwen25vl_tpu.py      # memory, before renting
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    c = base.get_config()
    c.hardware = "v5p-8"
    c.mesh_shape = (1, -1, 1)         # FSDP over the 4 chips: 3.75B parameters
    c.model.preset = "qwen2.5-vl-3b"  # shapes, for abstract checks; weights come from hf_path
    c.model.hf_path = "/data/Qwen2.5-VL-3B-Instruct"
    c.model.overrides = ml_collections.ConfigDict({"dtype": "bfloat16", "remat": True,
                                                   "max_seq_len": 2048,
                                                   # a figure of at most 448 image tokens
                                                   "vision": {"min_pixels": 56 * 56,
                                                              "max_pixels": 448 * 28 * 28}})

    c.data.task = "image_qa"
    c.data.train_path = "/data/geometry3k/train.parquet"
    c.data.test_path = "/data/geometry3k/test.parquet"
    c.data.max_prompt_len = 512       # the figure's tokens (at most 511) and the problem
    c.data.template = base.REASONING_TEMPLATE
    c.data.use_chat_template = True   # the instruct model's own turns (a system prompt too)

    c.sft.num_steps = 0               # the instruct model answers in the format

    c.rl.algorithm = "grpo"
    c.rl.num_iterations = 300         # ~15 epochs of 2.1k problems (veRL's geo3k: 15)
    c.rl.batch_prompts = 128
    c.rl.group_size = 5               # veRL geo3k: n=5
    c.rl.max_new_tokens = 1024
    c.rl.temperature = 1.0
    c.rl.epochs = 1
    c.rl.minibatches = 4              # 160 sequences per optimizer step
    c.rl.micro_batch = 8              # 2 sequences per chip per forward/backward (plan: fits;
                                      # at 40 the compiler needs 221 GB of temporaries)
    c.rl.vocab_chunk = 8192           # log-probs over 8k of the 152k vocabulary at a time
    c.rl.length_buckets = 4           # padding-free update: most answers are short
    c.rl.policy_lr = 1e-6
    c.rl.kl_coef = 0.01               # veRL geo3k: low-variance KL to the reference, 0.01
    c.rl.kl_estimator = "k3"
    c.rl.loss_agg = "token_mean"
    c.rl.rewards = ml_collections.ConfigDict({"correctness": 1.0, "format": 0.1})

    c.eval.num_examples = 601         # the whole Geometry3K test split
    c.eval.max_new_tokens = 1024
    c.eval.maj_k = 8
    c.eval.batch_prompts = 64

    c.checkpoint.every = 25
    c.checkpoint.keep = 3
    return c
