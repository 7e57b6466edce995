"""The report page: OUT/index.html with its images beside it, static (no server, no network).
Everything a model wrote is HTML-escaped: model output is hostile input."""

from __future__ import annotations

import base64
import html
import json

from etils import epath

from o1jax import curves, plots
from o1jax.traces.view import attention_images, image_attention_view, trace_html
from o1jax import workdir as wd

SAMPLES_SHOWN = 6
# the one script: counts images that did not load, for a headless browser to read back
CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var broken = Array.from(document.images).filter(function (i) {
    return !i.complete || i.naturalWidth === 0; });
  document.body.setAttribute("data-broken-images", String(broken.length));
  document.body.setAttribute("data-images", String(document.images.length));
});
</script>"""
STYLE = """<style>
body { font-family: sans-serif; max-width: 1200px; margin: 1em auto; color: #222; }
img { max-width: 100%; border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; font-size: 12px; }
.ok { color: #1a7f37; } .bad { color: #c62828; }
.sample { display: flex; gap: 12px; align-items: flex-start; }
.sample > div { flex: 1; min-width: 0; }
img.thumb { width: 128px; image-rendering: pixelated; }
</style>"""


def _esc(x) -> str:
    return html.escape(str(x), quote=True)


def _img(name: str, alt: str) -> str:
    return f'<p><img src="{_esc(name)}" alt="{_esc(alt)}"></p>'


def _fit_rows(table: list[dict]) -> str:
    cols = ("run", "points", "r0", "a", "b", "c_mid", "per_decade", "r2", "sft_flops")
    head = "".join(f"<th>{c}</th>" for c in cols)
    body = []
    for row in table:
        cells = []
        for c in cols:
            v = row.get(c, "")
            text = f"{v:.4g}" if isinstance(v, float) else str(v)
            if c + "_ci" in row:
                lo, hi = row[c + "_ci"]
                text += f" [{lo:.3g}, {hi:.3g}]"
            cells.append(f"<td>{_esc(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
        for k in ("sigmoid", "log_linear"):
            if k in row:
                body.append(f'<tr><td colspan="{len(cols)}">{k}: {_esc(row[k])}</td></tr>')
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _samples(root: epath.Path, out: epath.Path) -> str:
    """A few problems of the evaluate command's samples.jsonl with the greedy solution, each
    beside its image (a visual task's: written into ``out`` as sample_I.png)."""
    path = root / "eval" / "samples.jsonl"
    if not path.exists():
        return ("<p>No sampled solutions: run <code>python -m o1jax.evaluate --workdir "
                f"{_esc(root)}</code> to write eval/samples.jsonl.</p>")
    out_html = []
    for i, s in enumerate(wd.read_jsonl(path)[:SAMPLES_SHOWN]):
        name = "greedy" if "greedy" in s["responses"] else next(iter(s["responses"]))
        r = s["responses"][name][0]
        mark = '<span class="ok">correct</span>' if r["correct"] else \
            '<span class="bad">wrong</span>'
        text = (f"<h4>{_esc(s['question'])} (answer {_esc(s['answer'])}): {name}, {mark}"
                f"</h4><pre>{_esc(r['text'])}</pre>")
        if s.get("image_png"):
            image = f"sample_{i}.png"
            (out / image).write_bytes(base64.b64decode(s["image_png"]))
            text = (f'<div class="sample"><img class="thumb" src="{image}" alt="the image of '
                    f'{_esc(s["id"])}"><div>{text}</div></div>')
        out_html.append(text)
    return "".join(out_html)


def _thinking(runs: list, out: epath.Path) -> list[str]:
    """The search over RL of each run of a search task (one that logged ``search/*``): response
    length, back-ups and accuracy against length (thinking_I.png); nothing for other runs."""
    parts = []
    for i, r in enumerate(runs):
        if not any("search/backup_share" in row for row in r.rows):
            continue
        samples = r.workdir / "eval" / "samples.jsonl"
        by_length = curves.accuracy_by_length(wd.read_jsonl(samples)) if samples.exists() \
            else None
        plots.plot_thinking(r.rows, curves.held_out_lengths(r.workdir), by_length,
                            out / f"thinking_{i}.png")
        parts += [f"<h3>{_esc(r.workdir)}</h3>", _img(f"thinking_{i}.png", f"thinking {i}")]
        if by_length is None:
            parts.append("<p>No per-response lengths (eval/samples.jsonl): run <code>python -m "
                         f"o1jax.evaluate --workdir {_esc(r.workdir)}</code>; the held-out "
                         "points are the evaluations during RL (mean greedy length).</p>")
    if parts:
        parts.insert(0, "<h2>Thinking: the search over RL</h2><p>The mean length (tokens) of "
                     "the responses sampled at each RL iteration, and of the held-out greedy "
                     "solutions at each evaluation; the share of sampled responses with at least "
                     "one back-up, the share that gave up (<code>stuck</code>) and the back-ups "
                     "per response; accuracy against response length: the evaluate command's "
                     "held-out responses in bins of about equal counts (95% intervals) and the "
                     "held-out greedy evaluations during RL (the RL step beside each). Across "
                     "problems, length and difficulty go together and a cut-off response is "
                     "wrong: thinking longer on the same problems is the test-time curve's "
                     "budget forcing.</p>")
    return parts


def write_page(out: epath.Path, runs: list, fits, table: list[dict]) -> epath.Path:
    """Draws every image into ``out`` and writes ``out/index.html`` referencing only them."""
    out = epath.Path(out)
    parts = [f"<h1>o1jax report: {_esc(', '.join(r.workdir.name for r in runs))}</h1>"]
    plots.plot_train_time(runs, fits, out / "train_time_compute.png")
    parts += ["<h2>Accuracy against training compute</h2>",
              _img("train_time_compute.png", "train-time compute"),
              "<p>Held-out greedy accuracy at log-spaced RL iterations against cumulative RL "
              "FLOPs (o1jax/flops.py). Fits: R(C) = R0 + (A - R0) / (1 + (C_mid / C)^B) (R0: "
              "the SFT start) and a log-linear line.</p>", _fit_rows(table)]
    first = runs[0].workdir
    results = first / "eval" / "results.jsonl"
    parts.append("<h2>Accuracy against test-time compute</h2>")
    if results.exists():
        rows = wd.read_jsonl(results)
        plots.plot_test_time(rows, out / "test_time_compute.png")
        parts.append(_img("test_time_compute.png", "test-time compute"))
    else:
        parts.append(f"<p>No test-time results: run <code>python -m o1jax.evaluate --workdir "
                     f"{_esc(first)}</code>.</p>")
    passk = curves.pass_at_k(first)
    parts.append("<h2>pass@k of the SFT and RL checkpoints</h2>")
    if passk:
        plots.plot_pass_at_k(passk, out / "pass_at_k.png")
        parts.append(_img("pass_at_k.png", "pass@k"))
    missing = [k for k in curves.PASS_AT_K_DIRS if k not in passk]
    if missing:
        parts.append("<p>Missing: " + ", ".join(
            f"<code>python -m o1jax.evaluate --workdir {_esc(first)} --stage {k.lower()} "
            f"--strategies majority --budgets 1,2,4,8,16,32,64 --out {_esc(first)}/passk_"
            f"{k.lower()}</code>" for k in missing) + "</p>")
    parts.append("<h2>Training</h2>")
    for i, r in enumerate(runs):
        name = f"training_{i}.png"
        plots.plot_training(r.rows, out / name)
        parts += [f"<h3>{_esc(r.workdir)}</h3>", _img(name, f"training metrics {i}")]
    parts += _thinking(runs, out)
    traces = sorted((first / "traces").glob("*.json")) if (first / "traces").exists() else []
    parts.append("<h2>Inside the reasoning</h2>")
    for t in traces:
        data = wd.read_json(t)
        parts.append(trace_html(data, attention_images(data, out, t.stem),
                                image_attention_view(data, t.parent, out, t.stem)))
    if not traces:
        parts.append(f"<p>No traces: run <code>python -m o1jax.trace --workdir {_esc(first)} "
                     "--problem ...</code>.</p>")
    parts += ["<h2>Sampled solutions</h2>", _samples(first, out), "<h2>Config</h2>",
              f"<pre>{_esc(json.dumps(runs[0].config, indent=2))}</pre>"]
    page = ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>o1jax report</title>"
            f"{STYLE}{CHECK_SCRIPT}</head><body>{''.join(parts)}</body></html>")
    path = out / "index.html"
    wd.write_text(path, page)
    return path
