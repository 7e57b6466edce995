"""The train_verifier command end to end at toy sizes: a process verifier on exact step labels
(countdown_search), in shapes larger than its policy's, saved and loaded back for the policy
it scores; a process verifier of a vision policy (Math-Shepherd continuations from each step
end, with the picture), then every search strategy of ``evaluate`` guided by it and by the
run's critic; and the flag combinations it refuses."""

import json

import numpy as np
import pytest

from configs import base
from o1jax import evaluate
from o1jax import workdir as wd
from o1jax.policy import from_workdir
from o1jax.search import value_models
from o1jax.train_verifier import main
from tests.test_policy import make_workdir


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    """A workdir whose (untrained) policy has 1 layer of width 64 and a context of 128 tokens,
    on countdown_search."""
    cfg = base.get_config()
    cfg.data.task, cfg.data.difficulty = "countdown_search", 1
    cfg.data.num_train, cfg.data.num_test, cfg.data.max_prompt_len = 16, 8, 24
    cfg.eval.max_new_tokens, cfg.eval.batch_prompts = 24, 4
    cfg.model.overrides.max_seq_len = 128      # a GenRM's rows (genrm.MAX_ROW)
    root = tmp_path_factory.mktemp("search_run")
    make_workdir(root, cfg, stage="sft")
    return root


def test_an_exact_label_prm_larger_than_its_policy_is_saved_and_loads(search_run, capsys):
    out = search_run / "verifiers" / "big"
    assert main(["--workdir", str(search_run), "--kind", "prm", "--labels", "exact",
                 "--model-size", "num_layers=2,hidden_size=96", "--num-problems", "4",
                 "--samples", "2", "--steps", "3", "--batch-size", "4", "--held-out", "4",
                 "--out", str(out)]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["labels"] == "exact" and info["continuations"] is None
    assert info["init"] == "fresh (shapes of its own)" and info["loss"] == "squared"
    assert info["labelled_tokens"] >= 8                   # at least each row's last token
    for key in ("held_out_auc", "held_out_within_problem_auc", "held_out_step_auc"):
        assert key in info                                # None when a class is empty
    policy = from_workdir(search_run)[0]
    v = value_models.load(f"prm:{out}", policy)
    assert (v.model.cfg.num_layers, v.model.cfg.hidden_size) == (2, 96)
    assert (policy.cfg.num_layers, policy.cfg.hidden_size) == (1, 64)
    assert v.model.cfg.vocab_size == policy.cfg.vocab_size and v.output == "value"
    tokens = np.arange(1, 17, dtype=np.int32).reshape(2, 8)
    scores = value_models.outcome_scores(v, tokens, np.ones_like(tokens, bool))
    assert scores.shape == (2,) and ((scores >= 0) & (scores <= 1)).all()
    meta = wd.read_json(out / value_models.META)
    assert meta["policy"]["num_layers"] == 1 and meta["model"]["num_layers"] == 2


@pytest.mark.parametrize("flags, message", [
    (["--kind", "orm", "--labels", "exact"], "--labels exact labels steps"),
    (["--kind", "orm", "--labels", "valid"], "--labels valid labels steps"),
    (["--kind", "prm", "--loss", "pairwise"], "--loss pairwise ranks outcomes"),
    (["--kind", "orm", "--model-size", "num_layers=x"], "expected policy, a preset"),
    (["--kind", "genrm", "--hard-share", "1.5"], "--hard-share is a share of rows"),
])
def test_flags_it_refuses(search_run, capsys, flags, message):
    assert main(["--workdir", str(search_run), *flags]) == 2
    assert message in capsys.readouterr().err


def test_swaps_refuse_a_vision_policy_before_sampling(visual_run, capsys):
    assert main(["--workdir", str(visual_run), "--kind", "orm", "--swaps", "1"]) == 2
    assert "--swaps makes text rows" in capsys.readouterr().err


def test_a_vision_policy_s_prm_and_critic_guide_every_search(visual_run, tmp_path, capsys):
    out = tmp_path / "prm"
    assert main(["--workdir", str(visual_run), "--kind", "prm", "--num-problems", "3",
                 "--samples", "2", "--continuations", "2", "--steps", "3", "--batch-size", "4",
                 "--held-out", "2", "--out", str(out)]) == 0, capsys.readouterr().err
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["labels"] == "estimated" and info["labelled_tokens"] >= 6
    names = ["best_of_n", "weighted_majority", "beam", "dvts", "mcts", "compute_optimal"]
    for verifier in (f"prm:{out}", "critic"):
        results = tmp_path / verifier.split(":")[0]
        assert evaluate.main(["--workdir", str(visual_run), "--verifier", verifier,
                              "--strategies", ",".join(names), "--budgets", "2",
                              "--beam-width", "2", "--step-tokens", "8", "--num-problems", "2",
                              "--out", str(results)]) == 0, capsys.readouterr().err
        rows = [json.loads(line) for line in open(results / "results.jsonl")]
        assert set(names) <= {r["strategy"] for r in rows}
        assert all(r["verifier_flops"] > 0 for r in rows if r["strategy"] in names)


def test_a_genrm_trains_on_synthetic_rows_and_chooses_among_samples(search_run, tmp_path,
                                                                    capsys):
    out = tmp_path / "genrm"
    assert main(["--workdir", str(search_run), "--kind", "genrm", "--steps", "3",
                 "--batch-size", "4", "--samples", "2", "--held-out", "4",
                 "--out", str(out)]) == 0, capsys.readouterr().err
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["init"] == "policy" and info["rows"] == 12 and info["steps"] == 3
    policy = from_workdir(search_run)[0]
    v = value_models.load(f"genrm:{out}", policy)
    assert v.kind == "genrm" and v.model.head == "policy" and v.model.cfg == policy.cfg
    with pytest.raises(ValueError, match="scores finished samples only"):
        value_models.load(f"genrm:{out}", policy, steps=True)
    names = ["best_of_n", "weighted_majority"]
    results = tmp_path / "results"
    assert evaluate.main(["--workdir", str(search_run), "--verifier", f"genrm:{out}",
                          "--strategies", ",".join(names + ["majority"]), "--budgets", "2",
                          "--num-problems", "2", "--out", str(results)]) == 0, \
        capsys.readouterr().err
    rows = [json.loads(line) for line in open(results / "results.jsonl")]
    assert set(names) <= {r["strategy"] for r in rows}
    assert all(r["verifier_flops"] > 0 for r in rows if r["strategy"] in names)
    assert json.load(open(results / "verifier.json"))["kind"] == "genrm"
    assert evaluate.main(["--workdir", str(search_run), "--verifier", f"genrm:{out}",
                          "--strategies", "beam", "--budgets", "2", "--num-problems", "2",
                          "--out", str(tmp_path / "beam")]) == 2
    assert "which --verifier genrm cannot" in capsys.readouterr().err
