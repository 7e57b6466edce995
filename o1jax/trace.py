"""Inside one reasoning trace: ``python -m o1jax.trace --workdir DIR --problem "12+35=?"``.

For the run's policy's solution to a problem (greedy, or sampled with ``--temperature``):

    values       each token's value under the critic (or ``--verifier``): the estimated chance
                 of ending correct from the prefix that ends at that token
    importance   each step's (line's) Monte-Carlo importance, Thought Anchors style: K
                 continuations resampled from the prefix before the step and from the prefix
                 after it; the change in the fraction that end correct
    attention    attention weights of chosen layers and heads over the whole sequence
    image        (a vision policy) the attention of the answer tokens to the image's tokens,
                 averaged over the chosen layers and heads, as a heat map over the image
    search       (a search task: countdown_search, sudoku) each line replayed from the
                 question's start: its state, its exact label (solvable or a dead end), the
                 dead ends it states, back-ups and the line each returns to, invalid lines

The problem is ``--problem`` (with ``--image PATH`` for a vision policy, read as
``o1jax.data.builders.load_image`` does: squared to the encoder's size, or at the size a
Qwen2.5-VL's processor gives it) or ``--example K``: held-out example K of the run's
task, image and answer included::

    python -m o1jax.trace --workdir DIR --example 3
    python -m o1jax.trace --workdir DIR --image cat.png --problem "How many red objects are in \
        the image?" --answer 2

Writes WORKDIR/traces/NAME.json (what the report page renders: the ``Trace`` fields, and for a
vision policy ``image``, the name of NAME_image.png beside it), NAME.html and its images
(``--out`` elsewhere). Model text is escaped wherever it is shown.
"""

from __future__ import annotations

import argparse
import sys

from etils import epath

from o1jax import workdir as wd
from o1jax.data.builders import load_image
from o1jax.experiment import load_problems
from o1jax.policy import load_policy
from o1jax.search import value_models
from o1jax.selfplay.problems import judge
from o1jax.traces.reasoning import trace
from o1jax.traces.search import search_lines, summary
from o1jax.traces.view import write_trace


def main(argv=None) -> int:
    ints = lambda s: tuple(int(x) for x in s.split(",") if x.strip())  # noqa: E731
    ap = argparse.ArgumentParser(prog="python -m o1jax.trace", description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", required=True, help="a training workdir (local or gs://)")
    ap.add_argument("--problem", default=None, help="the question, as the task writes it")
    ap.add_argument("--image", default=None, help="with --problem, for a vision policy: the "
                    "image file it asks about (resized as the policy reads images)")
    ap.add_argument("--example", type=int, default=None, help="instead of --problem: held-out "
                    "example K of the run's task (its image and answer too)")
    ap.add_argument("--answer", default=None, help="the reference answer (default: the "
                    "example's, or computed for the synthetic tasks' forms)")
    ap.add_argument("--step", type=int, default=None)
    ap.add_argument("--verifier", default=None, help="a value model, orm:PATH or prm:PATH "
                    "(default: the run's critic, when it has one)")
    ap.add_argument("--samples", type=int, default=8, help="K continuations per prefix")
    ap.add_argument("--layers", type=ints, default=(0,))
    ap.add_argument("--heads", type=ints, default=(0,))
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--sample", action="store_true", help="a sampled solution, not greedy")
    ap.add_argument("--solution", default=None, help="trace this solution text instead of the "
                    "policy's own")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="default WORKDIR/traces")
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def held_out_example(cfg, workdir, k: int) -> dict:
    """Example ``k`` of the test split of the run's task (decoded: question, answer, and the
    image of a visual task)."""
    if k < 0:
        raise ValueError(f"--example {k}: an index from 0")
    examples = load_problems(cfg, wd.resolve(workdir), "test", k + 1)
    if k >= len(examples):
        raise ValueError(f"--example {k}: the run's test split has {len(examples)} examples")
    return examples[k]


def _run(args) -> int:
    if not wd.is_workdir(args.workdir):
        raise ValueError(f"--workdir {args.workdir} is not a training workdir (no checkpoints "
                         "or config.json)")
    if (args.problem is None) == (args.example is None):
        raise ValueError("give --problem TEXT (with --image PATH for a vision policy) or "
                         "--example K")
    if args.example is not None and args.image:
        raise ValueError("--example K brings its own image: leave --image out")
    cfg = wd.load_config(args.workdir)
    (policy, tok, fmt), params = load_policy(args.workdir, args.step)
    if args.image and policy.cfg.vision is None:
        raise ValueError(f"--image: the run's policy reads no images (a text-only model; "
                         f"data.task={cfg.data.task!r}): leave --image out")
    problem, answer, image = args.problem, args.answer, None
    if args.example is not None:
        example = held_out_example(cfg, args.workdir, args.example)
        problem, image = example["question"], example.get("image")
        answer = answer if answer is not None else example["answer"]
    elif args.image:
        image = load_image(args.image, policy.cfg.vision.read_size, f"--image {args.image}")
    if answer is None:
        p = judge(problem, (200, 12, 8, 1e30), held_out_ok=True)
        if p.status != "accepted":
            raise ValueError(f"no reference answer for {problem!r} ({p.status}); give "
                             "--answer")
        answer = p.answer
    for name, values in (("--layers", args.layers), ("--heads", args.heads)):
        limit = policy.cfg.num_layers if name == "--layers" else policy.cfg.num_heads
        if any(not 0 <= v < limit for v in values):
            raise ValueError(f"{name} {values}: the model has {limit}")
    value = None
    spec = args.verifier or ("critic" if cfg.rl.algorithm == "ppo" else None)
    if spec:
        v = value_models.load(spec, policy, args.workdir, args.step, steps=True)
        value = (v.model, v.params, v.output)
    tr = trace(policy, params, tok, problem, answer, fmt, value,
               k=args.samples, max_new=cfg.eval.max_new_tokens, temperature=args.temperature,
               greedy=not args.sample, layers=args.layers, heads=args.heads, seed=args.seed,
               solution=args.solution, image=image)
    tr = tr._replace(search=search_lines(cfg.data.task, problem, tr.response))
    out = epath.Path(args.out) if args.out else wd.resolve(args.workdir) / "traces"
    out.mkdir(parents=True, exist_ok=True)
    name = write_trace(out, tr, image, problem)
    print(f"{'correct' if tr.correct else 'wrong'}: {tr.response!r}")
    for s, b, a in zip(tr.steps, tr.before, tr.after):
        print(f"  {a - b:+.2f}  ({b:.2f} -> {a:.2f})  {s}")
    if tr.search is not None:
        print("search: " + ", ".join(f"{k} {v}" for k, v in summary(tr.search).items()))
    print(f"trace: {out / name}.html")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
