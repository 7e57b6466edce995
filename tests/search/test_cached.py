"""The search rows' caches: copying rows by broadcast equals taking them by index."""

import jax
import jax.numpy as jnp
import numpy as np

from o1jax.rollout import SamplingConfig, decode_params, pad_prompts
from o1jax.search import cached
from tests.search.test_beam import random_models


def test_repeat_rows_equals_take_rows_of_the_repeated_indices():
    model, params, tok, verifier = random_models()
    tokens, mask = pad_prompts([[257, 50], [257, 51, 52], [257]], tok.pad_id, 8)
    rows = cached.start(model, decode_params(model, params), verifier.model,
                        decode_params(verifier.model, verifier.params), tokens, mask, 24,
                        SamplingConfig(8, 1.0, pad_id=tok.pad_id), "value", 1)
    got = cached.repeat_rows(model, verifier.model, rows, 4)
    want = cached.take_rows(rows, jnp.repeat(jnp.arange(3), 4))
    assert got.logp.shape[0] == 12
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # not a copy of row 0 everywhere: the three prompts' caches differ
    assert not np.array_equal(np.asarray(got.policy["mask"][0]), np.asarray(got.policy["mask"][4]))
