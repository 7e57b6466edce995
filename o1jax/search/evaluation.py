"""Held-out evaluation with test-time compute: ``evaluate`` runs the strategies of
``o1jax.search.strategies`` at each budget on problems and returns the results rows and samples
(accuracy with a 95% Wilson interval, mean tokens, FLOPs and seconds per problem, per difficulty
bin); ``evaluate_stage`` is training's evaluation of its policy (cached per step and spec).
The evaluate command (``python -m o1jax.evaluate``) and the train-time curve both call them.

Model output is verified in the worker pool under time limits; with several processes each
feeds its own rows and verifies its share, and process 0 writes the files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import NamedTuple, Sequence


from o1jax import sharding
from o1jax import workdir as wd
from o1jax.data.pipeline import decode_example
from o1jax.data.prompts import stack_images
from o1jax.models.transformer import Params, Transformer
from o1jax.rewards.api import default_pool
from o1jax.config.blocks import ToolsConfig
from o1jax.rollout import SamplingConfig
from o1jax.rollout import tools as tools_lib
from o1jax.search import (beam, compute_optimal, genrm, mcts, results, strategies,
                          value_models, voting)
from o1jax.search.spec import EvalSpec, check_memory
from o1jax.search.results import difficulty_bins, result_rows, sample_records
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
    if spec.answer_marker is None:   # a chat model's own end-of-thinking token (Qwen3: </think>)
        spec = dataclasses.replace(spec, answer_marker=tokenizer.end_of_thinking or "\\boxed{")
    spec.check(policy)
    needs = sorted(set(spec.strategies) & set(strategies.VERIFIED + strategies.SEARCHED +
                                              ("compute_optimal",)))
    if needs and verifier is None:
        raise ValueError(f"{', '.join(needs)} need a verifier: --verifier critic, confidence, "
                         "orm:PATH, prm:PATH or genrm:PATH")
    searched_by = sorted(set(spec.strategies) & set(strategies.SEARCHED))
    if verifier is not None and verifier.kind in value_models.ANSWER_ONLY and searched_by:
        raise ValueError(f"{', '.join(searched_by)} score partial solutions, which --verifier "
                         f"{verifier.kind} cannot: give orm:PATH, prm:PATH or critic")
    if verifier is not None and verifier.kind == "genrm":
        genrm.check_tasks(examples)
    vcfg = None if verifier is None or verifier.model is None else verifier.model.cfg
    enc = lambda s: tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
    common = dict(stop_ids=tokenizer.stop_ids, pad_id=tokenizer.pad_id,
                  tools=tools_lib.from_config(spec.tools, tokenizer))
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
    break_ids = enc(spec.answer_break) if spec.answer_break else ()
    for b in spec.token_budgets_or_default():
        if "think_longer" in spec.strategies:
            plans.append((f"think_longer@{b}", 1, SamplingConfig(b, greedy=True, **common)))
        if "budget_forcing" in spec.strategies:
            forcing = spec.forcing(b, enc(spec.answer_marker), enc(spec.cue),
                                   enc(spec.give_up) if spec.give_up else (), break_ids)
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
    checked, scores, costs = None, None, None
    if sampled is not None:
        voted = {"majority", "weighted_majority"} & set(spec.strategies)
        classes = voting.group_answers(sampled.answers, default_pool()) if voted else None
        if set(needs) & set(strategies.VERIFIED + ("compute_optimal",)):
            if verifier.kind == "genrm":   # its check costs its own prefill and decode
                scores, costs = genrm.scores(verifier.model, verifier.params, tokenizer,
                                             [e["question"] for e in examples], sampled.answers)
            else:
                scores, costs = sampled.confidence, value_models.forward_costs(vcfg, sampled)
            if verifier.kind not in value_models.ANSWER_ONLY:
                scores = value_models.outcome_scores(
                    verifier, sampled.tokens, sampled.mask,
                    stack_images(examples, fmt, largest=True),
                    sampled.correct.shape[1]).reshape(sampled.correct.shape)
            checked = value_models.report(verifier, scores, sampled.correct, sampled.finished)
        for strategy in [s for s in strategies.SAMPLED if s in spec.strategies] + ["pass_at_k"]:
            for k in spec.budgets:
                scored[strategy, k] = strategies.score(
                    strategy, k, sampled, mcfg, classes, scores, costs)
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
        probe_cost = strategies.score("best_of_n", probes, sampled, mcfg, None, scores, costs)
        checked["compute_optimal"] = {}
        for k in spec.budgets:
            pool = {s: sc for (s, b), sc in scored.items() if b == k and s in
                    strategies.SELECTING}
            scored["compute_optimal", k], choices = compute_optimal.choose(
                pool, predicted, probe_cost)
            checked["compute_optimal"][k] = choices
    order = {s: i for i, s in enumerate(strategies.STRATEGIES + ("pass_at_k",))}
    choosing = set(strategies.SELECTING + ("compute_optimal",)) - {"majority"}

    def paired(s, b):   # a rule that chooses among k samples, against majority over k
        return scored.get(("majority", b)) if s in choosing else None

    votes = sorted((results.flops(sc), b, sc) for (s, b), sc in scored.items() if s == "majority")

    def costlier(s, b):   # a verifier-guided strategy against the cheapest vote costing more
        if s not in strategies.VERIFIED + strategies.SEARCHED + ("compute_optimal",):
            return None
        spent = results.flops(scored[s, b])
        return next(((k, sc) for f, k, sc in votes if f >= spent), None)

    rows = [row for (s, b) in sorted(scored, key=lambda sb: (order[sb[0]], sb[1]))
            for row in result_rows(s, b, scored[s, b], bins, paired(s, b), costlier(s, b))]
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
                    batch_prompts=cfg.eval.batch_prompts, seed=cfg.seed, prompt=exp.prompt,
                    tools=ToolsConfig.from_config(cfg.get("tools")))
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
