"""Checkpointer: a non-finite state is never written; restore skips what cannot be read."""

import os

import jax.numpy as jnp
import numpy as np

from o1jax.checkpoint import Checkpointer
from o1jax.optim import tree_all_finite


def test_nonfinite_state_is_never_checkpointed(tmp_path):
    ckpt = Checkpointer(str(tmp_path / "c"), every=1, keep=2, async_save=False)
    good = {"w": jnp.ones((3,)), "step": jnp.zeros((), jnp.int32)}
    bad = {"w": jnp.array([1.0, jnp.nan, 2.0]), "step": jnp.zeros((), jnp.int32)}
    assert bool(tree_all_finite(good)) and not bool(tree_all_finite(bad))
    assert ckpt.save(1, good, {"pipeline": {"epoch": 0}})
    assert not ckpt.save(2, bad, {"pipeline": {"epoch": 0}}, force=True)
    ckpt.wait()
    assert ckpt.steps() == [1]
    step, state, extra = ckpt.restore_latest(good)
    assert step == 1 and extra == {"pipeline": {"epoch": 0}}
    np.testing.assert_array_equal(np.asarray(state["w"]), np.ones(3))
    ckpt.close()


def test_cadence_and_keep(tmp_path):
    ckpt = Checkpointer(str(tmp_path / "c"), every=2, keep=2, async_save=True)
    state = {"w": jnp.ones((2,))}
    saved = [ckpt.save(s, state, {}) for s in range(1, 8)]
    ckpt.wait()
    assert saved == [False, True, False, True, False, True, False]
    assert ckpt.steps() == [4, 6]
    assert os.path.isdir(tmp_path / "c" / "6")
    ckpt.close()


def test_no_readable_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    """A state whose layout changed (here a new leaf) must not silently restart from step 0."""
    import pytest
    ckpt = Checkpointer(str(tmp_path / "c"), every=1, keep=2, async_save=False)
    ckpt.save(1, {"w": jnp.ones((3,))}, {})
    ckpt.wait()
    with pytest.raises(RuntimeError, match="none of the checkpoints \\[1\\]"):
        ckpt.restore_latest({"w": jnp.ones((3,)), "ref": jnp.ones((3,))})
    ckpt.close()
