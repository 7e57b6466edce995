"""Train a value model (the verifier of search and best-of-N) on a run's policy:
``python -m o1jax.train_verifier --workdir DIR --kind orm``.

Samples solutions to the run's training problems with its policy, labels them (ORM: the
outcome at every response token; PRM: Math-Shepherd labels at step ends, or with ``--labels
exact`` the solver's label of each line of a written search, with ``--labels valid`` whether
every line so far is valid), trains a value model (squared error, or for an ORM ``--loss
pairwise``: right over wrong solutions of a problem) from the run's critic when it has one, else
from the policy's backbone, or fresh in shapes of its own (``--model-size``), and writes it to
``--out`` (default WORKDIR/verifiers/KIND), for ``python -m o1jax.evaluate --verifier
KIND:PATH``. Prints the training loss and the value model's AUC and within-problem AUC on
held-out samples (and its step AUC against exact labels, where a task has them). ``--kind
genrm`` trains a generative verifier of Countdown answers instead (``o1jax/search/genrm.py``):
next-token prediction on synthetic rows, no samples to label; the policy's samples of held-out
problems measure it.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys

import jax
import numpy as np

from o1jax import policy as policy_lib
from o1jax import sft, sharding
from o1jax import workdir as wd
from o1jax.experiment import load_problems
from o1jax.models.layouts import value_params_from_policy
from o1jax.models.transformer import Transformer
from o1jax.rl.state import critic_model
from o1jax.rollout import SamplingConfig
from o1jax.search import genrm, strategies, synthetic, value_models, value_training

log = logging.getLogger("o1jax.train_verifier")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m o1jax.train_verifier",
                                 description=" ".join(__doc__.split("\n")[:2]))
    ap.add_argument("--workdir", required=True, help="a training workdir (local or gs://)")
    ap.add_argument("--kind", required=True, choices=("orm", "prm", "genrm"),
                    help="genrm: a causal LM that checks Countdown answers in writing, trained "
                    "on synthetic rows (o1jax/search/genrm.py), not on the policy's samples")
    ap.add_argument("--step", type=int, default=None, help="policy checkpoint (default: latest)")
    ap.add_argument("--num-problems", "--num_problems", type=int, default=512,
                    help="training problems to sample solutions to")
    ap.add_argument("--samples", type=int, default=8, help="solutions per problem")
    ap.add_argument("--continuations", type=int, default=4,
                    help="PRM: completions drawn from each step end (K)")
    ap.add_argument("--hard-labels", "--hard_labels", action="store_true",
                    help="PRM: a step is good if any continuation ends correct (default: the "
                    "fraction that do)")
    ap.add_argument("--labels", choices=("estimated", *value_training.STEP_RULES),
                    default="estimated",
                    help="PRM: estimated (Math-Shepherd continuations), exact (whether the "
                    "state a line leads to is still solvable) or valid (whether every line so "
                    "far is: no slip yet), the last two from the task's replay: "
                    f"{', '.join(value_training.REPLAYS)}")
    ap.add_argument("--slips", type=int, default=0,
                    help="PRM with exact or valid labels: add this many copies of each sample "
                    "cut after a line with one digit changed (o1jax/search/synthetic.py)")
    ap.add_argument("--swaps", type=int, default=0,
                    help="ORM, squared loss: add this many copies of each sample with its boxed "
                    "answer swapped for another sample's to the same problem, of the other "
                    "outcome where there is one (o1jax/search/synthetic.py)")
    ap.add_argument("--loss", choices=value_training.LOSSES, default="squared",
                    help="squared error on the labels, or (ORM) pairwise: Bradley-Terry over "
                    "each problem's right and wrong samples (a logit-valued model)")
    ap.add_argument("--model-size", "--model_size", default="policy",
                    help="the value model's shapes: policy (its own, started from the critic or "
                    "the policy's backbone), a preset name, or KEY=INT,... of "
                    f"{', '.join(value_models.SHAPES)}; other shapes start fresh")
    ap.add_argument("--mixed-only", "--mixed_only", action="store_true",
                    help="train only on problems whose samples are partly right, partly wrong "
                    "(what a value model must tell apart to choose among samples)")
    ap.add_argument("--hard-share", "--hard_share", type=float, default=0.2,
                    help="GenRM: the share of its rows one difficulty above the run's")
    ap.add_argument("--steps", type=int, default=400, help="optimizer steps")
    ap.add_argument("--batch-size", "--batch_size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--held-out", "--held_out", type=int, default=100,
                    help="test problems whose samples measure the value model's AUC")
    ap.add_argument("--out", default=None, help="default: WORKDIR/verifiers/KIND")
    ap.add_argument("--seed", type=int, default=0)
    sharding.add_distributed_flags(ap)
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("o1jax").setLevel(logging.INFO)   # basicConfig is a no-op once some import
    # has given the root logger a handler (at WARNING): progress would go unseen
    try:
        sharding.initialize_from_flags(args)
        for name in ("num_problems", "samples", "continuations", "steps", "batch_size"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        exact = args.labels in value_training.STEP_RULES
        if exact and args.kind != "prm":
            raise ValueError(f"--labels {args.labels} labels steps: use it with --kind prm")
        if args.slips and not exact:
            raise ValueError("--slips needs replayed labels: add --labels exact or valid")
        if args.slips < 0 or args.swaps < 0:
            raise ValueError("--slips and --swaps must be >= 0")
        if not 0 <= args.hard_share <= 1:
            raise ValueError(f"--hard-share is a share of rows, in [0, 1]: got {args.hard_share}")
        if args.swaps and (args.kind != "orm" or args.loss != "squared"):
            raise ValueError("--swaps adds outcome rows: use it with --kind orm --loss squared")
        if args.loss == "pairwise" and args.kind != "orm":
            raise ValueError("--loss pairwise ranks outcomes: use it with --kind orm")
        if not wd.is_workdir(args.workdir):
            raise ValueError(f"--workdir {args.workdir} holds no training run")
        root = wd.resolve(args.workdir)
        cfg = wd.load_config(root)
        # the run's policy and prompt format (chat template included), its critic if any
        policy, tokenizer, fmt = policy_lib.from_workdir(root)
        value_cfg = value_models.value_config(policy.cfg, args.model_size)
        params, stage, step = policy_lib.restore_params(root, policy, args.step)
        critic = policy_lib.restore_params(root, critic_model(policy), step, "rl", "critic")[0] \
            if stage == "rl" and cfg.rl.algorithm == "ppo" else None
        train = load_problems(cfg, root, "train", args.num_problems)
        held_out = load_problems(cfg, root, "test", args.held_out)
        if exact:
            value_training.check_replayable(train)
        if args.swaps and fmt.reads_images:   # synthetic rows are text rows
            raise ValueError("--swaps makes text rows: a vision policy's ORM trains without it")
        if args.kind == "genrm":
            genrm.check_tasks(train)
            genrm.check_model(value_cfg)
    except (ValueError, FileNotFoundError, sharding.DistributedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.kind == "genrm":
        return _train_genrm(args, root, cfg, policy, params, value_cfg, tokenizer, fmt,
                            held_out, stage, step)
    p, n = fmt.max_prompt_len, cfg.eval.max_new_tokens
    sample = _sampler(args, cfg, policy, params, tokenizer, fmt)
    gen = sample(train, args.seed)
    log.info("%d solutions sampled, %.1f%% correct", gen.correct.size, 100 * gen.correct.mean())
    if args.kind == "orm":
        data = value_training.orm_labels(gen, p)
    elif exact:
        data = value_training.exact_labels(train, tokenizer, gen, p, args.labels)
    else:
        data = value_training.math_shepherd_labels(
            policy, params, train, tokenizer, gen, p, args.continuations, n,
            cfg.eval.temperature, soft=not args.hard_labels,
            batch_prompts=cfg.eval.batch_prompts, seed=args.seed + 1)
    data = data._replace(images=value_training.row_images(train, fmt, args.samples))
    rate = gen.correct.mean(axis=1)
    problems = (rate > 0) & (rate < 1) if args.mixed_only else np.ones_like(rate, bool)
    extra = synthetic.labelled_rows(train, tokenizer, gen, p, problems, slips=args.slips,
                                    swaps=args.swaps, rule=args.labels, seed=args.seed + 3)
    if args.mixed_only:
        keep = np.repeat(problems, args.samples)
        if not keep.any():
            print("error: no problem has both right and wrong samples; drop --mixed-only",
                  file=sys.stderr)
            return 2
        data = jax.tree.map(lambda x: x[keep], data)
        log.info("%d rows of %d problems with mixed outcomes", int(keep.sum()),
                 int(keep.sum()) // args.samples)
    if extra is not None:   # text rows: slips need replayed (text) tasks, swaps a text policy
        data = synthetic.concat(data, extra, tokenizer.pad_id)
    value_model, key = Transformer(value_cfg, head="value"), jax.random.key(args.seed)
    if value_cfg != policy.cfg:   # other shapes cannot start from the policy's weights
        init, started = value_model.init(key), "fresh (shapes of its own)"
    elif critic is not None:
        init, started = critic, "critic"
    else:
        init, started = value_params_from_policy(params, key), "policy backbone"
    try:
        trained, losses = value_training.train_value(
            value_model, init, data, args.steps, args.lr, args.batch_size, args.seed, args.loss,
            args.samples)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    output = "logit" if args.loss == "pairwise" else "value"
    check = sample(held_out, args.seed + 2)
    checked = value_training.held_out_report(
        value_models.ValueModel(args.kind, value_model, trained, "", output), held_out,
        tokenizer, check, fmt, args.labels if exact else "exact")
    first, last = float(np.mean(losses[:20])), float(np.mean(losses[-20:]))
    out = wd.resolve(args.out or root / "verifiers" / args.kind)
    info = dict(workdir=str(root), policy_stage=stage, policy_step=int(step),
                problems=len(train), samples=args.samples, labelled_tokens=int(
                    data.weights.sum()), labels=args.labels if args.kind == "prm" else None,
                continuations=args.continuations if args.kind == "prm" and
                not exact else None, loss=args.loss, steps=args.steps,
                loss_first=first, loss_last=last, held_out_auc=checked["auc"],
                held_out_within_problem_auc=checked["within_problem_auc"],
                held_out_step_auc=checked.get("step_auc"), mixed_only=args.mixed_only,
                init=started, slips=args.slips, swaps=args.swaps)
    value_models.save(out, args.kind, policy.cfg, trained, info, value_cfg, output)
    if wd.is_writer():
        print(json.dumps(dict(out=str(out), **info)))
    return 0


def _sampler(args, cfg, policy, params, tokenizer, fmt):
    sampling = SamplingConfig(cfg.eval.max_new_tokens, cfg.eval.temperature,
                              num_samples=args.samples, stop_ids=tokenizer.stop_ids,
                              pad_id=tokenizer.pad_id)
    return lambda problems, seed: strategies.generate(
        policy, params, problems, tokenizer, sampling, fmt,
        max(1, cfg.eval.batch_prompts // args.samples), seed)


def _train_genrm(args, root, cfg, policy, params, value_cfg, tokenizer, fmt, held_out, stage,
                 step) -> int:
    """A GenRM on synthetic rows, from the policy's weights in its shapes (it already reads
    these questions) or fresh in its own; measured on the policy's samples of held-out
    problems."""
    model = Transformer(value_cfg, head="policy")
    if value_cfg == policy.cfg:
        init, started = params, "policy"
    else:
        init, started = model.init(jax.random.key(args.seed)), "fresh (shapes of its own)"
    rng = random.Random(args.seed)
    trained, losses = sft.fit(
        model, init, lambda _: genrm.synthetic_batch(rng, args.batch_size, cfg.data.difficulty,
                                                     args.hard_share),
        tokenizer, genrm.FORMAT, genrm.MAX_ROW, args.steps, args.lr)
    check = _sampler(args, cfg, policy, params, tokenizer, fmt)(held_out, args.seed + 2)
    scores, _ = genrm.scores(model, trained, tokenizer, [e["question"] for e in held_out],
                             check.answers)
    checked = value_models.report(value_models.ValueModel("genrm", model, trained, ""), scores,
                                  check.correct, check.finished)
    out = wd.resolve(args.out or root / "verifiers" / "genrm")
    info = dict(workdir=str(root), policy_stage=stage, policy_step=int(step),
                rows=args.steps * args.batch_size, hard_share=args.hard_share, steps=args.steps,
                loss_first=float(np.mean(losses[:20])), loss_last=float(np.mean(losses[-20:])),
                held_out_auc=checked["auc"],
                held_out_within_problem_auc=checked["within_problem_auc"], init=started)
    value_models.save(out, "genrm", policy.cfg, trained, info, value_cfg)
    if wd.is_writer():
        print(json.dumps(dict(out=str(out), **info)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
