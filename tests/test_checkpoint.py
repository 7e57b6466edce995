"""Checkpointer: a non-finite state is never written; restore skips what cannot be read."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from o1jax.checkpoint import Checkpointer, is_unreadable
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


def _saved(tmp_path, steps=(1, 2)):
    ckpt = Checkpointer(str(tmp_path / "c"), every=1, keep=5, async_save=False)
    for step in steps:
        ckpt.save(step, {"w": jnp.full((3,), float(step))}, {"step": step})
    ckpt.wait()
    return ckpt


def test_a_changed_state_layout_is_an_error_not_a_fresh_start(tmp_path):
    """A state whose layout changed (here a new leaf) must not restart from step 0, nor fall
    back to an older checkpoint."""
    ckpt = _saved(tmp_path)
    with pytest.raises(RuntimeError, match=r"c/2 does not read back into this run's state"):
        ckpt.restore_latest({"w": jnp.ones((3,)), "ref": jnp.ones((3,))})
    ckpt.close()


def test_a_partial_checkpoint_is_skipped_with_a_warning_naming_it(tmp_path, caplog):
    ckpt = _saved(tmp_path)
    for root, _, files in os.walk(tmp_path / "c" / "2" / "state" / "d"):
        for f in files:  # the array data of the latest save is gone
            os.remove(os.path.join(root, f))
    step, state, extra = ckpt.restore_latest({"w": jnp.ones((3,))})
    assert step == 1 and extra == {"step": 1}
    np.testing.assert_array_equal(np.asarray(state["w"]), np.ones(3))
    assert "checkpoint 2 in" in caplog.text and "unreadable" in caplog.text
    ckpt.close()


def test_every_checkpoint_unreadable_is_an_error(tmp_path):
    ckpt = _saved(tmp_path)
    for step in (1, 2):
        os.remove(tmp_path / "c" / str(step) / "extra" / "metadata")
    with pytest.raises(RuntimeError, match=r"every checkpoint in .* \(\[1, 2\]\) is unreadable"):
        ckpt.restore_latest({"w": jnp.ones((3,))})
    ckpt.close()


def test_other_restore_errors_stop_the_run(tmp_path, monkeypatch):
    """Permission or I/O errors are not 'unreadable checkpoints': skipping them would restart a
    run from an older step (or from scratch) without a word."""
    ckpt = _saved(tmp_path)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "c" / "2"))
    monkeypatch.setattr(ckpt.manager, "restore", denied)
    with pytest.raises(PermissionError):
        ckpt.restore_latest({"w": jnp.ones((3,))})
    assert not is_unreadable(PermissionError("x"))
    assert not is_unreadable(ValueError("Requested shape: (11,) is not compatible"))
    assert is_unreadable(ValueError('NOT_FOUND: Error opening "zarr" driver'))
    assert is_unreadable(FileNotFoundError("metadata"))
