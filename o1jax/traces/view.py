"""A reasoning trace drawn: tokens coloured by value, a search task's lines replayed, steps with
their importance, attention maps and the image view, as an HTML fragment (everything a model
wrote escaped) and PNG files."""

from __future__ import annotations

import hashlib
import html
import json

import numpy as np
from etils import epath

from o1jax import workdir as wd
from o1jax.plots import png_bytes, read_png
from o1jax.traces.figures import plot_attention, plot_image_attention
from o1jax.traces.search import search_html


def _colour(v: float) -> str:
    """Red (0) through yellow to green (1), as a CSS background."""
    v = min(max(v, 0.0), 1.0)
    return f"rgba({int(255 * (1 - v))},{int(200 * v + 40)},60,0.35)"


def trace_html(tr: dict, images: dict[str, str], image_view: str | None = None) -> str:
    """A trace (``Trace._asdict()``) as an HTML fragment: tokens coloured by value, a search
    task's lines replayed (their states, dead ends, back-ups), the steps with their importance,
    the attention images (``images``: "layer/head" -> file) and, for a vision policy,
    ``image_view``: the file of the answer tokens' attention over the image."""
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
    if tr.get("search") is not None:
        parts.append(search_html(tr["search"]))
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


def write_trace(out: epath.Path, tr, image: np.ndarray | None, problem: str) -> str:
    """Writes a trace into ``out``: NAME.json (the ``Trace`` fields; with an image, ``image``:
    NAME_image.png beside it), its attention images and NAME.html; returns NAME (from a hash
    of the problem and its image)."""
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
    return name
