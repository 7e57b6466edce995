"""Budget forcing (o1jax/rollout/forcing.py) inside the sampler, on policies that always write
one token, and ``force_tokens`` step by step over a scripted policy: each response compared
with the text the rule's description gives, written out by hand."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from o1jax.models import Transformer, preset
from o1jax.rollout import SamplingConfig, make_sampler, pad_prompts
from o1jax.rollout.forcing import BudgetForcing, force_tokens, init_forcing
from o1jax.tokenizer import byte_tokenizer, response_texts


def _model_that_always_writes(token: int):
    """A policy whose next token is ``token`` after any prefix: its layers are switched off
    and every embedding is one vector, so the final hidden state never changes, and the head
    gives ``token`` a margin of many nats over every other token."""
    model = Transformer(preset("tiny", vocab_size=320, max_seq_len=64, tie_embeddings=False))
    params = model.init(jax.random.key(0))
    layers = dict(params["layers"], wo=jnp.zeros_like(params["layers"]["wo"]),
                  w_down=jnp.zeros_like(params["layers"]["w_down"]))
    e = np.random.RandomState(0).randn(params["embed"].shape[1]).astype(np.float32)
    head = np.zeros(params["lm_head"].shape, np.float32)
    head[:, token] = e
    return model, dict(params, layers=layers, embed=jnp.tile(jnp.asarray(e), (320, 1)),
                       lm_head=jnp.asarray(head))


def _forced_texts(token, min_tokens, max_tokens, n=40, give_up="", line_break=""):
    tok = byte_tokenizer()
    enc = functools.partial(tok.encode, add_special_tokens=False)
    forcing = BudgetForcing(min_tokens, max_tokens, tuple(enc("\\boxed{")), tuple(enc("Wait")),
                            tuple(enc(give_up)[:1]), tuple(enc(line_break)))
    model, params = _model_that_always_writes(token)
    cfg = SamplingConfig(max_new_tokens=n, greedy=True, stop_ids=tok.stop_ids, pad_id=tok.pad_id,
                         forcing=forcing)
    tokens, mask = pad_prompts([enc("12+35=?\n")] * 2, tok.pad_id)
    r = make_sampler(model, cfg)(params, tokens, mask, jax.random.key(0))
    texts = response_texts(r.tokens, r.response_mask, r.finished, tok)
    return texts, np.asarray(r.finished)


def test_budget_forcing_holds_back_a_model_that_wants_to_answer_until_the_minimum():
    backslash = ord("\\")
    for lo, hi in [(6, 20), (0, 20), (9, 9)]:
        texts, _ = _forced_texts(backslash, lo, hi)
        for text in texts:
            first = text.index("\\")
            assert lo <= first <= hi, (lo, hi, text)
            assert text[first:first + 7] == "\\boxed{"
            # only the cue before it (cut short when the maximum comes first)
            assert ("Wait" * 10).startswith(text[:first])


def test_budget_forcing_writes_the_answer_marker_at_the_maximum():
    for lo, hi in [(0, 20), (5, 12), (0, 0)]:
        texts, _ = _forced_texts(ord("a"), lo, hi)
        for text in texts:
            assert text == "a" * hi + "\\boxed{" + "a" * (40 - hi - 7)


def test_budget_forcing_starts_a_forced_answer_on_a_line_of_its_own():
    texts, _ = _forced_texts(ord("a"), 5, 12, line_break="\n")
    assert texts == ["a" * 12 + "\n\\boxed{" + "a" * (40 - 12 - 8)] * 2
    # a row that has just ended a line is not given an empty one
    texts, _ = _forced_texts(ord("\n"), 5, 12, line_break="\n")
    assert texts == ["\n" * 12 + "\\boxed{" + "\n" * (40 - 12 - 7)] * 2
    # nor is a row that starts the marker itself
    texts, _ = _forced_texts(ord("\\"), 5, 12, line_break="\n")
    assert texts == ["WaitWait\\boxed{" + "\\" * (40 - 15)] * 2   # the cue until 8 >= 5


def test_budget_forcing_can_answer_after_the_give_up_line():
    """A break of a newline, the give-up line and a newline: a row cut mid-line gets all of it
    before the marker, a row that has just ended a line all but its newline."""
    texts, _ = _forced_texts(ord("a"), 5, 12, give_up="stuck", line_break="\nstuck\n")
    assert texts == ["a" * 12 + "\nstuck\n\\boxed{" + "a" * (40 - 12 - 14)] * 2
    texts, _ = _forced_texts(ord("\n"), 5, 12, give_up="stuck", line_break="\nstuck\n")
    assert texts == ["\n" * 12 + "stuck\n\\boxed{" + "\n" * (40 - 12 - 13)] * 2


def test_budget_forcing_turns_an_early_stop_into_thinking_and_a_late_one_into_an_answer():
    texts, finished = _forced_texts(byte_tokenizer().stop_ids[0], 10, 30)
    assert finished.all()
    assert texts == ["WaitWaitWait\\boxed{"] * 2   # the cue until 12 >= 10 tokens, then the marker


def test_budget_forcing_with_a_give_up_line_lets_an_answer_through_and_cues_a_give_up():
    # a search that wants to answer at once: its own marker passes before the minimum, and it
    # is never forced again (one marker in the whole response)
    texts, _ = _forced_texts(ord("\\"), 10, 30, give_up="stuck")
    assert texts == ["\\" * 40] * 2
    # a search that wants to give up: the cue until the minimum, then it may; the marker at
    # the maximum
    texts, _ = _forced_texts(ord("s"), 10, 30, give_up="stuck")
    assert texts == ["WaitWaitWait" + "s" * 18 + "\\boxed{" + "s" * 3] * 2
    # a stop before the minimum passes (the search ended itself), unlike without a give-up line
    texts, finished = _forced_texts(byte_tokenizer().stop_ids[0], 10, 30, give_up="stuck")
    assert finished.all() and texts == ["", ""]


def _scripted_forcing(script: str, forcing) -> str:
    """force_tokens step by step over a policy that writes ``script`` (byte ids), one row."""
    state, out = init_forcing(1), []
    for step, ch in enumerate(script):
        tok, state = force_tokens(forcing, state, jnp.int32(step), jnp.asarray([ord(ch)]),
                                  jnp.asarray([-1]))
        out.append(chr(int(tok[0])))
    return "".join(out)


def test_budget_forcing_at_a_line_end_answers_at_the_first_line_start_in_the_slack():
    lines = "aaaaa\n" * 8     # line ends written at steps 5, 11, 17, ...
    forced = lambda slack, hi=20: _scripted_forcing(lines, BudgetForcing(  # noqa: E731
        5, hi, (ord("\\"), ord("b")), (ord("W"),), (), (ord("\n"),), slack))
    # without slack the line being written is cut at the maximum (20 tokens)
    assert forced(0) == "aaaaa\n" * 3 + "aa" + "\n\\b" + lines[23:]
    # with 8 the first line start at or after step 12 takes the marker, its newline not repeated
    assert forced(8) == "aaaaa\n" * 2 + "\\b" + lines[14:]
    # a window (steps 19-20) with no line start in it changes nothing; one of 18-20 has one
    assert forced(1) == forced(0)
    assert forced(2) == "aaaaa\n" * 3 + "\\b" + lines[20:]
    # never before the minimum thinking length: short lines start at steps 3, 6, 9; with a
    # window from step 1 the marker comes at 3 with no minimum, at 6 with a minimum of 5
    short = "aa\n" * 10
    early = lambda lo: _scripted_forcing(short, BudgetForcing(  # noqa: E731
        lo, 10, (ord("\\"), ord("b")), (ord("W"),), (), (ord("\n"),), 9))
    assert early(0) == "aa\n" + "\\b" + short[5:]
    assert early(5) == "aa\naa\n" + "\\b" + short[8:]
