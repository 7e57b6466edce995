"""Inside one reasoning trace: ``python -m o1jax.trace --workdir DIR --problem "12+35=?"``.

For the run's policy's solution to a problem (greedy, or sampled with ``--temperature``):

    values       each token's value under the critic (or ``--verifier``): the estimated chance
                 of ending correct from the prefix that ends at that token
    importance   each step's (line's) Monte-Carlo importance, Thought Anchors style: K
                 continuations resampled from the prefix before the step and from the prefix
                 after it; the change in the fraction that end correct
    attention    attention weights of chosen layers and heads over the whole sequence

Writes WORKDIR/traces/NAME.json (what the report page renders), NAME.html and its images
(``--out`` elsewhere). Model text is escaped wherever it is shown.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from o1jax import workdir as wd
from o1jax.data.pipeline import render_prompt
from o1jax.models.layers.attention import attention_probs, project_qkv
from o1jax.models.layers.norm import rms_norm
from o1jax.models.layers.rope import inverse_frequencies, rope_angles
from o1jax.models.transformer import Params, Transformer, positions_from_mask, unstack_layers
from o1jax.rewards.api import verify_batch
from o1jax.rollout.decoding import SamplingConfig
from o1jax.rollout.sampler import make_sampler, pad_prompts
from o1jax.rollout.scoring import prefix_values


class Trace(NamedTuple):
    """tokens: the response's token strings; values: [n] or None; steps: the response's lines
    (each with its last token index); before / after: fraction of K continuations correct from
    the prefix before / after each step; attention: {"layer/head": [T, T]} over prompt +
    response, with ``labels`` the token strings of both."""
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

    @property
    def importance(self) -> list[float]:
        return [a - b for a, b in zip(self.after, self.before)]


def attention_maps(model: Transformer, params: Params, tokens: jax.Array, mask: jax.Array,
                   layers: list[int]) -> jax.Array:
    """Attention weights [len(layers), B, H, T, T] of a forward pass over ``tokens``, the
    model's own layer code run one layer at a time (weights taken at the chosen layers)."""
    c = model.cfg
    mask = mask.astype(bool)
    t = tokens.shape[1]
    inv = inverse_frequencies(c.head_dim, c.rope_theta,
                              dict(c.rope_scaling) if c.rope_scaling else None)
    rope = rope_angles(positions_from_mask(mask), inv)
    key_mask = mask[:, None, :] & jnp.tril(jnp.ones((t, t), bool))[None]
    x = jnp.take(params["embed"], tokens, axis=0).astype(c.compute_dtype)
    out = []
    for i, p in enumerate(unstack_layers(params)["layers"]):
        if i in layers:
            q, k, _ = project_qkv(rms_norm(x, p["attn_norm"], c.rms_norm_eps), p, rope,
                                  c.num_heads)
            out.append(attention_probs(q, k, key_mask))
        x, _, _ = model._layer(x, p, rope, key_mask)
    return jnp.stack(out)


def step_ends(response_ids: list[int], newline_ids: set[int]) -> list[int]:
    """Index of each step's last token: every newline, and the response's last token."""
    ends = [i for i, t in enumerate(response_ids) if t in newline_ids]
    if not ends or ends[-1] != len(response_ids) - 1:
        ends.append(len(response_ids) - 1)
    return ends


def continuation_rates(policy: Transformer, params: Params, prefixes: list[list[int]],
                       prompt_len: int, answer: str, tokenizer, k: int, max_new: int,
                       temperature: float, key: jax.Array, length: int) -> list[float]:
    """Fraction of ``k`` sampled continuations of each prefix (prompt + the first steps of a
    solution) whose answer is correct: one sampler call per prefix, key ``fold_in(key, j)``,
    every prefix left-padded to ``length``; a truncated continuation counts as wrong."""
    sampler = make_sampler(policy, SamplingConfig(
        max_new_tokens=max_new, temperature=temperature, num_samples=k,
        stop_ids=tokenizer.stop_ids, pad_id=tokenizer.pad_id), gather=True)
    rates = []
    for j, prefix in enumerate(prefixes):
        toks, mask = pad_prompts([prefix], tokenizer.pad_id, length)
        roll = sampler(params, toks, mask, jax.random.fold_in(key, j))
        head = tokenizer.decode(prefix[prompt_len:])
        texts = [head + tokenizer.decode(row[resp.astype(bool)].tolist()[:-1])
                 for row, resp in zip(roll.tokens, roll.response_mask)]
        ok = verify_batch(texts, [answer] * k)
        rates.append(float(np.mean([bool(f) and c for f, c in zip(roll.finished, ok)])))
    return rates


def trace(policy: Transformer, params: Params, tokenizer, problem: str, answer: str,
          template: str, value: tuple | None = None, k: int = 8, max_new: int = 96,
          temperature: float = 1.0, greedy: bool = True, layers=(0,), heads=(0,),
          seed: int = 0, solution: str | None = None) -> Trace:
    """The trace of the policy's solution to ``problem`` (see the module docstring), or of a
    given ``solution`` text."""
    prompt = tokenizer.encode(render_prompt(problem, tokenizer, template))
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
        roll = solve(params, toks, mask, key)
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
        v = prefix_values(value[0], value[1], seq_arr, seq_mask)[0]
        values = [float(x) for x in v[len(prompt):len(prompt) + len(body)]]

    newline = {i for i in range(tokenizer.vocab_size) if tokenizer.decode([i]) == "\n"}
    ends = step_ends(body, newline) if body else []
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
                                    temperature, jax.random.fold_in(key, 1), length)
    after = before[1:] + [float(correct)] if ends else []

    maps = attention_maps(policy, params, seq_arr, seq_mask, list(layers))
    attention = {f"{l}/{h}": np.asarray(maps[i, 0, h]).tolist()
                 for i, l in enumerate(layers) for h in heads}
    return Trace(problem, answer, response, bool(correct),
                 [tokenizer.decode([t]) for t in body], values, steps, before, after,
                 [tokenizer.decode([t]) for t in seq], attention)


def _colour(v: float) -> str:
    """Red (0) through yellow to green (1), as a CSS background."""
    v = min(max(v, 0.0), 1.0)
    return f"rgba({int(255 * (1 - v))},{int(200 * v + 40)},60,0.35)"


def trace_html(tr: dict, images: dict[str, str]) -> str:
    """A trace (``Trace._asdict()``) as an HTML fragment: tokens coloured by value, the steps
    with their importance, and the attention images (``images``: "layer/head" -> file)."""
    esc = lambda x: html.escape(str(x), quote=True)  # noqa: E731
    verdict = "correct" if tr["correct"] else "wrong"
    parts = [f"<h3>{esc(tr['problem'])} (answer {esc(tr['answer'])}): {verdict}</h3>"]
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


def attention_images(tr: dict, out, prefix: str) -> dict[str, str]:
    """Draws each attention map of ``tr`` into ``out`` as PREFIX_L_H.png; returns their names."""
    from o1jax.report import plot_attention
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
    ap.add_argument("--problem", required=True, help="the question, as the task writes it")
    ap.add_argument("--answer", default=None, help="the reference answer (default: computed for "
                    "the synthetic tasks' forms)")
    ap.add_argument("--step", type=int, default=None)
    ap.add_argument("--verifier", default=None, help="orm:PATH or prm:PATH (default: the run's "
                    "critic, when it has one)")
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


def _run(args) -> int:
    from etils import epath

    from o1jax.search import verifiers
    from o1jax.selfplay.problems import judge
    if not wd.is_workdir(args.workdir):
        raise ValueError(f"--workdir {args.workdir} is not a training workdir (no checkpoints "
                         "or config.json)")
    cfg = wd.load_config(args.workdir)
    policy, params, tok = wd.load_policy(args.workdir, args.step)
    answer = args.answer
    if answer is None:
        p = judge(args.problem, (200, 12, 8, 1e30), held_out_ok=True)
        if p.status != "accepted":
            raise ValueError(f"no reference answer for {args.problem!r} ({p.status}); give "
                             "--answer")
        answer = p.answer
    for name, values in (("--layers", args.layers), ("--heads", args.heads)):
        limit = policy.cfg.num_layers if name == "--layers" else policy.cfg.num_heads
        if any(not 0 <= v < limit for v in values):
            raise ValueError(f"{name} {values}: the model has {limit}")
    value = None
    spec = args.verifier or ("critic" if cfg.rl.algorithm == "ppo" else None)
    if spec:
        v = verifiers.load(spec, policy, args.workdir, args.step)
        value = (v.model, v.params)
    tr = trace(policy, params, tok, args.problem, answer, cfg.data.template, value,
               k=args.samples, max_new=cfg.eval.max_new_tokens, temperature=args.temperature,
               greedy=not args.sample, layers=args.layers, heads=args.heads, seed=args.seed,
               solution=args.solution)
    out = epath.Path(args.out) if args.out else wd.resolve(args.workdir) / "traces"
    out.mkdir(parents=True, exist_ok=True)
    name = "trace_" + hashlib.sha256(args.problem.encode()).hexdigest()[:10]
    data = tr._asdict()
    wd.write_text(out / f"{name}.json", json.dumps(data))
    images = attention_images(data, out, name)
    wd.write_text(out / f"{name}.html", "<!DOCTYPE html><html><head><meta charset='utf-8'>"
                  f"</head><body>{trace_html(data, images)}</body></html>")
    print(f"{'correct' if tr.correct else 'wrong'}: {tr.response!r}")
    for s, b, a in zip(tr.steps, tr.before, tr.after):
        print(f"  {a - b:+.2f}  ({b:.2f} -> {a:.2f})  {s}")
    print(f"trace: {out / name}.html")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
