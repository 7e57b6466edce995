"""Self-play on Countdown written as a stream of search: configs/thinking.py's model, SFT and
GRPO, with the RL stage replaced by self-play on its task (o1jax/selfplay/search_problems.py).

The proposer writes ``Use a, b, c to make T`` with 3 to 5 numbers (levels 1-3; training is at
level 1, the hard split at level 2); the referee checks it exactly under Countdown's rules
(numbers 1..20, target 10..99, not one move away, solvable, not in the held-out partition by
its split key, not a duplicate). Proposer reward = validity x learnability x (1 + level_bonus x
levels above 1): a harder problem pays more only while the solver still learns from it. A
quarter of SFT's rows are proposer demonstrations, a quarter of those writing a 4-number
problem, so the proposer knows the hard form exists. Each iteration logs
``proposer/accepted_level_K``, the share of accepted proposals at level K.

    python -m o1jax.train --config configs/thinking_selfplay.py --workdir /tmp/thinking_sp

``--config.selfplay.enabled=False`` gives the fixed-data comparison: SFT without proposer
demonstrations, then GRPO on the task's own problems with the same settings.
Proposals that state a solution take ``--config.selfplay.proposal_form=expression
--config.selfplay.max_chars=48 --config.selfplay.proposal_tokens=48`` (the form ``listed``
with 72 for both; docs/selfplay.md; measured against this config in docs/results.md,
"Self-play with proposals that state a solution").
"""

import ml_collections

from configs import thinking


def get_config() -> ml_collections.ConfigDict:
    c = thinking.get_config()
    # a 5-number proposal ("Use 12, 12, 12, 12, 12 to make 100") is 36 prompt tokens
    c.data.max_prompt_len = 40

    c.selfplay.enabled = True           # 8 of the 16 problems an iteration are proposals
    c.selfplay.prompt_len = 96          # the prefix and two examples of up to 34 characters
    c.selfplay.proposal_tokens = 40
    c.selfplay.level_bonus = 1.0        # level 2 pays x2, level 3 x3 (learnable problems)
    return c
