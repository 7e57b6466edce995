"""python -m o1jax.report: the static page of one or more runs, its files and its errors."""

import html
import json

import pytest



# ---------------------------------------------------------------- python -m o1jax.report
def _page_refs(html_text):
    import re
    return re.findall(r'(?:src|href)="([^"]+)"', html_text)


def _chromium():
    """The Chromium command; a skip where none is installed, a failure under CI (CI=true, as
    .ci/run sets it), where the page must be seen to render."""
    import os
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("CI=true and Chromium is not installed: the report page's browser "
                        "check cannot be skipped in CI (.ci/run installs it with apt-get)")
        pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run does)")
    return browser


@pytest.mark.parametrize("ci", ["true", "", None])
def test_a_missing_browser_fails_under_ci_and_skips_elsewhere(ci, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    outcome = pytest.fail.Exception if ci == "true" else pytest.skip.Exception
    with pytest.raises(outcome, match="Chromium is not installed"):
        _chromium()


def test_report_page_references_only_files_that_exist_and_renders(smoke_run, tmp_path, capsys):
    import os
    import subprocess

    from o1jax.report import main
    workdir, _ = smoke_run
    out = tmp_path / "page"
    assert main(["--workdir", str(workdir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "R0" in printed and "/decade" in printed
    page = (out / "index.html").read_text()
    refs = _page_refs(page)
    assert "train_time_compute.png" in refs and "training_0.png" in refs
    for ref in refs:
        assert (out / ref).is_file(), ref
    assert "<h2>Config</h2>" in page
    browser = _chromium()
    shot = tmp_path / "shot.png"
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    res = subprocess.run(args + [f"--screenshot={shot}", "--window-size=1200,2400",
                                 f"file://{out / 'index.html'}"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and os.path.getsize(shot) > 10_000, res.stderr[-2000:]
    dom = subprocess.run(args + ["--dump-dom", f"file://{out / 'index.html'}"],
                         capture_output=True, text=True, timeout=120).stdout
    images = page.count("<img ")
    assert f'data-broken-images="0" data-images="{images}"' in dom  # loaded in the browser


def test_report_says_what_is_missing(tmp_path, capsys):
    from o1jax.report import main
    w = tmp_path / "w"
    w.mkdir()
    (w / "config.json").write_text(json.dumps({"data": {"task": "arithmetic"},
                                               "eval": {"maj_k": 4}}))
    (w / "metrics.jsonl").write_text(json.dumps({"stage": "rl", "step": 1,
                                                 "reward_mean": 0.5}) + "\n")
    assert main(["--workdir", str(w)]) == 0
    out = capsys.readouterr().out
    assert "no evaluations during RL" in out
    page = (w / "report" / "index.html").read_text()
    assert "No test-time results" in page and "No traces" in page
    assert "Thinking" not in page and "thinking_0.png" not in page    # not a search task


def test_report_refuses_mixed_tasks_and_needs_out_for_several(tmp_path, capsys):
    from o1jax.report import main
    for name, task in (("a", "arithmetic"), ("b", "countdown")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"data": {"task": task},
                                                                 "eval": {"maj_k": 4}}))
    args = ["--workdir", str(tmp_path / "a"), "--workdir", str(tmp_path / "b")]
    assert main(args) == 2
    assert "--out is required" in capsys.readouterr().err
    assert main(args + ["--out", str(tmp_path / "o")]) == 2
    assert "runs of different tasks" in capsys.readouterr().err
    assert main(["--workdir", str(tmp_path / "nothing")]) == 2
    assert "not a training workdir" in capsys.readouterr().err


# ---------------------------------------------------------------- visual runs
def test_report_of_a_visual_run_shows_each_sample_beside_its_image(visual_run, tmp_path):
    import re

    import numpy as np

    from o1jax import experiment
    from o1jax import workdir as wd
    from o1jax.plots import read_png
    from o1jax.report import main
    out = tmp_path / "page"
    assert main(["--workdir", str(visual_run), "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    for ref in _page_refs(page):
        assert (out / ref).is_file(), ref
    samples = [json.loads(x) for x in (visual_run / "eval" / "samples.jsonl").read_text()
               .splitlines()]
    examples = experiment.load_problems(wd.load_config(visual_run), visual_run, "test",
                                        len(samples))
    assert len(samples) == 3
    for i, (s, e) in enumerate(zip(samples, examples)):
        # the image and the text in one block: the image first, then its question and solution
        block = re.search(rf'<div class="sample"><img class="thumb" src="sample_{i}\.png"[^>]*>'
                          r"<div><h4>(.*?)</h4><pre>(.*?)</pre></div></div>", page, re.S)
        assert block is not None, i
        assert block.group(1).startswith(html.escape(s["question"]))
        assert block.group(2) == html.escape(s["responses"]["greedy"][0]["text"])
        np.testing.assert_array_equal(read_png(out / f"sample_{i}.png"), e["image"])
    # the trace of held-out example 0: its heat map over the image
    (trace,) = (visual_run / "traces").glob("*.json")
    assert f'src="{trace.stem}_image_attention.png"' in page
    assert read_png(out / f"{trace.stem}_image_attention.png").std() > 0


def test_sampled_solutions_are_escaped_beside_their_images(tmp_path):
    import base64

    import numpy as np

    from o1jax.page import _samples
    from o1jax.plots import png_bytes, read_png
    image = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    hostile = '<script>alert("x")</script>'
    records = [dict(id=f'test/<{i}>', question=hostile, answer="<b>1</b>",
                    responses={"greedy": [dict(text=hostile, correct=i == 0)]},
                    **({"image_png": base64.b64encode(png_bytes(image)).decode()} if i else {}))
               for i in range(2)]
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "samples.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "page"
    out.mkdir()
    shown = _samples(tmp_path, out)
    assert "<script>" not in shown and "&lt;script&gt;" in shown and "<b>" not in shown
    assert shown.count("<img ") == 1 and 'alt="the image of test/&lt;1&gt;"' in shown
    assert not (out / "sample_0.png").exists()      # a text problem has no image
    np.testing.assert_array_equal(read_png(out / "sample_1.png"), image)


# ---------------------------------------------------------------- search tasks: thinking
def _samples(tokens, correct, greedy_tokens=None):
    """samples.jsonl records: one problem per sampled response (and a greedy response)."""
    return [dict(id=str(i), question="q", answer="a", responses={
        "greedy": [dict(text="g", correct=False, tokens=greedy_tokens or t)],
        "sample": [dict(text="s", correct=c, tokens=t)]}) for i, (t, c) in
        enumerate(zip(tokens, correct))]


def test_accuracy_by_length_bins_the_sampled_responses():
    import numpy as np

    from o1jax.curves import accuracy_by_length
    tokens = list(range(1, 121))        # quartile edges 1, 30.75, 60.5, 90.25, 120
    name, bins = accuracy_by_length(_samples(tokens, [t <= 60 for t in tokens], 5), bins=4)
    assert name == "sample"
    assert [(b["responses"], b["accuracy"]) for b in bins] == [(30, 1.0), (30, 1.0), (30, 0.0),
                                                                (30, 0.0)]
    assert all(b["ci_low"] <= b["accuracy"] <= b["ci_high"] for b in bins)
    rng = np.random.RandomState(0)
    tokens, correct = rng.randint(5, 300, 200), rng.rand(200) < 0.4
    _, bins = accuracy_by_length(_samples(tokens.tolist(), correct.tolist()), bins=6)
    assert sum(b["responses"] for b in bins) == 200 and len(bins) == 6
    for i, b in enumerate(bins):
        last = i == len(bins) - 1
        m = (tokens >= b["lo"]) & ((tokens <= b["hi"]) if last else (tokens < b["hi"]))
        assert b["responses"] == m.sum() and b["accuracy"] == pytest.approx(correct[m].mean())
    (one,) = accuracy_by_length(_samples([7] * 5, [True, False] * 2 + [True]))[1]
    assert (one["lo"], one["hi"], one["responses"], one["accuracy"]) == (7, 7, 5, 0.6)
    assert accuracy_by_length([dict(responses={"greedy": [dict(correct=True)]})]) is None


def _search_run(w, with_samples: bool):
    """A countdown_search workdir with what the report reads: RL rows with the search metrics,
    the SFT evaluation, two curve points and (optionally) the evaluate command's samples."""
    w.mkdir()
    (w / "config.json").write_text(json.dumps({"data": {"task": "countdown_search"},
                                               "eval": {"maj_k": 4}}))
    rows = [{"stage": "rl", "step": i, "reward_mean": 0.1 * i, "response_length_mean": 50 + i,
             "search/backup_share": 0.1 * i, "search/backups_mean": 0.2 * i,
             "search/stuck_share": 0.05} for i in range(1, 5)]
    (w / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    row = lambda tokens, acc: [dict(strategy="greedy", budget=1, bin="all", problems=10,  # noqa
                                    accuracy=acc, tokens=tokens)]
    (w / "eval_sft.json").write_text(json.dumps(dict(greedy_accuracy=0.2, step=400,
                                                     rows=row(40.0, 0.2))))
    (w / "curve").mkdir()
    for step, tokens, acc in ((1, 45.0, 0.3), (4, 60.0, 0.5)):
        (w / "curve" / f"step_{step:06d}.json").write_text(json.dumps(dict(
            greedy_accuracy=acc, step=step, train_flops=1e9 * step, rows=row(tokens, acc))))
    if with_samples:
        (w / "eval").mkdir()
        (w / "eval" / "samples.jsonl").write_text("".join(
            json.dumps(s) + "\n" for s in _samples(list(range(10, 40)), [True, False] * 15)))


@pytest.mark.parametrize("with_samples", [True, False])
def test_report_of_a_search_run_plots_its_search(tmp_path, with_samples):
    from o1jax import curves
    from o1jax.report import main
    w = tmp_path / "w"
    _search_run(w, with_samples)
    assert curves.held_out_lengths(w) == [(0, 40.0, 0.2), (1, 45.0, 0.3), (4, 60.0, 0.5)]
    assert main(["--workdir", str(w)]) == 0
    page = (w / "report" / "index.html").read_text()
    assert "<h2>Thinking: the search over RL</h2>" in page
    assert "thinking_0.png" in _page_refs(page) and (w / "report" / "thinking_0.png").is_file()
    assert ("No per-response lengths" in page) == (not with_samples)
