import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o1jax.config.blocks import ToolsConfig
from o1jax.models import Transformer, preset
from o1jax.models.transformer import positions_from_mask
from o1jax.rewards.sandbox import Limits
from o1jax.rollout import SamplingConfig, make_sampler, pad_prompts
from o1jax.rollout import tools
from o1jax.tokenizer import byte_tokenizer

PROMPTS = [[257, 49, 50, 43], [257, 55], [257, 104, 105, 32, 116, 104], [257, 50]]


def test_a_call_shows_the_program_output_or_its_error():
    limits = Limits(cpu_seconds=1, wall_seconds=2.0)
    assert tools.program_of("x <tool>print(23*7)</tool>") == "print(23*7)"
    assert tools.program_of("<tool>a</tool> <tool>print(1)</tool>") == "print(1)"
    outs = tools.tool_outputs(["print(23*7)", "print(1/0)", "", "while True: pass"], limits)
    assert outs[:3] == ["161", "error: ZeroDivisionError: division by zero", "error: no program"]
    assert outs[3] in ("cpu:", "timeout:")


def test_python_tool_runs_only_the_closed_rows_and_bounds_the_output():
    tok = byte_tokenizer()
    tool = tools.python_tool(tok, ToolsConfig(enabled=True, max_output_tokens=24))
    rows = [tok.encode("<tool>print(6*7)</tool>", False),
            tok.encode("<tool>print('x' * 1000)</tool>", False), tok.encode("hi", False)]
    width = max(map(len, rows))
    tokens = np.array([r + [tok.pad_id] * (width - len(r)) for r in rows], np.int32)
    out, lengths = tool.run(tokens, np.array([True, True, False]))
    assert tok.decode(out[0, :lengths[0]].tolist()) == "<output>42</output>"
    assert lengths[1] == 24 and tok.decode(out[1, :24].tolist()).endswith("x</output>")
    assert lengths[2] == 0


def _greedy_reference(model, params, prompt, n, close, output, max_calls):
    """A plain loop of full forwards: greedy tokens, with ``output`` written after each of the
    first ``max_calls`` times the policy writes ``close``; and which tokens the policy wrote."""
    seq, written, calls, queue = list(prompt), [], 0, []
    width = 16 + n       # right padding: causal attention never reads it
    forward = jax.jit(lambda t, m: model.apply(params, t, positions_from_mask(m), m)[0])
    for _ in range(n):
        if queue:
            seq.append(queue.pop(0))
            written.append(False)
            continue
        t = jnp.asarray([seq + [0] * (width - len(seq))], jnp.int32)
        m = jnp.arange(width)[None] < len(seq)
        seq.append(int(jnp.argmax(forward(t, m)[0, len(seq) - 1])))
        written.append(True)
        if seq[-1] == close and calls < max_calls and len(written) < n:
            calls, queue = calls + 1, list(output)
    return seq[len(prompt):], written, calls


@pytest.mark.parametrize("max_calls", [1, 3])
def test_tool_output_is_written_into_the_row_and_masked_out_of_its_actions(max_calls):
    model = Transformer(preset("tiny", vocab_size=300))
    params = model.init(jax.random.key(0))
    tokens, mask = pad_prompts(PROMPTS, pad_id=0)
    n = 24
    plain = make_sampler(model, SamplingConfig(n, greedy=True))(params, tokens, mask,
                                                               jax.random.key(1))
    # the "close marker": the token the greedy responses write most often (a tiny random model
    # repeats itself); the output holds it too, which must not count as a call
    resp = np.asarray(plain.tokens)[:, tokens.shape[1]:]
    close = int(np.bincount(resp.ravel()).argmax())
    output = [5, close]

    def run(toks, closed):
        out = np.zeros((len(closed), 4), np.int32)
        out[:, :2] = output
        return out, np.where(closed, 2, 0).astype(np.int32)

    tool = tools.ToolCalls((close,), max_calls, 4, run)
    r = make_sampler(model, SamplingConfig(n, greedy=True, tools=tool))(params, tokens, mask,
                                                                          jax.random.key(1))
    p = tokens.shape[1]
    total_calls = 0
    for i, prompt in enumerate(PROMPTS):
        want, written, calls = _greedy_reference(model, params, prompt, n, close, output,
                                                 max_calls)
        np.testing.assert_array_equal(np.asarray(r.tokens)[i, p:], want)
        np.testing.assert_array_equal(np.asarray(r.response_mask)[i, p:], written)
        assert np.asarray(r.mask)[i, p:].all()          # the model attends to the output
        assert np.all(np.asarray(r.logprobs)[i, p:][~np.asarray(written)] == 0)
        assert int(r.tool_calls[i]) == calls
        total_calls += calls
    assert np.asarray(r.tool_calls).max() == max_calls      # a row reaches the cap


def test_budget_forcing_and_tools_are_refused_together():
    from o1jax.rollout.forcing import BudgetForcing
    tool = tools.ToolCalls((1,), 1, 4, lambda t, c: None)
    with pytest.raises(ValueError, match="one at a time"):
        SamplingConfig(16, tools=tool, forcing=BudgetForcing(2, 8, (3,), (4,)))


def test_a_tiny_output_budget_is_refused():
    with pytest.raises(ValueError, match="max_output_tokens=4"):
        tools.python_tool(byte_tokenizer(), ToolsConfig(enabled=True, max_output_tokens=4))


def test_tool_calls_on_rows_split_over_devices_equal_one_device():
    from o1jax import sharding
    cfg_m = preset("tiny", num_heads=8, num_kv_heads=4, head_dim=8, vocab_size=300)
    single = Transformer(cfg_m)
    params = single.init(jax.random.key(0))
    tokens, mask = pad_prompts(PROMPTS * 2, pad_id=0)
    seen = []

    def run(toks, closed):
        seen.append(len(closed))
        out = np.zeros((len(closed), 3), np.int32)
        out[:, 0] = toks[:, 0] % 7 + 1       # depends on the row: rows must not be mixed up
        return out, np.where(closed, 1, 0).astype(np.int32)

    tool = tools.ToolCalls((11,), 2, 3, run)
    cfg = SamplingConfig(16, temperature=1.0, num_samples=2, tools=tool)
    ref = jax.block_until_ready(make_sampler(single, cfg)(params, tokens, mask,
                                                          jax.random.key(2)))
    seen.clear()
    model = Transformer(cfg_m, mesh=sharding.make_mesh((8, 1, 1)))
    r = jax.block_until_ready(make_sampler(model, cfg)(
        jax.device_put(params, model.shardings()), tokens, mask, jax.random.key(2)))
    assert int(np.asarray(ref.tool_calls).sum()) > 0
    assert set(seen) == {2}           # each device's callback holds its own 2 rows
    for a, b in zip(ref, r):
        if a is not None:
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5)
