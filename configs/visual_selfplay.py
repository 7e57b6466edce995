"""Cross-modal self-play on rendered counting scenes: the policy (configs/visual_grpo.py's VLM)
proposes problems as text, a scene specification and a question ("scene: red circle 0 1;
blue square 2 3 ? red objects"); the referee parses and bounds it, draws the picture and
computes the answer from the specification (o1jax/selfplay/scenes.py); the policy then solves
the picture it cannot read the specification of. Proposer reward = validity x learnability,
solver reward = correctness; one compiled program per iteration.

The proposer's prompt shows one example problem: its picture and its specification. SFT is
visual_grpo's with a quarter of its rows proposer demonstrations. The comparison at equal
training FLOPs (README): start both from one SFT policy with
``--config.init_from=SFT_WORKDIR:sft`` (the role warm-up, ``sft.num_steps``, counts in the
FLOPs), and ``--config.selfplay.enabled=False`` is GRPO on the fixed task distribution.

    python -m o1jax.train --config configs/visual_selfplay.py --workdir /tmp/visual_selfplay
"""

import ml_collections

from configs import visual_grpo


def get_config() -> ml_collections.ConfigDict:
    c = visual_grpo.get_config()
    c.sft.max_len = 176                 # proposer demonstrations: picture, example, new problem

    c.rl.loss_agg = "token_mean"        # rows the gate leaves out have no tokens to average
    c.rl.batch_prompts = 16             # solver problems an iteration, proposals included
    c.rl.minibatches = 2                # (16 x 8 solver + 8 proposer rows) / 2
    c.rl.micro_batch = 17

    c.selfplay.enabled = True
    c.selfplay.proposals = 8
    c.selfplay.examples = 1             # one picture and its specification
    c.selfplay.prompt_len = 112
    c.selfplay.proposal_tokens = 72
    c.selfplay.max_chars = 96
    c.selfplay.gate_low = 0.1
    c.selfplay.gate_high = 0.9
    return c
