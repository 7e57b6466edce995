"""Evaluate a checkpoint with test-time compute: ``python -m o1jax.evaluate --workdir DIR``.

Runs the strategies of ``o1jax.search.strategies`` at each budget on held-out problems and
writes, in ``--out`` (default WORKDIR/eval/): ``results.jsonl`` (one row per strategy x budget
x difficulty bin: accuracy with a 95% Wilson interval, and the mean tokens, FLOPs and seconds
per problem), ``samples.jsonl`` (every response, its answer and verdict, per problem; a visual
problem's image as the policy saw it) and ``test_time_compute.png`` (accuracy against FLOPs,
one panel per bin). Training's evaluation stage (``evaluate_stage``) runs the same code. Examples::

    python -m o1jax.evaluate --workdir DIR --split hard --budgets 1,4,16 --token-budgets 64,96
    python -m o1jax.evaluate --model HF_DIR --task gsm8k --manual-dir DIR --template ...

Model output is verified in the worker pool under time limits; with several processes each
feeds its own rows and verifies its share, and process 0 writes the files.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from typing import NamedTuple, Sequence

import ml_collections

from o1jax import experiment, sharding
from o1jax import policy as policy_lib
from o1jax import workdir as wd
from o1jax.config import datasets
from o1jax.data.pipeline import decode_example
from o1jax.data.prompts import prompt_ids
from o1jax.models import hf
from o1jax.models.transformer import Params, Transformer
from o1jax.rewards.api import default_pool
from o1jax.rollout import SamplingConfig
from o1jax.search import beam, compute_optimal, mcts, strategies, value_models, voting
from o1jax.search.spec import EvalSpec, check_memory
from o1jax.search.results import (difficulty_bins, print_results, result_rows, sample_records,
                                 write_results)
from o1jax.tokenizer import Tokenizer

log = logging.getLogger("o1jax.evaluate")


class EvalResult(NamedTuple):
    """rows: results.jsonl; samples: samples.jsonl; timing: wall seconds in all (total_s), in
    first sampler calls (warmup_s: compilation and one batch each), in the other sampler calls
    (sampling_s), and the rest (other_s: verification, answer grouping, bookkeeping);
    verifier: the verifier's own accuracy on the sampled solutions (AUC of its outcome score,
    correct vs wrong finished ones), when one was used."""
    rows: list
    samples: list
    timing: dict
    verifier: dict | None = None


def evaluate(policy: Transformer, params: Params, examples: Sequence[dict],
             tokenizer: Tokenizer, spec: EvalSpec,
             verifier: value_models.ValueModel | None = None) -> EvalResult:
    """Runs every strategy of ``spec`` on ``examples`` (``verifier``: for the strategies that
    need one)."""
    start = time.perf_counter()
    spec.check(policy)
    needs = sorted(set(spec.strategies) & set(strategies.VERIFIED + strategies.SEARCHED +
                                              ("compute_optimal",)))
    if needs and policy.cfg.vision:
        raise ValueError(f"{', '.join(needs)} do not carry images yet: evaluate a vision policy "
                         "with greedy, sample, majority, think_longer or budget_forcing")
    if needs and verifier is None:
        raise ValueError(f"{', '.join(needs)} need a verifier: --verifier critic, orm:PATH or "
                         "prm:PATH")
    enc = lambda s: tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
    common = dict(stop_ids=tokenizer.stop_ids, pad_id=tokenizer.pad_id)
    fmt = dataclasses.replace(spec.prompt, max_prompt_len=spec.max_prompt_len)
    run = lambda sampling, per_batch, seed: strategies.generate(  # noqa: E731
        policy, params, examples, tokenizer, sampling, fmt, per_batch, seed)
    gens: dict[str, strategies.Generation] = {}
    n = max(spec.budgets, default=1)
    plans = []
    if "greedy" in spec.strategies:
        plans.append(("greedy", 1, SamplingConfig(spec.max_new_tokens, greedy=True, **common)))
    if set(spec.strategies) & set(strategies.SAMPLED + ("compute_optimal",)):
        plans.append(("sample", n, SamplingConfig(spec.max_new_tokens, spec.temperature,
                                                  num_samples=n, **common)))
    for b in spec.token_budgets_or_default():
        if "think_longer" in spec.strategies:
            plans.append((f"think_longer@{b}", 1, SamplingConfig(b, greedy=True, **common)))
        if "budget_forcing" in spec.strategies:
            forcing = spec.forcing(b, enc(spec.answer_marker), enc(spec.cue))
            plans.append((f"budget_forcing@{b}", 1, SamplingConfig(b, greedy=True,
                                                                   forcing=forcing, **common)))
    searched = {}
    for b in spec.budgets:
        for name in sorted(set(spec.strategies) & set(strategies.SEARCHED)):
            width = min(spec.beam_width, b)
            common_search = (fmt, spec.max_new_tokens, spec.step_length, spec.temperature,
                             spec.batch_prompts, spec.seed + 2)
            if name == "mcts":
                searched[f"{name}@{b}"] = mcts.search(
                    policy, params, examples, tokenizer, verifier, b, spec.beam_width,
                    *common_search)
            else:
                searched[f"{name}@{b}"] = beam.search(
                    policy, params, examples, tokenizer, verifier, b // width, width,
                    name == "dvts", *common_search)
            log.info("%s@%d: %d problems in %.1f s", name, b, len(examples),
                     searched[f"{name}@{b}"][0].seconds)
    for name, g, sampling in plans:
        per_batch = max(1, spec.batch_prompts // g)
        check_memory(policy, per_batch * g, spec.max_prompt_len + sampling.max_new_tokens)
        t = time.perf_counter()
        # the seed of the sampled run is the one the training stage has always used
        gens[name] = run(sampling, per_batch, spec.seed + (name == "sample"))
        log.info("%s: %d problems x %d responses in %.1f s (sampling %.1f s)", name,
                 len(examples), g, time.perf_counter() - t, gens[name].seconds)
    sampled = gens.get("sample")
    bins = difficulty_bins(examples, None if sampled is None else sampled.correct.mean(axis=1))
    mcfg = policy.cfg
    scored: dict[tuple[str, int], strategies.Scores] = {}  # (strategy, budget) -> per problem
    if "greedy" in gens:
        scored["greedy", 1] = strategies.score("greedy", 1, gens["greedy"], mcfg)
    checked, scores = None, None
    if sampled is not None:
        voted = {"majority", "weighted_majority"} & set(spec.strategies)
        classes = voting.group_answers(sampled.answers, default_pool()) if voted else None
        if set(needs) & set(strategies.VERIFIED + ("compute_optimal",)):
            scores = value_models.outcome_scores(verifier, sampled.tokens, sampled.mask).reshape(
                sampled.correct.shape)
            checked = value_models.report(verifier, scores, sampled.correct, sampled.finished)
        for strategy in [s for s in strategies.SAMPLED if s in spec.strategies] + ["pass_at_k"]:
            for k in spec.budgets:
                scored[strategy, k] = strategies.score(
                    strategy, k, sampled, mcfg, classes, scores, verifier and verifier.model.cfg)
    for name, (gen, ledger) in searched.items():
        strategy, budget = name.split("@")
        scored[strategy, int(budget)] = strategies.Scores(accuracy=gen.correct[:, 0], **ledger)
        gens[name] = gen
    for name, gen in gens.items():
        if "@" in name and name not in searched:
            strategy, budget = name.split("@")
            scored[strategy, int(budget)] = strategies.score(strategy, int(budget), gen, mcfg)
    if "compute_optimal" in spec.strategies:
        probes = min(spec.probes, sampled.correct.shape[1])
        predicted = compute_optimal.predicted_bins(scores, probes)
        probe_cost = strategies.score("best_of_n", probes, sampled, mcfg, None, scores,
                                      verifier.model.cfg)
        checked["compute_optimal"] = {}
        for k in spec.budgets:
            pool = {s: sc for (s, b), sc in scored.items() if b == k and s in
                    strategies.SELECTING}
            scored["compute_optimal", k], choices = compute_optimal.choose(
                pool, predicted, probe_cost)
            checked["compute_optimal"][k] = choices
    order = {s: i for i, s in enumerate(strategies.STRATEGIES + ("pass_at_k",))}
    rows = [row for (s, b) in sorted(scored, key=lambda sb: (order[sb[0]], sb[1]))
            for row in result_rows(s, b, scored[s, b], bins)]
    samples = sample_records(examples, gens, bins)
    total = time.perf_counter() - start
    warmup = sum(g.warmup_seconds for g in gens.values())
    sampling = sum(g.seconds for g in gens.values())
    return EvalResult(rows, samples, dict(total_s=total, warmup_s=warmup, sampling_s=sampling,
                                          other_s=total - warmup - sampling), checked)


def stage_summary(rows: list[dict], maj_k: int) -> dict:
    """The headline figures of a training run's evaluation file (eval_{name}.json)."""
    get = lambda s, b: next((r["accuracy"] for r in rows if r["strategy"] == s  # noqa: E731
                             and r["budget"] == b and r["bin"] == "all"), None)
    out = {"num_examples": next(r["problems"] for r in rows if r["bin"] == "all"),
           "greedy_accuracy": get("greedy", 1)}
    if maj_k:
        out.update({f"maj{maj_k}_accuracy": get("majority", maj_k),
                    f"pass{maj_k}_accuracy": get("pass_at_k", maj_k),
                    "mean_sample_accuracy": get("sample", maj_k)})
    return out


def evaluate_stage(exp, name: str, params: Params, maj_k: int, step: int,
                   path=None, extra: dict | None = None, reuse=None) -> dict:
    """Training's held-out evaluation of its policy at ``step`` (``exp``: an
    ``experiment.Experiment``): greedy, and with ``maj_k`` majority, pass@k and sampled pass@1
    at k samples, by ``evaluate``. Cached in ``path`` (default WORKDIR/eval_{name}.json; with
    every result row, ``extra`` and its key: the step and the evaluation's spec, problems
    included) so that a resumed run reuses it; a file of another step or spec is redone.
    ``reuse``: another file this stage wrote (the train-time curve's point at the same step),
    taken, and copied to ``path``, when its key matches."""
    cfg = exp.cfg
    path = path or exp.workdir / f"eval_{name}.json"
    test = exp.sources["test"]
    examples = [decode_example(test[i]) for i in range(min(len(test), cfg.eval.num_examples))]
    spec = EvalSpec(max_prompt_len=cfg.data.max_prompt_len,
                    max_new_tokens=cfg.eval.max_new_tokens,
                    strategies=("greedy", "sample", "majority") if maj_k else ("greedy",),
                    budgets=(maj_k,) if maj_k else (1,), temperature=cfg.eval.temperature,
                    batch_prompts=cfg.eval.batch_prompts, seed=cfg.seed, prompt=exp.prompt)
    # JSON's form (tuples as lists), as it reads back from the file
    key = json.loads(json.dumps(dict(step=step, problems=len(examples),
                                     spec=dataclasses.asdict(spec))))
    for source in [path] + ([reuse] if reuse is not None else []):
        cached = wd.read_json(source) if source.exists() else None
        if sharding.process_0_value(cached is not None and cached.get("key") == key):
            if source != path and wd.is_writer():
                wd.write_text(path, json.dumps(cached, indent=2))
            return cached
    rows = evaluate(exp.policy, params, examples, exp.tokenizer, spec).rows
    result = dict(stage_summary(rows, maj_k), step=step, **(extra or {}), key=key, rows=rows)
    if wd.is_writer():
        path.parent.mkdir(parents=True, exist_ok=True)
        wd.write_text(path, json.dumps(result, indent=2))
    return result


# ------------------------------------------------------------------------------------ CLI
def parse_args(argv=None) -> argparse.Namespace:
    ints = lambda s: tuple(int(x) for x in s.split(",") if x.strip())  # noqa: E731
    ap = argparse.ArgumentParser(prog="python -m o1jax.evaluate",
                                 description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--workdir", help="a training workdir (local or gs://)")
    src.add_argument("--model", help="a Hugging Face model directory (with --task)")
    ap.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    ap.add_argument("--stage", choices=("rl", "sft"), default=None,
                    help="which checkpoints of the workdir (default: RL when there are any)")
    ap.add_argument("--split", default="test", choices=("test", "train", "hard"),
                    help="hard: held-out synthetic problems above the training difficulty")
    ap.add_argument("--num-problems", "--num_problems", type=int, default=None,
                    help="default: the run's eval.num_examples, else 200")
    ap.add_argument("--strategies", default="greedy,sample,majority,think_longer,budget_forcing")
    ap.add_argument("--verifier", default=None, help="the value model for best_of_n, "
                    "weighted_majority and search: critic (the RL run's), orm:PATH or prm:PATH")
    ap.add_argument("--budgets", type=ints, default=(1, 2, 4, 8, 16),
                    help="samples per problem (sample, majority, pass@k)")
    ap.add_argument("--token-budgets", "--token_budgets", type=ints, default=(),
                    help="max new tokens (think_longer, budget_forcing); default: a quarter, "
                    "half, three quarters and all of --max-new-tokens (with budget_forcing, "
                    "those above the answer room)")
    ap.add_argument("--max-new-tokens", "--max_new_tokens", type=int, default=None,
                    help="for greedy and sampling (default: the run's eval.max_new_tokens)")
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--batch-prompts", "--batch_prompts", type=int, default=None)
    ap.add_argument("--min-thinking", "--min_thinking", type=int, default=None,
                    help="budget forcing: thinking tokens before the answer may start "
                    "(default: half of each budget's thinking room)")
    ap.add_argument("--answer-marker", "--answer_marker", default="\\boxed{",
                    help="budget forcing: what starts the answer (a chat model: </think>)")
    ap.add_argument("--cue", default="Wait", help="budget forcing: the continuation cue")
    ap.add_argument("--beam-width", "--beam_width", type=int, default=4,
                    help="beam / dvts: candidate next steps sampled per beam (M)")
    ap.add_argument("--probes", type=int, default=4, help="compute_optimal: samples whose mean "
                    "verifier score predicts a problem's difficulty")
    ap.add_argument("--step-tokens", "--step_tokens", type=int, default=None,
                    help="beam / dvts / mcts: the longest step sampled at once (a step ends at "
                    "a token with a newline); default: 32, at most half of --max-new-tokens")
    ap.add_argument("--answer-tokens", "--answer_tokens", type=int, default=None,
                    help="budget forcing: tokens left for the answer, its marker included; "
                    "default: 16, at most half of --max-new-tokens")
    ap.add_argument("--task", default=None, help="with --model: a text dataset of "
                    "o1jax/config/datasets.py (a synthetic task, gsm8k, math or jsonl)")
    ap.add_argument("--template", default=None, help="with --model: the prompt format, with "
                    "{question} (default: the dataset's, o1jax/config/datasets.py)")
    ap.add_argument("--difficulty", type=int, default=2, help="with --model: synthetic tasks")
    ap.add_argument("--jsonl", default=None, help="with --task jsonl: the test file")
    ap.add_argument("--manual-dir", "--manual_dir", default="", help="gsm8k / math files")
    ap.add_argument("--data-dir", "--data_dir", default="",
                    help="TFDS directory (default: WORKDIR/tfds, else ~/tensorflow_datasets)")
    ap.add_argument("--max-prompt-len", "--max_prompt_len", type=int, default=None)
    ap.add_argument("--out", default=None, help="output directory (default: WORKDIR/eval)")
    ap.add_argument("--seed", type=int, default=None)
    sharding.add_distributed_flags(ap)
    return ap.parse_args(argv)


def _run_config(args) -> ml_collections.ConfigDict:
    """The run's config (a workdir) or one built from the flags (a Hugging Face directory)."""
    if args.workdir:
        if not wd.is_workdir(args.workdir):
            raise ValueError(f"--workdir {args.workdir} holds no training run (no config.json "
                             "and checkpoints/)")
        return wd.load_config(args.workdir)
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        raise ValueError(f"--model {args.model} is not a Hugging Face model directory (no "
                         "config.json); for a training workdir use --workdir")
    if not args.out:
        raise ValueError("--model needs --out DIR (where to write the results)")
    if not args.task:
        raise ValueError("--model needs --task (a synthetic task, gsm8k, math or jsonl)")
    known = datasets.names(visual=False)
    if args.task not in known:
        raise ValueError(f"--task {args.task!r}: one of {', '.join(known)}")
    if args.task == "jsonl" and not args.jsonl:
        raise ValueError("--task jsonl needs --jsonl PATH (one {question, answer} per line)")
    return ml_collections.ConfigDict(dict(
        seed=0, data=dict(task=args.task, difficulty=args.difficulty, num_train=1000,
                          num_test=args.num_problems or 200, seed=0, test_path=args.jsonl or "",
                          template=args.template or datasets.get(args.task).template,
                          manual_dir=args.manual_dir,
                          data_dir=args.data_dir or os.path.expanduser("~/tensorflow_datasets")),
        eval=dict(num_examples=200, max_new_tokens=256, temperature=1.0, batch_prompts=16)))


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        sharding.initialize_from_flags(args)
        cfg = _run_config(args)
        if args.data_dir:
            cfg.data.data_dir = args.data_dir
        pick = lambda flag, default: default if flag is None else flag  # noqa: E731
        spec = EvalSpec(
            max_prompt_len=pick(args.max_prompt_len, cfg.data.get("max_prompt_len", 1)),
            max_new_tokens=pick(args.max_new_tokens, cfg.eval.max_new_tokens),
            strategies=tuple(s.strip() for s in args.strategies.split(",") if s.strip()),
            budgets=args.budgets, token_budgets=args.token_budgets,
            temperature=pick(args.temperature, cfg.eval.temperature),
            batch_prompts=pick(args.batch_prompts, cfg.eval.batch_prompts),
            seed=pick(args.seed, cfg.seed), answer_marker=args.answer_marker, cue=args.cue,
            min_thinking=args.min_thinking, answer_tokens=args.answer_tokens,
            beam_width=args.beam_width,
            step_tokens=args.step_tokens, probes=args.probes)
        spec.check()
        if args.workdir:  # the run's tokenizer and prompt format, chat template included
            (policy, tokenizer, prompt), params = policy_lib.load_policy(
                args.workdir, args.step, stage=args.stage)
        else:
            policy, tokenizer, prompt = policy_lib.from_hf(args.model, template=cfg.data.template)
            params = hf.load_params(args.model, policy)
        spec = dataclasses.replace(spec, prompt=prompt)
        examples = experiment.load_problems(cfg, wd.resolve(args.workdir or args.out),
                                            args.split, args.num_problems)
        verifier = None
        if args.verifier:
            verifier = value_models.load(args.verifier, policy, args.workdir, args.step)
        if args.model and args.max_prompt_len is None:  # a run's prompts are cut as it trained
            spec = dataclasses.replace(spec, max_prompt_len=max(
                len(prompt_ids(e, tokenizer, prompt)) for e in examples))
        result = evaluate(policy, params, examples, tokenizer, spec, verifier)
    except (ValueError, FileNotFoundError, experiment.ConfigError,
            sharding.DistributedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if wd.is_writer():
        out = wd.resolve(args.out or wd.resolve(args.workdir) / "eval")
        write_results(out, result.rows, result.samples)
        print_results(result.rows)
        if result.verifier:
            wd.write_text(out / "verifier.json", json.dumps(result.verifier, indent=2))
            v = result.verifier
            fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
            print(f"\nverifier {v['kind']} ({v['verifier']}) on the sampled solutions: AUC "
                  f"{fmt(v['auc'])}, within a problem {fmt(v['within_problem_auc'])}; mean "
                  f"score {fmt(v['mean_score_correct'])} correct, {fmt(v['mean_score_wrong'])} "
                  "wrong")
            for k, choice in (v.get("compute_optimal") or {}).items():
                print(f"compute_optimal at {k}: " + ", ".join(
                    f"bin {b} (predicted {'easiest' if b == 1 else 'hardest' if b == 5 else b}) "
                    f"{'/'.join(c)}" for b, c in choice.items()))
        t = result.timing
        print(f"\n{t['total_s']:.1f} s: sampling {t['sampling_s']:.1f} s, first calls "
              f"(compilation) {t['warmup_s']:.1f} s, verification and voting {t['other_s']:.1f} s")
        print(f"\nwrote {out}/results.jsonl, samples.jsonl and test_time_compute.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
