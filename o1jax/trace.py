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

The problem is ``--problem`` (with ``--image PATH`` for a vision policy, read and resized as
``o1jax.data.builders.load_image`` does) or ``--example K``: held-out example K of the run's
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
import hashlib
import html
import json
import re
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from o1jax import workdir as wd
from o1jax.data.builders import load_image
from o1jax.data.prompts import PromptFormat, pad_prompts, prompt_ids
from o1jax.experiment import load_problems
from o1jax.models.layers.attention import attention_probs, project_qkv
from o1jax.models.layers.norm import rms_norm
from o1jax.models.layers.rope import inverse_frequencies, rope_angles
from o1jax.models.transformer import Params, Transformer, positions_from_mask, unstack_layers
from o1jax.models.vision import VisionConfig, patch_grid, place_image_tokens
from o1jax.rewards.answers import all_boxed
from o1jax.rewards.api import verify_batch
from o1jax.rollout.decoding import SamplingConfig
from o1jax.rollout.sampler import make_sampler
from o1jax.plots import plot_attention, plot_image_attention, png_bytes, read_png
from o1jax.policy import load_policy
from o1jax.rollout.scoring import prefix_values
from o1jax.search import value_models
from o1jax.search.steps import step_end_ids, step_ends
from o1jax.selfplay.problems import judge


class Trace(NamedTuple):
    """tokens: the response's token strings; values: [n] or None; steps: the response's lines
    (each with its last token index); before / after: fraction of K continuations correct from
    the prefix before / after each step; attention: {"layer/head": [T, T]} over prompt +
    response, with ``labels`` the token strings of both. answer_tokens: indices into ``tokens``
    of the final answer (``answer_span`` "boxed": the content of the last \\boxed{}; "response":
    every token, when there is none). A vision policy's trace also has image_attention
    [len(answer_tokens), N]: the attention weight of each answer token's query (the position
    whose output is that token) on each of the N image tokens, mean over the chosen layers and
    heads (a row sums to at most 1); and image_heat [G, G] (G patches per side): the mean over
    the answer tokens, each patch holding its image token's weight (``image_heat``)."""
    problem: str
    answer: str
    response: str
    correct: bool
    tokens: list[str]
    values: list[float] | None
    steps: list[str]
    before: list[float]
    after: list[float]
    labels: list[str]
    attention: dict
    answer_tokens: list[int]
    answer_span: str
    image_attention: list[list[float]] | None = None
    image_heat: list[list[float]] | None = None

    @property
    def importance(self) -> list[float]:
        return [a - b for a, b in zip(self.after, self.before)]


def attention_maps(model: Transformer, params: Params, tokens: jax.Array, mask: jax.Array,
                   layers: list[int], images: jax.Array | None = None) -> jax.Array:
    """Attention weights [len(layers), B, H, T, T] of a forward pass over ``tokens``, the
    model's own layer code run one layer at a time (weights taken at the chosen layers).
    ``images`` [B, S, S, 3] uint8 (a vision model): each row's image, read at its
    placeholders, with the rotary positions (M-RoPE's too) ``Transformer.hidden`` gives it."""
    c = model.cfg
    mask = mask.astype(bool)
    t = tokens.shape[1]
    inv = inverse_frequencies(c.head_dim, c.rope_theta,
                              dict(c.rope_scaling) if c.rope_scaling else None)
    positions = model.rope_positions(tokens, positions_from_mask(mask), mask, images is not None)
    rope = rope_angles(positions, inv, c.mrope_section)
    key_mask = mask[:, None, :] & jnp.tril(jnp.ones((t, t), bool))[None]
    x = jnp.take(params["embed"], tokens, axis=0).astype(c.compute_dtype)
    if images is not None:
        x = place_image_tokens(x, tokens, c.image_token_id, model.encode_images(params, images))
    out = []
    for i, p in enumerate(unstack_layers(params)["layers"]):
        if i in layers:
            q, k, _ = project_qkv(rms_norm(x, p["attn_norm"], c.rms_norm_eps), p, rope,
                                  c.num_heads)
            out.append(attention_probs(q, k, key_mask))
        x, _, _ = model._layer(x, p, rope, key_mask)
    return jnp.stack(out)


def answer_token_span(tokens: list[str]) -> tuple[list[int], str]:
    """Indices of the response tokens (their strings, in order) that write the final answer:
    those overlapping the content of the last closed, non-empty \\boxed{} (or \\fbox{}), and
    "boxed"; else every index, and "response"."""
    text = "".join(tokens)
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    boxed = [(s, c) for s, c in zip(starts, all_boxed(text)) if c]
    if not boxed:
        return list(range(len(tokens))), "response"
    begin, content = boxed[-1]
    end = begin + len(content)
    offsets = np.cumsum([0] + [len(t) for t in tokens])
    return [i for i in range(len(tokens)) if offsets[i] < end and offsets[i + 1] > begin], \
        "boxed"


def image_heat(cfg: VisionConfig, weights: np.ndarray) -> np.ndarray:
    """Weights [N] of the image tokens on the patch grid: [G, G], G = image_size / patch_size,
    each patch holding the weight of the image token its merge window became (the encoder joins
    patches ``patch_grid`` order, merge_size^2 at a time, into image token k)."""
    rows, cols = patch_grid(cfg).T
    heat = np.zeros((cfg.grid, cfg.grid), np.float32)
    heat[rows, cols] = np.asarray(weights)[np.arange(len(rows)) // cfg.merge_size ** 2]
    return heat


def continuation_rates(policy: Transformer, params: Params, prefixes: list[list[int]],
                       prompt_len: int, answer: str, tokenizer, k: int, max_new: int,
                       temperature: float, key: jax.Array, length: int,
                       images: np.ndarray | None = None) -> list[float]:
    """Fraction of ``k`` sampled continuations of each prefix (prompt + the first steps of a
    solution) whose answer is correct: one sampler call per prefix, key ``fold_in(key, j)``,
    every prefix left-padded to ``length``; a truncated continuation counts as wrong.
    ``images`` [1, S, S, 3] uint8: the prompt's image (a vision policy)."""
    sampler = make_sampler(policy, SamplingConfig(
        max_new_tokens=max_new, temperature=temperature, num_samples=k,
        stop_ids=tokenizer.stop_ids, pad_id=tokenizer.pad_id), gather=True)
    rates = []
    for j, prefix in enumerate(prefixes):
        toks, mask = pad_prompts([prefix], tokenizer.pad_id, length)
        roll = sampler(params, toks, mask, jax.random.fold_in(key, j), images)
        head = tokenizer.decode(prefix[prompt_len:])
        texts = [head + tokenizer.decode(row[resp.astype(bool)].tolist()[:-1])
                 for row, resp in zip(roll.tokens, roll.response_mask)]
        ok = verify_batch(texts, [answer] * k)
        rates.append(float(np.mean([bool(f) and c for f, c in zip(roll.finished, ok)])))
    return rates


def trace(policy: Transformer, params: Params, tokenizer, problem: str, answer: str,
          fmt: PromptFormat, value: tuple | None = None, k: int = 8, max_new: int = 96,
          temperature: float = 1.0, greedy: bool = True, layers=(0,), heads=(0,),
          seed: int = 0, solution: str | None = None, image: np.ndarray | None = None) -> Trace:
    """The trace of the policy's solution to ``problem`` (see the module docstring), or of a
    given ``solution`` text. ``image`` [S, S, 3] uint8: what a vision policy sees with the
    problem (every forward pass reads it: the solution, the continuations, the value model's
    and the attention maps' passes)."""
    if (image is None) != (policy.cfg.vision is None):
        raise ValueError("the run's policy reads an image with each problem: give --image PATH "
                         "or --example K" if image is None else "--image: the run's policy "
                         "reads no images (a text-only model): leave --image out")
    images = None if image is None else np.asarray(image, np.uint8)[None]
    prompt = prompt_ids({"question": problem, "image": image}, tokenizer, fmt)
    room = policy.cfg.max_seq_len - len(prompt)
    if room < 2:
        raise ValueError(f"the problem's prompt is {len(prompt)} tokens; the model reads at most "
                         f"{policy.cfg.max_seq_len}: shorten the problem")
    max_new = min(max_new, room)
    key = jax.random.key(seed)
    solve = make_sampler(policy, SamplingConfig(
        max_new_tokens=max_new, greedy=greedy, temperature=temperature,
        stop_ids=tokenizer.stop_ids, pad_id=tokenizer.pad_id), gather=True)
    if solution is None:
        toks, mask = pad_prompts([prompt], tokenizer.pad_id)
        roll = solve(params, toks, mask, key, images)
        resp = roll.tokens[0][roll.response_mask[0].astype(bool)].tolist()
        finished = bool(roll.finished[0])
    else:
        resp, finished = tokenizer.encode(solution, False) + [tokenizer.stop_ids[0]], True
        if len(prompt) + len(resp) > policy.cfg.max_seq_len:
            raise ValueError(f"problem and solution are {len(prompt) + len(resp)} tokens; the "
                             f"model reads at most {policy.cfg.max_seq_len}")
    body = resp[:-1] if finished and resp else resp
    response = tokenizer.decode(body)
    correct = finished and verify_batch([response], [answer])[0]
    seq = prompt + resp
    seq_arr = jnp.asarray([seq], jnp.int32)
    seq_mask = jnp.ones_like(seq_arr, bool)

    values = None
    if value is not None:
        v = prefix_values(value[0], value[1], seq_arr, seq_mask, images)[0]
        values = [float(x) for x in v[len(prompt):len(prompt) + len(body)]]

    ends = step_ends(body, set(step_end_ids(tokenizer)))
    steps = [tokenizer.decode(body[(ends[i - 1] + 1 if i else 0):e + 1]).strip("\n")
             for i, e in enumerate(ends)]
    # the prefix before step j: the prompt and the steps before it; after the last step the
    # solution is complete, and its own correctness is the rate
    prefixes = [prompt + body[:(ends[j - 1] + 1 if j else 0)] for j in range(len(ends))]
    before = []
    if ends:
        length = len(prefixes[-1])
        before = continuation_rates(policy, params, prefixes, len(prompt), answer, tokenizer,
                                    k, min(max_new, policy.cfg.max_seq_len - length),
                                    temperature, jax.random.fold_in(key, 1), length, images)
    after = before[1:] + [float(correct)] if ends else []

    maps = np.asarray(attention_maps(policy, params, seq_arr, seq_mask, list(layers),
                                     images))[:, 0][:, list(heads)]      # [layers, heads, T, T]
    attention = {f"{l}/{h}": maps[i, j].tolist()
                 for i, l in enumerate(layers) for j, h in enumerate(heads)}
    tokens = [tokenizer.decode([t]) for t in body]
    labels = [tokenizer.decode([t]) for t in seq]
    answer_tokens, answer_span = answer_token_span(tokens)
    image_attention = heat = None
    if image is not None:
        # the image tokens are the prompt's placeholders; the query at position p produces
        # token p + 1, so answer token i is produced at len(prompt) + i - 1
        keys = [p for p, t in enumerate(prompt) if t == policy.cfg.image_token_id]
        for k, p in enumerate(keys):
            labels[p] = f"<image {k}>"
        queries = [len(prompt) + i - 1 for i in answer_tokens]
        weights = maps.mean(axis=(0, 1))[np.ix_(queries, keys)]        # [answers, N]
        image_attention = weights.tolist()
        heat = image_heat(policy.cfg.vision, weights.mean(axis=0)).tolist() if queries else None
    return Trace(problem, answer, response, bool(correct), tokens, values, steps, before, after,
                 labels, attention, answer_tokens, answer_span, image_attention, heat)


def _colour(v: float) -> str:
    """Red (0) through yellow to green (1), as a CSS background."""
    v = min(max(v, 0.0), 1.0)
    return f"rgba({int(255 * (1 - v))},{int(200 * v + 40)},60,0.35)"


def trace_html(tr: dict, images: dict[str, str], image_view: str | None = None) -> str:
    """A trace (``Trace._asdict()``) as an HTML fragment: tokens coloured by value, the steps
    with their importance, the attention images (``images``: "layer/head" -> file) and, for a
    vision policy, ``image_view``: the file of the answer tokens' attention over the image."""
    esc = lambda x: html.escape(str(x), quote=True)  # noqa: E731
    verdict = "correct" if tr["correct"] else "wrong"
    parts = [f"<h3>{esc(tr['problem'])} (answer {esc(tr['answer'])}): {verdict}</h3>"]
    if image_view:
        answer = "".join(tr["tokens"][i] for i in tr["answer_tokens"])
        which = (f"the answer inside \\boxed{{}}, <code>{esc(answer)}</code>"
                 if tr["answer_span"] == "boxed" else "every response token (no \\boxed{} "
                 "answer)")
        parts.append(f"<p>The image, and where the answer tokens looked in it: {which}. Each "
                     "one's attention to the image tokens (its query: the position that wrote "
                     "it), mean over layer/head " + esc(", ".join(tr["attention"])) + " and "
                     "over the answer tokens; each image token covers its merged window of "
                     f'patches.<br><img src="{esc(image_view)}" alt="image attention"></p>')
    if tr["values"] is not None:
        spans = "".join(f'<span title="{v:.3f}" style="background:{_colour(v)}">{esc(t)}</span>'
                        for t, v in zip(tr["tokens"], tr["values"]))
        parts.append("<p>Each token coloured by the value model's estimate that the solution "
                     "ends correct from there (red 0, green 1; hover for the number):</p>"
                     f"<pre>{spans}</pre>")
    else:
        parts.append(f"<pre>{esc(tr['response'])}</pre><p>(no value model: the run has no "
                     "critic; pass --verifier)</p>")
    rows = "".join(f"<tr><td style='text-align:left'><code>{esc(s)}</code></td>"
                   f"<td>{b:.2f}</td><td>{a:.2f}</td><td>{a - b:+.2f}</td></tr>"
                   for s, b, a in zip(tr["steps"], tr["before"], tr["after"]))
    parts.append("<p>Step importance: the fraction of resampled continuations that end correct "
                 "before and after each step, and the change.</p><table><tr><th>step</th>"
                 f"<th>before</th><th>after</th><th>importance</th></tr>{rows}</table>")
    for key, name in images.items():
        layer, head = key.split("/")
        parts.append(f'<p>Attention, layer {esc(layer)} head {esc(head)}:<br>'
                     f'<img src="{esc(name)}" alt="attention {esc(key)}"></p>')
    return "".join(parts)


def image_attention_view(tr: dict, source, out, prefix: str) -> str | None:
    """Draws the answer tokens' attention over the image of ``tr`` (``tr["image"]``: a PNG in
    ``source``) into ``out`` as PREFIX_image_attention.png; returns its name, or None for a
    trace without an image or without answer tokens."""
    if not tr.get("image") or tr.get("image_heat") is None:
        return None
    name = f"{prefix}_image_attention.png"
    plot_image_attention(read_png(epath.Path(source) / tr["image"]), np.asarray(tr["image_heat"]),
                         out / name, title="answer tokens' attention to the image")
    return name


def attention_images(tr: dict, out, prefix: str) -> dict[str, str]:
    """Draws each attention map of ``tr`` into ``out`` as PREFIX_L_H.png; returns their names."""
    names = {}
    for key, matrix in tr["attention"].items():
        name = f"{prefix}_{key.replace('/', '_')}.png"
        plot_attention(tr["labels"], np.asarray(matrix), out / name, title=f"layer/head {key}")
        names[key] = name
    return names


def main(argv=None) -> int:
    ints = lambda s: tuple(int(x) for x in s.split(",") if x.strip())  # noqa: E731
    ap = argparse.ArgumentParser(prog="python -m o1jax.trace", description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", required=True, help="a training workdir (local or gs://)")
    ap.add_argument("--problem", default=None, help="the question, as the task writes it")
    ap.add_argument("--image", default=None, help="with --problem, for a vision policy: the "
                    "image file it asks about (resized to the encoder's size)")
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
        image = load_image(args.image, policy.cfg.vision.image_size, f"--image {args.image}")
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
        v = value_models.load(spec, policy, args.workdir, args.step)
        value = (v.model, v.params)
    tr = trace(policy, params, tok, problem, answer, fmt, value,
               k=args.samples, max_new=cfg.eval.max_new_tokens, temperature=args.temperature,
               greedy=not args.sample, layers=args.layers, heads=args.heads, seed=args.seed,
               solution=args.solution, image=image)
    out = epath.Path(args.out) if args.out else wd.resolve(args.workdir) / "traces"
    out.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(problem.encode())
    data = tr._asdict()
    if image is not None:
        digest.update(image.tobytes())
    name = "trace_" + digest.hexdigest()[:10]
    if image is not None:
        data["image"] = f"{name}_image.png"
        (out / data["image"]).write_bytes(png_bytes(image))
    wd.write_text(out / f"{name}.json", json.dumps(data))
    images = attention_images(data, out, name)
    view = image_attention_view(data, out, out, name)
    wd.write_text(out / f"{name}.html", "<!DOCTYPE html><html><head><meta charset='utf-8'>"
                  f"</head><body>{trace_html(data, images, view)}</body></html>")
    print(f"{'correct' if tr.correct else 'wrong'}: {tr.response!r}")
    for s, b, a in zip(tr.steps, tr.before, tr.after):
        print(f"  {a - b:+.2f}  ({b:.2f} -> {a:.2f})  {s}")
    print(f"trace: {out / name}.html")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
