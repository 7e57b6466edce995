"""Cross-modal self-play on rendered counting scenes and bar charts: the policy
(configs/visual_grpo.py's VLM) proposes problems as text, a picture's specification and a
question ("scene: red circle 0 1; blue square 2 3 ? red objects", "chart: 3 5 2 ? bar 2");
the referee parses and bounds it, draws the picture and computes the answer from the
specification (o1jax/selfplay/scenes.py); the policy then solves the picture it cannot read
the specification of. Proposer reward = validity x learnability, solver reward =
correctness; one compiled program per iteration.

The proposer's prompt shows one example problem: its specification and its picture. SFT is
visual_grpo's (800 steps, from scratch) with a quarter of its rows proposer demonstrations; a
150-step role warm-up of a visual_grpo SFT policy taught too little of the grammar (2.3% of
proposals valid, docs/results.md). The comparison at equal training FLOPs (docs/results.md):

    python -m o1jax.train --config configs/visual_selfplay.py --workdir W
    python scripts/selfplay_comparison.py --config configs/visual_selfplay.py --workdir W
"""

import ml_collections

from configs import visual_grpo


def get_config() -> ml_collections.ConfigDict:
    c = visual_grpo.get_config()
    c.data.task = "count_chart"         # counting scenes and bar charts, half each
    c.data.asks = ""                    # seed problems of every kind, as proposals may be
    c.data.max_prompt_len = 72          # <s>, a question of up to 53 tokens, 16 image tokens
    c.data.slip_rate = 0.0              # demonstrations that count right
    c.model.overrides.max_seq_len = 300   # proposer: prompt and proposal
    c.sft.max_len = 296                 # proposer demonstrations: example, picture, new problem

    # a colour-and-shape count's solution is 117 tokens (reads both grids), then the end
    c.rl.max_new_tokens = c.eval.max_new_tokens = 120
    c.rl.loss_agg = "token_mean"        # rows the gate leaves out have no tokens to average
    c.rl.batch_prompts = 16             # solver problems an iteration, proposals included
    c.rl.minibatches = 2                # (16 x 8 solver + 8 proposer rows) / 2
    # padding-free: the solver's rows (192 columns at most, most answers far shorter) no longer
    # run at the proposer's 300; an iteration computes about half the cells and takes 4 s, not
    # 11 (docs/performance.md). Micro-batches of 4 divide a minibatch with (68) and without (64)
    # the proposer's rows; on more than 4 data-parallel devices take --config.rl.micro_batch=0
    c.rl.micro_batch = 4
    c.rl.length_buckets = 6
    c.rl.num_iterations = 110           # the RL FLOPs 60 padded iterations took (1.55e13)

    c.selfplay.enabled = True
    c.selfplay.proposals = 8
    c.selfplay.examples = 1             # one picture and its specification
    c.selfplay.prompt_len = 168         # <s>, prefix, an example of up to 128 characters, image
    c.selfplay.proposal_tokens = 132    # max_chars and the stop token
    c.selfplay.max_chars = 128          # a scene of 5 objects (the hard split's level 2)
    c.selfplay.level_bonus = 1.0        # a level-2 picture pays x2 while the solver learns
    c.selfplay.gate_low = 0.1
    # the proposer favours scenes that lack what the question names (answer 0: 115 of 181
    # buffered scenes, against 12 of 88 held-out ones), and a solver trained on each
    # iteration's proposals at once learned to say 0 (held-out 59.0% -> 45.0%); trained only
    # from the buffer it kept SFT's accuracy but half its rows taught nothing (hard split 3.0
    # points below fixed-task RL on 2 seeds). So buffer draws are answer-balanced, proposals in
    # the gate train at once, and an answer-0 proposal earns the proposer nothing and trains
    # only once drawn from the buffer (hard split +1.0 and -1.0 points, docs/results.md)
    c.selfplay.buffer_balance = "answer"
    c.selfplay.train_fresh = True
    c.selfplay.zero_answer_weight = 0.0
    c.selfplay.gate_high = 0.9
    return c
