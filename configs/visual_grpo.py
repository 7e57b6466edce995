"""A small vision-language model from scratch on rendered counting scenes: SFT on a sloppy
counter's worked counts, then GRPO, then a held-out evaluation (greedy and maj@k) of images it
never saw.

The policy reads a 32 x 32 image through a ViT (patches of 4 pixels, 2 x 2 merged: 16 image
tokens, one per cell of the scene's 4 x 4 grid), placed right before the answer, and answers
"How many red objects are in the image?" by naming what it counts ("R*": red, any shape),
reading the scene's colours into a grid (16 cells row by row, "rr........b....y"), marking the
cells that match ("yy.............."), writing running counts ("1222222222222222") and boxing
the count (o1jax.data.visual.count_answer). The answer comes from the scene's specification,
never from a model; the demonstrations overlook each matching object with probability 0.6
(``data.slip_rate``), so SFT learns to overlook and GRPO, rewarded by the true count, to see.

    python -m o1jax.train --config configs/visual_grpo.py --workdir /tmp/visual
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    c = base.get_config()
    c.model.overrides = ml_collections.ConfigDict({
        "vocab_size": 320, "hidden_size": 128, "num_layers": 4, "num_heads": 4,
        "num_kv_heads": 2, "head_dim": 32, "mlp_dim": 384, "max_seq_len": 168,
        "vision": {"image_size": 32, "patch_size": 4, "hidden_size": 64, "num_layers": 2,
                   "num_heads": 4, "mlp_dim": 128, "merge_size": 2}})

    c.data.task = "count"
    c.data.difficulty = 1             # 1-4 objects; the hard split has up to 6
    c.data.num_train = 6000
    c.data.num_test = 200
    c.data.max_prompt_len = 64        # <s>, the question, 16 image tokens
    c.data.template = "{question}\n<image>"
    c.data.asks = "colour"            # colour questions (docs/results.md: why not shapes yet)
    c.data.slip_rate = 0.6            # the demonstrator overlooks 60% of the matching objects

    c.sft.num_steps = 800
    c.sft.batch_size = 32
    c.sft.max_len = 160
    c.sft.lr = 3e-3
    c.sft.warmup_steps = 30

    c.rl.algorithm = "grpo"
    c.rl.num_iterations = 60
    c.rl.batch_prompts = 16
    c.rl.group_size = 8
    c.rl.max_new_tokens = 100         # solutions are 92 tokens and an end
    c.rl.epochs = 1
    c.rl.minibatches = 2
    c.rl.micro_batch = 16
    c.rl.length_buckets = 5           # as measured (every answer is 92 tokens: one bucket serves)
    c.rl.policy_lr = 6e-5
    c.rl.kl_coef = 0.0
    c.rl.rewards = ml_collections.ConfigDict({"correctness": 1.0})

    c.eval.num_examples = 200
    c.eval.max_new_tokens = 100
    c.eval.maj_k = 8
    c.eval.batch_prompts = 64
    c.eval.curve_points = 4

    c.checkpoint.every = 20
    return c
