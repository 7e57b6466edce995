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
