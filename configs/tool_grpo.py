"""Tool calls that RL learns to make: 2-digit x 1-digit multiplication, which the demo's policy
gets wrong in its head (21.2% held-out greedy after PPO on the arithmetic demo), with a Python
interpreter the policy may call inside its rollout (o1jax/rollout/tools.py; the sandbox needs
bubblewrap: apt-get install bubblewrap).

The arithmetic demo's model trained from scratch: SFT on demonstrations of which a quarter call
the tool (``<tool>print(37*6)</tool>``, then the sandbox's ``<output>222</output>``, which SFT
does not train the policy to write) and the rest answer in one line; then GRPO, whose rollouts
run every call the policy closes and mask the outputs out of the loss; then the held-out split
with the tools on (and, for the comparison in docs/results.md, ``evaluate --tools off``).
Measured: SFT 14.1% -> GRPO 68.8% held-out greedy, calls in 97% of responses, 5.6 minutes.

    python -m o1jax.train --config configs/tool_grpo.py --workdir /tmp/tool_grpo
"""

import ml_collections

from configs import arithmetic_grpo


def get_config() -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config()
    c.model.overrides.max_seq_len = 96

    c.data.task = "multiplication"
    c.data.difficulty = 2             # 10-99 times 2-9: 720 questions, 65 of them held out
    c.data.num_train = 600
    c.data.num_test = 64
    c.data.slip_rate = 0.0

    c.sft.num_steps = 400
    c.sft.max_len = 80

    c.rl.num_iterations = 40
    c.rl.max_new_tokens = 64          # a call, its output and the answer: about 57 tokens

    c.tools.enabled = True
    c.tools.max_calls = 2
    c.tools.max_output_tokens = 24

    c.eval.num_examples = 64
    c.eval.max_new_tokens = 64
    c.eval.maj_k = 8
    c.eval.curve_points = 4
    c.checkpoint.every = 10
    return c
