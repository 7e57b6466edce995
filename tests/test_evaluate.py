"""The evaluate command end to end on a policy whose answer is known by construction: its layers
are switched off and its head maps each token of "\\n\\boxed{42}" to the next one, so it writes
``\\boxed{42}</s>`` after any prompt. Accuracy must be the share of examples whose answer is 42.
Then the CLI on a tiny Hugging Face directory, and bad input."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
import pytest

from o1jax import flops
from o1jax.config.blocks import ToolsConfig
from o1jax.data.prompts import PromptFormat
from o1jax.evaluate import main
from o1jax.search import value_models
from o1jax.search.evaluation import evaluate, evaluate_stage
from o1jax.search.spec import EvalSpec, check_memory
from o1jax.experiment import Experiment
from o1jax.models import Transformer, preset
from o1jax.tokenizer import byte_tokenizer

CHAIN = "\n\\boxed{42}"


def _answers_42(chain: str = CHAIN):
    """The policy that writes ``chain[1:]`` and stops after the prompt's last token
    ``chain[0]`` (the chain's characters must be distinct)."""
    tok = byte_tokenizer()
    model = Transformer(preset("tiny", vocab_size=320, max_seq_len=64, tie_embeddings=False))
    params = model.init(jax.random.key(0))
    layers = dict(params["layers"], wo=jnp.zeros_like(params["layers"]["wo"]),
                  w_down=jnp.zeros_like(params["layers"]["w_down"]))
    ids = [tok.encode(ch, add_special_tokens=False)[0] for ch in chain] + [tok.stop_ids[0]]
    d = params["embed"].shape[1]
    basis = np.linalg.qr(np.random.RandomState(0).randn(d, len(ids)))[0].T  # orthonormal rows
    embed = np.asarray(params["embed"]).copy()
    head = np.zeros((d, 320), np.float32)
    for i, (a, b) in enumerate(zip(ids[:-1], ids[1:])):
        embed[a] = basis[i]
        head[:, b] = 10.0 * basis[i]   # logit margin 10 * sqrt(d) = 80 nats
    return model, dict(params, layers=layers, embed=jnp.asarray(embed),
                       lm_head=jnp.asarray(head)), tok


@pytest.fixture(scope="module")
def answers_42():
    return _answers_42()


EXAMPLES = [{"question": f"{a}+{b}=?", "answer": str(a + b), "task": "arithmetic", "meta": "{}"}
            for a, b in [(40, 2), (1, 1), (21, 21), (6, 7), (30, 12)]]


def _spec(**kw):
    return EvalSpec(**dict(dict(max_prompt_len=12, max_new_tokens=16, batch_prompts=2), **kw))


def test_every_strategy_on_a_known_policy(answers_42):
    model, params, tok = answers_42
    spec = _spec(strategies=("greedy", "sample", "majority", "think_longer"), budgets=(1, 2, 4),
                 token_budgets=(8, 11, 16))   # 5 examples in batches of 2: a ragged last batch
    rows, samples, timing, _ = evaluate(model, params, EXAMPLES, tok, spec)
    assert timing["sampling_s"] > 0 and timing["other_s"] > 0
    acc = {(r["strategy"], r["budget"]): r["accuracy"] for r in rows if r["bin"] == "all"}
    assert acc == {("greedy", 1): 0.6, **{(s, k): 0.6 for s in ("sample", "majority", "pass_at_k")
                                          for k in (1, 2, 4)},
                   ("think_longer", 8): 0.0, ("think_longer", 11): 0.6,
                   ("think_longer", 16): 0.6}   # "\\n\\boxed{42}</s>" is 11 tokens
    # the ledger: the prompt prefilled once, then 10 decode steps per response
    greedy = next(r for r in rows if r["strategy"] == "greedy")
    p = np.mean([len(tok.encode(e["question"] + "\n")) for e in EXAMPLES])
    cfg = model.cfg
    assert greedy["tokens"] == 11 and greedy["prompt_tokens"] == p
    expected = np.mean([flops.prefill_flops(cfg, len(tok.encode(e["question"] + "\n"))) +
                        flops.decode_flops(cfg, len(tok.encode(e["question"] + "\n")), 11)
                        for e in EXAMPLES])
    assert greedy["flops"] == pytest.approx(expected)
    four = next(r for r in rows if r["strategy"] == "majority" and r["budget"] == 4)
    assert four["tokens"] == 44 and four["decode_flops"] == pytest.approx(4 * (
        greedy["decode_flops"]))
    assert four["prefill_flops"] == pytest.approx(greedy["prefill_flops"])
    # one sample record per problem, recomputing the figures
    assert [s["answer"] for s in samples] == [e["answer"] for e in EXAMPLES]
    assert all(len(s["responses"]["sample"]) == 4 for s in samples)
    assert np.mean([s["responses"]["greedy"][0]["correct"] for s in samples]) == 0.6
    assert {s["responses"]["greedy"][0]["answer"] for s in samples} == {"42"}


def test_verifier_guided_rows_face_the_cheapest_vote_that_costs_as_much(answers_42):
    """best_of_n with the confidence verifier (no verifier FLOPs) costs what majority over the
    same k costs, so each of its rows is paired with that vote; a row with no costlier vote in
    the run has no such field."""
    model, params, tok = answers_42
    spec = _spec(strategies=("majority", "best_of_n"), budgets=(1, 2, 4))
    rows = evaluate(model, params, EXAMPLES, tok, spec,
                    value_models.ValueModel("confidence", None, None, "test"))[0]
    rows = [r for r in rows if r["bin"] == "all"]
    votes = sorted((r["flops"], r["budget"]) for r in rows if r["strategy"] == "majority")
    for r in (r for r in rows if r["strategy"] == "best_of_n"):
        cheapest = next((k for f, k in votes if f >= r["flops"]), None)
        assert cheapest == r["budget"] == r.get("vs_majority_at_flops_budget"), (r, votes)
        assert r["vs_majority_at_flops"] == r["vs_majority"]
    assert not any("vs_majority_at_flops" in r for r in rows if r["strategy"] == "majority")


def _stage_experiment(answers_42, tmp_path, **eval_cfg):
    import ml_collections
    model, params, tok = answers_42
    cfg = ml_collections.ConfigDict({
        "seed": 0, "data": {"max_prompt_len": 12, "template": "{question}\n"},
        "eval": dict(dict(num_examples=4, max_new_tokens=16, temperature=1.0,
                          batch_prompts=4), **eval_cfg)})
    test = [dict(e, meta=e["meta"].encode()) for e in EXAMPLES]  # rows as TFDS stores them
    return Experiment(cfg, epath.Path(tmp_path), None, tok, model, {"test": test}, None,
                      PromptFormat(max_prompt_len=12)), params


def test_evaluate_stage_evaluates_once_and_reuses_the_file(answers_42, tmp_path):
    exp, params = _stage_experiment(answers_42, tmp_path)
    first = evaluate_stage(exp, "rl", params, 2, step=5)
    assert first["num_examples"] == 4 and first["greedy_accuracy"] == pytest.approx(2 / 4)
    assert first["maj2_accuracy"] == first["pass2_accuracy"] == pytest.approx(2 / 4)
    assert json.loads((tmp_path / "eval_rl.json").read_text()) == first
    planted = dict(first, greedy_accuracy=0.123)   # the same key: read back, not recomputed
    (tmp_path / "eval_rl.json").write_text(json.dumps(planted))
    assert evaluate_stage(exp, "rl", params, 2, step=5) == planted
    # a run resumed to train longer evaluates its new policy
    again = evaluate_stage(exp, "rl", params, 2, step=8)
    no_clock = lambda ev: dict(ev, rows=[dict(r, seconds=0) for r in ev["rows"]])  # noqa: E731
    assert no_clock(again) == no_clock(dict(first, step=8, key=dict(first["key"], step=8)))


@pytest.mark.parametrize("change", [dict(num_examples=3), dict(max_new_tokens=12),
                                    dict(maj_k=4), dict(temperature=0.5)])
def test_evaluate_stage_redoes_a_file_of_another_spec(answers_42, tmp_path, change):
    """A resumed run evaluated with other settings at the same step recomputes: the cache is
    keyed on the step and the spec, not the step alone."""
    exp, params = _stage_experiment(answers_42, tmp_path)
    first = evaluate_stage(exp, "rl", params, 2, step=5)
    planted = dict(first, greedy_accuracy=0.123)
    (tmp_path / "eval_rl.json").write_text(json.dumps(planted))
    maj_k = change.pop("maj_k", 2)
    exp, params = _stage_experiment(answers_42, tmp_path, **change)
    again = evaluate_stage(exp, "rl", params, maj_k, step=5)
    assert again["greedy_accuracy"] != 0.123 and again["key"] != first["key"]
    assert again["num_examples"] == change.get("num_examples", 4)
    assert f"maj{maj_k}_accuracy" in again
    assert json.loads((tmp_path / "eval_rl.json").read_text()) == again


def test_the_final_evaluation_reuses_the_curve_point_of_its_step(answers_42, tmp_path,
                                                                  monkeypatch):
    """train.py's eval_rl.json at the last RL step takes the train-time curve's point of that
    step (the same policy and spec) instead of evaluating the policy a second time."""
    import o1jax.search.evaluation as evaluate_module
    exp, params = _stage_experiment(answers_42, tmp_path)
    curve = tmp_path / "curve" / "step_000005.json"
    point = evaluate_stage(exp, "rl", params, 2, 5, path=curve, extra={"train_flops": 1e9})
    calls = []
    monkeypatch.setattr(evaluate_module, "evaluate", lambda *a, **k: calls.append(a) or (
        evaluate(*a, **k)))
    final = evaluate_stage(exp, "rl", params, 2, 5, reuse=curve)
    assert calls == [] and final == point
    assert json.loads((tmp_path / "eval_rl.json").read_text()) == point
    # a curve point of another step is no substitute
    evaluate_stage(exp, "rl", params, 2, 6, reuse=curve)
    assert len(calls) == 1


def test_a_run_evaluates_its_final_policy_once(smoke_run):
    """The smoke run's curve ends at its last RL step (4): eval_rl.json holds that very
    evaluation, wall-clock seconds included (a second evaluation would time differently)."""
    workdir, _ = smoke_run
    point = json.loads((workdir / "curve" / "step_000004.json").read_text())
    final = json.loads((workdir / "eval_rl.json").read_text())
    assert final["step"] == point["step"] == 4
    assert final["rows"] == point["rows"] and all(r["seconds"] > 0 for r in final["rows"])


@pytest.mark.parametrize("flags", [[], ["--strategies", "mcts", "--verifier", "critic",
                                        "--budgets", "2"]])
def test_cli_defaults_fit_the_smoke_config(smoke_run, tmp_path, flags):
    """configs/smoke.py writes 16 new tokens: the default token budgets, budget forcing's
    answer room and the search step length follow that (fixed defaults of 16 answer tokens
    and 32-token steps were errors there)."""
    workdir, _ = smoke_run
    out = tmp_path / "eval"
    assert main(["--workdir", str(workdir), "--num-problems", "2", "--out", str(out)]
                + flags) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    strategies = {r["strategy"] for r in rows}
    if flags:
        assert "mcts" in strategies
    else:
        assert {"greedy", "majority", "think_longer", "budget_forcing"} <= strategies
        budgets = sorted({r["budget"] for r in rows if r["strategy"] == "budget_forcing"})
        assert budgets == [12, 16]   # of 4, 8, 12, 16: those above the 8 answer tokens


def test_cli_reads_the_policy_onto_its_mesh(smoke_run, tmp_path, monkeypatch):
    """--mesh-shape 1,2,4 (8 fake devices): the parameters arrive sharded as the mesh says, and
    the greedy results equal those of one device."""
    import o1jax.evaluate as cli
    workdir, _ = smoke_run
    seen = []
    real = cli.evaluate
    monkeypatch.setattr(cli, "evaluate", lambda policy, params, *a, **k: seen.append(
        (policy, params)) or real(policy, params, *a, **k))
    results = {}
    for mesh in (None, "1,2,4"):
        out = tmp_path / f"eval_{mesh}"
        flags = ["--mesh-shape", mesh] if mesh else []
        assert main(["--workdir", str(workdir), "--num-problems", "4", "--strategies",
                     "greedy,majority", "--budgets", "2", "--out", str(out)] + flags) == 0
        rows = map(json.loads, (out / "results.jsonl").read_text().splitlines())
        results[mesh] = [(r["budget"], r["bin"], r["accuracy"], r["tokens"]) for r in rows
                         if r["strategy"] == "greedy"]
    assert results[None] == results["1,2,4"] and results[None]
    policy, params = seen[-1]
    assert dict(policy.mesh.shape) == {"data": 1, "fsdp": 2, "tensor": 4}
    for leaf, want in zip(jax.tree.leaves(params), jax.tree.leaves(policy.shardings())):
        assert leaf.sharding.is_equivalent_to(want, leaf.ndim)
    assert len(jax.tree.leaves(params)[0].sharding.device_set) == 8


def test_defaults_follow_the_run_lengths_and_given_values_are_checked():
    long = EvalSpec(max_prompt_len=12, max_new_tokens=256, strategies=("budget_forcing",))
    assert (long.answer_room, long.step_length) == (16, 32)
    assert long.token_budgets_or_default() == (64, 128, 192, 256)
    short = EvalSpec(max_prompt_len=12, max_new_tokens=16,
                     strategies=("think_longer", "budget_forcing"))
    assert (short.answer_room, short.step_length) == (8, 8)
    assert short.token_budgets_or_default() == (12, 16)
    short.check()
    assert EvalSpec(max_prompt_len=12, max_new_tokens=16, strategies=(
        "think_longer",)).token_budgets_or_default() == (4, 8, 12, 16)
    with pytest.raises(ValueError, match="leaves no thinking before the 16 answer tokens"):
        EvalSpec(max_prompt_len=12, max_new_tokens=16, strategies=("budget_forcing",),
                 answer_tokens=16).check()


def test_budget_forcing_settings_reach_the_decoding_rule():
    spec = _spec(strategies=("budget_forcing",), token_budgets=(64,), give_up="stuck",
                 answer_on_new_line=True, answer_after_give_up=True, answer_at_line_end=True,
                 stop_loops=2, step_tokens=8, min_thinking=0, answer_tokens=16)
    spec.check()
    f = spec.forcing(64, [1], [2], [3], [4, 5, 4])
    assert (f.min_tokens, f.max_tokens, f.line_slack, f.loop_lines) == (0, 48, 8, 2)
    assert (f.give_up_ids, f.break_ids) == ((3,), (4, 5, 4))


@pytest.mark.parametrize("kw,match", [
    (dict(strategies=("greedy", "beam_search")), "unknown strategies \\['beam_search'\\]"),
    (dict(budgets=(1, 0)), "budgets must be >= 1"),
    (dict(strategies=("budget_forcing",), token_budgets=(40,), min_thinking=30,
          answer_tokens=16), "--min-thinking 30 is above the maximum thinking length 24"),
    (dict(strategies=("budget_forcing",), token_budgets=(10,), answer_tokens=16),
     "leaves no thinking"),
    (dict(strategies=("budget_forcing",), token_budgets=(8,)),   # 8 answer tokens by default
     "budget_forcing at 8 tokens leaves no thinking before the 8 answer tokens"),
    (dict(strategies=("budget_forcing",), token_budgets=(40,), answer_tokens=4),
     "--answer-tokens 4 leaves no room for the answer marker"),
    (dict(token_budgets=(60,)), "exceeds the model's max_seq_len 64"),
    (dict(strategies=("best_of_n",)), "best_of_n need a verifier"),
    (dict(strategies=("beam",), beam_width=0), "beam_width must be >= 1"),
    (dict(strategies=("compute_optimal",)), "compute_optimal chooses among"),
    (dict(strategies=("greedy", "budget_forcing"), tools=ToolsConfig(enabled=True)),
     "budget_forcing do not run tool calls"),
    (dict(strategies=("budget_forcing",), answer_after_give_up=True, answer_on_new_line=True),
     "give it with --give-up and --answer-on-new-line"),
    (dict(strategies=("budget_forcing",), answer_at_line_end=True),
     "--answer-at-line-end forces the answer where a line ends: give --answer-on-new-line"),
    (dict(strategies=("budget_forcing",), stop_loops=2),
     "--stop-loops 2 must be >= 0; it forces the answer where a repeated line ends: give "
     "--answer-on-new-line"),
])
def test_bad_settings_fail_before_compiling(answers_42, kw, match):
    model, params, tok = answers_42
    with pytest.raises(ValueError, match=match):
        evaluate(model, params, EXAMPLES, tok, _spec(**kw))


def test_an_evaluation_too_big_for_memory_is_refused(answers_42):
    with pytest.raises(ValueError, match="lower --batch-prompts"):
        check_memory(answers_42[0], rows=10 ** 9, length=64)
    check_memory(answers_42[0], rows=64, length=64)


def test_cli_on_a_hugging_face_directory(llama_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["--model", llama_dir, "--task", "arithmetic", "--num-problems", "6",
            "--budgets", "1,2", "--token-budgets", "12,24", "--max-new-tokens", "16",
            "--min-thinking", "3", "--answer-tokens", "8", "--batch-prompts", "4",
            "--data-dir", str(tmp_path / "tfds"), "--out", str(out)]
    assert main(args + ["--split", "hard"]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    keys = {"strategy", "budget", "bin", "problems", "accuracy", "ci_low", "ci_high", "tokens",
            "flops", "seconds"}
    assert all(keys <= set(r) for r in rows)
    overall = [(r["strategy"], r["budget"]) for r in rows if r["bin"] == "all"]
    assert overall == [("greedy", 1)] + [(s, k) for s in ("sample", "majority") for k in (1, 2)] \
        + [(s, b) for s in ("think_longer", "budget_forcing") for b in (12, 24)] + [
            ("pass_at_k", 1), ("pass_at_k", 2)]
    assert all(r["problems"] == 6 and r["ci_low"] <= r["accuracy"] <= r["ci_high"]
               for r in rows if r["bin"] == "all")
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["id"] for s in samples] == [f"hard/{i}" for i in range(6)]
    # a random model writes no marker by itself: budget forcing puts it in every response
    for s in samples:
        for r in s["responses"]["budget_forcing@24"]:
            assert "\\boxed{" in r["text"] and r["tokens"] <= 24
        # the figures can be recomputed from the samples
    greedy = np.mean([s["responses"]["greedy"][0]["correct"] for s in samples])
    assert greedy == next(r["accuracy"] for r in rows if r["strategy"] == "greedy"
                          and r["bin"] == "all")
    assert os.path.getsize(out / "test_time_compute.png") > 10000
    assert "think_longer" in capsys.readouterr().out


def test_budget_forcing_on_qwen3_forces_its_own_end_of_thinking(qwen3_dir, tmp_path):
    """With no --answer-marker, a Qwen3 tokenizer's </think> (one token) is the marker."""
    out = tmp_path / "eval"
    assert main(["--model", qwen3_dir, "--task", "arithmetic", "--num-problems", "3",
                 "--strategies", "budget_forcing", "--token-budgets", "20",
                 "--max-new-tokens", "20", "--min-thinking", "3", "--answer-tokens", "6",
                 "--data-dir", str(tmp_path / "tfds"), "--out", str(out)]) == 0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    texts = [r["text"] for s in samples for r in s["responses"]["budget_forcing@20"]]
    assert len(texts) == 3 and all("</think>" in t and "\\boxed{" not in t for t in texts)


@pytest.mark.parametrize("extra,match", [
    (["--model", "/nonexistent"], "is not a Hugging Face model directory"),
    (["--workdir", "/nonexistent"], "holds no training run"),
    (["--model", "MODEL", "--task", "gsm8k", "--split", "hard", "--out", "OUT"],
     "--split hard exists for the synthetic tasks"),
    (["--model", "MODEL", "--task", "arithmetic", "--out", "OUT", "--strategies", "greedy,x"],
     "unknown strategies"),
    (["--model", "MODEL", "--task", "nope", "--out", "OUT"], "--task 'nope'"),
])
def test_cli_bad_input(llama_dir, tmp_path, capsys, extra, match):
    extra = [llama_dir if a == "MODEL" else str(tmp_path) if a == "OUT" else a for a in extra]
    assert main(extra) == 2
    assert match in capsys.readouterr().err


def test_every_strategy_runs_on_a_vision_policy():
    """Sampling, the verifier's choices, beam search, DVTS, MCTS and compute-optimal all read
    each problem's picture (``tests/search``: each against a forward with the image); here
    they run together through ``evaluate``, verifier FLOPs counted where a verifier reads."""
    from o1jax.search import strategies
    from tests.search.test_beam import vision_models, vision_problems
    policy, params, verifier = vision_models()
    names = ("greedy", "majority", "best_of_n", "weighted_majority", "beam", "dvts", "mcts",
             "compute_optimal")
    spec = EvalSpec(max_prompt_len=24, max_new_tokens=16, strategies=names, budgets=(2,),
                    beam_width=2, step_tokens=8, batch_prompts=4, probes=2,
                    prompt=PromptFormat(image_tokens=4))
    result = evaluate(policy, params, vision_problems(3), byte_tokenizer(image_token=True),
                      spec, verifier)
    rows = {r["strategy"]: r for r in result.rows if r["bin"] == "all"}
    assert set(names) <= set(rows)
    for name in names:
        assert 0.0 <= rows[name]["accuracy"] <= 1.0
        reads = name in strategies.VERIFIED + strategies.SEARCHED + ("compute_optimal",)
        assert (rows[name]["verifier_flops"] > 0) == reads, (name, rows[name])
