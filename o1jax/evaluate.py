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

import ml_collections

from o1jax import experiment, sharding
from o1jax import policy as policy_lib
from o1jax import workdir as wd
from o1jax.config import datasets
from o1jax.config.blocks import ToolsConfig
from o1jax.data.prompts import prompt_ids
from o1jax.models import hf
from o1jax.search import value_models
from o1jax.search.spec import EvalSpec
from o1jax.search.evaluation import evaluate
from o1jax.search.results import print_results, print_value_model, write_results

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
    ap.add_argument("--mesh-shape", default=None, help="data,fsdp,tensor, e.g. 1,1,-1: the "
                    "parameters are read sharded onto it (default: one device)")
    ap.add_argument("--split", default="test", choices=("test", "train", "hard"),
                    help="hard: held-out synthetic problems above the training difficulty")
    ap.add_argument("--num-problems", "--num_problems", type=int, default=None,
                    help="default: the run's eval.num_examples, else 200")
    ap.add_argument("--strategies", default="greedy,sample,majority,think_longer,budget_forcing")
    ap.add_argument("--verifier", default=None, help="the value model for best_of_n, "
                    "weighted_majority and search: critic (the RL run's), orm:PATH or prm:PATH; "
                    "or confidence (the policy's own token probabilities) or genrm:PATH (a "
                    "generative verifier of Countdown answers), neither for search")
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
    ap.add_argument("--answer-marker", "--answer_marker", default=None,
                    help="budget forcing: what starts the answer (default: the tokenizer's "
                    "end-of-thinking token, as Qwen3's </think>, where it has one, else \\boxed{)")
    ap.add_argument("--cue", default="Wait", help="budget forcing: the continuation cue")
    ap.add_argument("--give-up", "--give_up", default="",
                    help="budget forcing: the policy's give-up line (e.g. 'stuck' for "
                         "countdown_search); only it gets the cue before the minimum")
    ap.add_argument("--answer-on-new-line", "--answer_on_new_line", action="store_true",
                    help="budget forcing: a forced answer marker starts a line of its own (for "
                         "policies that answer on their own line, as the search tasks do)")
    ap.add_argument("--answer-after-give-up", "--answer_after_give_up", action="store_true",
                    help="budget forcing: a forced answer follows the give-up line on a line of "
                         "its own (for searches whose demonstrations box a guess after giving "
                         "up, as the search tasks' do)")
    ap.add_argument("--answer-at-line-end", "--answer_at_line_end", action="store_true",
                    help="budget forcing: a forced answer comes where a line ends, up to "
                         "--step-tokens before the budget, rather than cutting the line")
    ap.add_argument("--stop-loops", "--stop_loops", type=int, default=0,
                    help="budget forcing: a line that repeats one of the N lines before it "
                         "(a policy going round in a loop) forces the answer at its end")
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
    ap.add_argument("--tools", choices=("on", "off"), default=None,
                    help="run the policy's <tool> calls in the sandbox while sampling (default: "
                         "as the run trained, its tools block; off for --model)")
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


def _tools(cfg, flag: str | None) -> ToolsConfig:
    """The run's tools block, switched on or off by ``--tools``."""
    tools = ToolsConfig.from_config(cfg.get("tools"))
    return tools if flag is None else dataclasses.replace(tools, enabled=flag == "on")


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("o1jax").setLevel(logging.INFO)   # basicConfig is a no-op once some import
    # has given the root logger a handler (at WARNING): progress would go unseen
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
            give_up=args.give_up, answer_on_new_line=args.answer_on_new_line,
            answer_after_give_up=args.answer_after_give_up,
            answer_at_line_end=args.answer_at_line_end, stop_loops=args.stop_loops,
            min_thinking=args.min_thinking, answer_tokens=args.answer_tokens,
            beam_width=args.beam_width,
            step_tokens=args.step_tokens, probes=args.probes,
            tools=_tools(cfg, args.tools))
        spec.check()
        mesh = policy_lib.command_mesh(args.mesh_shape)
        if args.workdir:  # the run's tokenizer and prompt format, chat template included
            (policy, tokenizer, prompt), params = policy_lib.load_policy(
                args.workdir, args.step, mesh=mesh, stage=args.stage)
        else:
            policy, tokenizer, prompt = policy_lib.from_hf(args.model, mesh=mesh,
                                                           template=cfg.data.template)
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
            print_value_model(result.verifier)
        t = result.timing
        print(f"\n{t['total_s']:.1f} s: sampling {t['sampling_s']:.1f} s, first calls "
              f"(compilation) {t['warmup_s']:.1f} s, verification and voting {t['other_s']:.1f} s")
        print(f"\nwrote {out}/results.jsonl, samples.jsonl and test_time_compute.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
