"""DAPO's dynamic sampling and over-long shaping against plain-Python versions of the paper's
rules."""

import jax.numpy as jnp
import numpy as np
import pytest

from o1jax.rl import dapo


def _choose_reference(rewards, batch):
    informative = [i for i, g in enumerate(rewards) if max(g) - min(g) > 1e-6]
    rest = [i for i in range(len(rewards)) if i not in informative]
    groups = (informative + rest)[:batch]
    return groups, [i in informative for i in groups], len(informative)


@pytest.mark.parametrize("seed", range(5))
def test_informative_groups_fill_the_batch_first(seed):
    rng = np.random.default_rng(seed)
    rewards = rng.integers(0, 2, (12, 4)).astype(np.float32)   # many all-0 / all-1 groups
    for batch in (3, 6, 12):
        got = dapo.choose_groups(jnp.asarray(rewards), batch)
        groups, keep, n = _choose_reference(rewards.tolist(), batch)
        assert np.asarray(got.groups).tolist() == groups
        assert np.asarray(got.keep).tolist() == keep
        assert int(got.informative) == n


def test_too_few_informative_groups_are_completed_with_masked_ones():
    rewards = jnp.asarray([[1, 1], [0, 1], [0, 0], [1, 1]], jnp.float32)
    got = dapo.choose_groups(rewards, 3)
    assert np.asarray(got.groups).tolist() == [1, 0, 2]
    assert np.asarray(got.keep).tolist() == [True, False, False]


def test_overlong_penalty_is_the_papers_piecewise_rule():
    max_tokens, window = 100, 20
    lengths = np.arange(0, 101)
    want = [0.0 if n <= 80 else (80 - n) / 20 for n in lengths]
    np.testing.assert_allclose(dapo.overlong_penalty(jnp.asarray(lengths), max_tokens, window),
                               want, atol=1e-6)
    with pytest.raises(ValueError, match="over-long window"):
        dapo.overlong_penalty(jnp.asarray(lengths), max_tokens, 0)


def test_truncated_rows_leave_the_loss():
    mask = jnp.ones((3, 4), bool)
    out = dapo.truncation_mask(jnp.asarray([True, False, True]), mask)
    assert np.asarray(out).sum(axis=1).tolist() == [4, 0, 4]
