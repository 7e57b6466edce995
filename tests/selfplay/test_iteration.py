"""The compiled self-play iteration: learnability, advantages per role against plain Python,
and one iteration end to end on a tiny model (stub referee and reward in the graph) whose
rewards, gate and metrics are recomputed from its outputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o1jax.models import Transformer, preset
from o1jax.rl.advantages import grouped_advantages
from o1jax.rl.config import RLConfig
from o1jax.run.rl import Programs
from o1jax.rl.state import init_state
from o1jax.selfplay.buffer import BUFFER_ID
from o1jax.selfplay.config import SelfPlayConfig
from o1jax.selfplay.iteration import (learnability, level_weight, make_selfplay_iteration,
                                      role_groups)
from o1jax.selfplay.problems import CODE, FEATURES
from o1jax.selfplay.referee import Verdicts

V, P, PP = 16, 4, 5
TARGET = 5
Q_CHARS = 8
Q = SelfPlayConfig(max_chars=Q_CHARS).question_bytes


@pytest.mark.parametrize("p, absolute_zero, r_zero", [
    (0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.5, 0.5, 1.0), (0.25, 0.75, 0.5), (0.875, 0.125, 0.25),
    (1 / 8, 7 / 8, 0.25)])
def test_learnability(p, absolute_zero, r_zero):
    assert float(learnability(jnp.float32(p), "absolute_zero")) == pytest.approx(absolute_zero)
    assert float(learnability(jnp.float32(p), "r_zero")) == pytest.approx(r_zero)


def _reference_advantages(solver, g, proposer, method):
    """Plain Python: per problem group for the solver, per role batch for the proposer."""
    def norm(xs):
        m = sum(xs) / len(xs)
        sd = (sum((x - m) ** 2 for x in xs) / len(xs)) ** 0.5
        return [(x - m) / (sd + 1e-6) for x in xs]
    out = []
    for i in range(0, len(solver), g):
        grp = solver[i:i + g]
        m = sum(grp) / g
        if method == "grpo":
            out += norm(grp)
        elif method == "dr_grpo":
            out += [x - m for x in grp]
        else:  # rloo
            out += [x - (sum(grp) - x) / (g - 1) for x in grp]
    return out, norm(proposer)


@pytest.mark.parametrize("method", ["grpo", "dr_grpo", "rloo"])
def test_advantages_per_role_match_plain_python(method):
    rng = np.random.RandomState(0)
    solver = rng.binomial(1, 0.4, 24).astype(np.float32).tolist()
    proposer = [0.0, 0.75, 0.5, 0.0, 0.125, 0.0]
    # the joint rows: the proposer's first, then the solver's
    adv = grouped_advantages(jnp.asarray(proposer + solver),
                             role_groups(len(proposer), len(solver), 4, method))
    rs, rp = _reference_advantages(solver, 4, proposer, method)
    np.testing.assert_allclose(np.asarray(adv), rp + rs, atol=1e-5)


LEVELS = np.array([0, 1, 2, 3])   # the stub's level of each proposal row
ANSWERS = np.array([1.0, 1.0, 0.0, 0.5])   # and its answer_magnitude (row 2 answers 0)


@pytest.mark.parametrize("level, train_level, bonus, weight", [
    (2, 1, 0.5, 1.5), (3, 1, 0.5, 2.0), (1, 1, 0.5, 1.0), (0, 1, 0.5, 1.0), (3, 1, 0.0, 1.0),
    (0, 2, 1.0, 1.0)])   # the arithmetic forms: level 0 under any training level
def test_level_weight(level, train_level, bonus, weight):
    assert float(level_weight(jnp.float32(level), train_level, bonus)) == weight


def stub_referee(roll):
    """Accepts a proposal whose first token is even; its problem is the prompt [1, 2, 3, t],
    its level ``LEVELS`` by row."""
    first = roll.tokens[:, PP]
    n = first.shape[0]
    status = jnp.where(first % 2 == 0, 0, CODE["malformed"]).astype(jnp.int32)
    tokens = jnp.stack([jnp.full(n, 1), jnp.full(n, 2), jnp.full(n, 3), first], 1)
    features = jnp.zeros((n, len(FEATURES))).at[:, FEATURES.index("level")].set(
        jnp.asarray(LEVELS[:n], jnp.float32)).at[:, FEATURES.index("answer_magnitude")].set(
        jnp.asarray(ANSWERS[:n], jnp.float32))
    return Verdicts(status, tokens.astype(jnp.int32), jnp.ones((n, P), bool),
                    features, jnp.zeros(3), jnp.full(n, -1, jnp.int32),
                    jnp.zeros((n, Q), jnp.uint8))


def stub_reward(roll, ids, questions):
    correct = (roll.tokens[:, P] == TARGET).astype(jnp.float32)
    return correct, {"reward/correctness": jnp.mean(correct)}, correct


def _batch(rng):
    """Two solver problems, a seed one (dataset row 3) and a buffer one, and 4 proposer
    prompts (their spare seed problems rows 0-3)."""
    return {"propose_tokens": rng.randint(1, V, (4, PP)).astype(np.int32),
            "propose_mask": np.ones((4, PP), bool),
            "solve_tokens": rng.randint(1, V, (2, P)).astype(np.int32),
            "solve_mask": np.ones((2, P), bool),
            "solve_ids": np.array([3, BUFFER_ID], np.int32),
            "solve_questions": np.zeros((2, Q), np.uint8),
            "spare_tokens": rng.randint(1, V, (4, P)).astype(np.int32),
            "spare_mask": np.ones((4, P), bool), "spare_ids": np.arange(4, dtype=np.int32),
            "spare_questions": np.zeros((4, Q), np.uint8)}


@pytest.mark.parametrize("train_fresh, zero_weight", [(True, 0.25), (False, 0.25), (True, 0.0)])
def test_one_compiled_iteration_wires_roles_gate_and_rewards(train_fresh, zero_weight):
    """The buffer problem (id -1 like a proposal's) is neither counted as proposed nor gated;
    the proposer's reward is validity x learnability x the level weight (training level 1,
    bonus 0.5: levels 0-3 weigh 1, 1, 1.5, 2) x ``zero_weight`` where the answer is 0 (row 2).
    Without ``train_fresh`` no proposal trains the solver in its own iteration, whatever its
    pass rate; at ``zero_weight`` 0 the answer-0 one does not either."""
    policy = Transformer(preset("tiny", vocab_size=V, max_seq_len=32))
    cfg = RLConfig(algorithm="grpo", batch_prompts=6, group_size=4, max_new_tokens=3,
                   minibatches=2, policy_lr=1e-3, kl_coef=0.0, loss_agg="token_mean")
    sp = SelfPlayConfig(enabled=True, proposals=4, prompt_len=PP, proposal_tokens=2,
                        gate_low=0.25, gate_high=0.75, max_chars=Q_CHARS, level_bonus=0.5,
                        train_fresh=train_fresh, zero_answer_weight=zero_weight)
    jitted, _ = make_selfplay_iteration(policy, cfg, sp, stub_referee, stub_reward, P,
                                        stop_ids=(0,), train_level=1)
    it = Programs(jitted)     # a compiled program refuses arguments of other types
    state = init_state(policy.init(jax.random.key(0)), cfg, jax.random.key(1))
    rng = np.random.RandomState(0)
    weighted, zeroed, learnable, zero_learnable = 0.0, 0.0, 0, 0
    for i in range(3):
        batch = _batch(rng)
        state, m, res = it(state, batch, jax.random.key(i))
        accepted = np.asarray(res["status"]) == 0
        rate = np.asarray(res["pass_rate"])
        weight = np.array([1.0, 1.0, 1.5 * zero_weight, 2.0])
        want_reward = np.where(accepted & (rate > 0) & (rate < 1), (1 - rate) * weight, 0.0)
        assert float(m["proposer/reward_mean"]) == pytest.approx(want_reward.mean(), abs=1e-6)
        if accepted.any():
            assert float(m["proposer/level"]) == pytest.approx(LEVELS[accepted].mean())
        weighted += float(np.sum(want_reward * (LEVELS > 1)))
        zeroed += float(np.sum(want_reward * (ANSWERS == 0)))
        assert float(m["proposer/accept_rate"]) == pytest.approx(accepted.mean())
        # accepted proposals outside [0.25, 0.75] leave the solver's batch; seed ones never
        assert float(m["solver/proposed_problems"]) == accepted.sum()
        in_gate = accepted & (rate >= 0.25) & (rate <= 0.75)
        learnable += int(in_gate.sum())
        zero_learnable += int((in_gate & (ANSWERS == 0)).sum())
        gated = accepted & ~(in_gate & train_fresh & ((ANSWERS != 0) | (zero_weight > 0)))
        assert float(m["solver/gated_out"]) == gated.sum()
        assert np.isfinite(float(m["policy_loss"])) and float(m["skipped_updates"]) == 0
    assert weighted > 0 or zero_weight == 0   # the bonus did weigh some learnable proposal
    assert zeroed > 0 or zero_weight == 0   # and the answer-0 weight another
    assert zero_learnable > 0  # the answer-0 proposal was in the gate (kept out at weight 0)
    assert learnable > 0       # and some proposal was in the gate (trains only if train_fresh)
    assert len(it) == 1
    assert int(state.step) == 3


def _run(steps=2, proposal_tokens=2, stop_ids=tuple(range(4)), **rl):
    policy = Transformer(preset("tiny", vocab_size=V, max_seq_len=40))
    cfg = RLConfig(**{**dict(algorithm="grpo", batch_prompts=6, group_size=4, max_new_tokens=12,
                             minibatches=2, policy_lr=1e-2, loss_agg="token_mean"), **rl})
    sp = SelfPlayConfig(enabled=True, proposals=4, prompt_len=PP, proposal_tokens=proposal_tokens,
                        gate_low=0.0, gate_high=1.0, max_chars=Q_CHARS)
    it, _ = make_selfplay_iteration(policy, cfg, sp, stub_referee, stub_reward, P,
                                    stop_ids=stop_ids)
    state = init_state(policy.init(jax.random.key(0)), cfg, jax.random.key(1))
    rng = np.random.RandomState(1)
    for i in range(steps):
        state, m, _ = it(state, _batch(rng), jax.random.key(i))
    return state, m


def test_kl_in_reward_reaches_the_selfplay_update():
    """rl.kl_in_reward: the k1 penalty is taken from both roles' rewards, so the update is not
    the one without any KL (which is what dropping it gave: no penalty and no loss term)."""
    with_kl, m = _run(kl_coef=1.0, kl_in_reward=True)
    without, _ = _run(kl_coef=0.0)
    assert float(m["kl"]) != 0.0
    moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(with_kl.policy),
                                                       jax.tree.leaves(without.policy))]
    assert any(moved)


def test_selfplay_length_buckets_train_padding_free_with_the_padded_losses():
    """rl.length_buckets in self-play: micro-batches run over fewer columns (the proposer's
    short rows and short responses), with the padded update's losses and parameters."""
    full_state, full = _run(steps=1, micro_batch=2, length_buckets=1)
    state, bucketed = _run(steps=1, micro_batch=2, length_buckets=3)
    assert float(full["update_token_fraction"]) == 1.0
    assert float(bucketed["update_token_fraction"]) < 0.9
    for name in ("policy_loss", "entropy", "grad_norm", "reward_mean"):
        np.testing.assert_allclose(bucketed[name], full[name], rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    for a, b in zip(jax.tree.leaves(state.policy), jax.tree.leaves(full_state.policy)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_solver_rows_narrower_than_the_proposer_rows_train_at_their_own_width():
    """Proposer rows wider than the solver's (a long proposer prompt, as the visual config's):
    padding-free, the solver rows run over their own width (P + 2 columns), not the first
    bucket past it, so the update computes the cells a plain count of the rows gives: one
    minibatch of 24 solver rows (6 columns) and 4 proposer rows (PP + 12 = 17), micro-batches
    of 4 grouped by length; with the padded update's losses and parameters."""
    kw = dict(steps=1, proposal_tokens=12, stop_ids=(), max_new_tokens=2, minibatches=1,
              micro_batch=4)
    full_state, full = _run(length_buckets=1, **kw)
    state, bucketed = _run(length_buckets=2, **kw)
    solver, proposer, width = 6 * 4, 4, PP + 12
    cells = solver * (P + 2) + proposer * width
    np.testing.assert_allclose(float(bucketed["update_token_fraction"]),
                               cells / ((solver + proposer) * width), rtol=1e-6)
    for name in ("policy_loss", "entropy", "grad_norm"):
        np.testing.assert_allclose(bucketed[name], full[name], rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    # Adam's first step is g / (|g| + eps) x lr: where a gradient is ~1e-9 (near eps) the
    # summation order moves it by a few percent of lr = 1e-2
    for a, b in zip(jax.tree.leaves(state.policy), jax.tree.leaves(full_state.policy)):
        np.testing.assert_allclose(a, b, atol=1e-4)
