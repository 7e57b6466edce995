"""The whole pipeline (SFT, evaluation, PPO, evaluation) at toy sizes: about a minute on 2 CPU
cores; used by the tests.

    python -m o1jax.train --config configs/smoke.py --workdir /tmp/smoke
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    c = base.get_config()
    c.sft.num_steps = 4
    c.eval.num_examples = 8
    c.eval.curve_points = 0           # the train-time curve's evaluations: tests ask for them
    c.rl.num_iterations = 4
    return c
