"""The reasoning-trace view: per-token values are the value model's, step importance equals a
plain-Python loop's, attention weights are the ones the forward pass uses."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o1jax import trace as trace_cli
from o1jax.traces import reasoning as trace_lib
from o1jax import workdir as wd
from o1jax.data.prompts import PromptFormat, pad_prompts, prompt_ids, render_prompt
from o1jax.models import Transformer, positions_from_mask, preset
from o1jax.models.layouts import unstack_layers
from o1jax.models.layers.attention import attend, attention_probs
from o1jax.plots import read_png
from o1jax.rollout.decoding import SamplingConfig
from o1jax.policy import load_policy
from o1jax.rollout.sampler import make_sampler
from o1jax.search import value_models
from o1jax.traces.figures import upsample_heat

SOLUTION = "5+7=12, write 2, carry 1\n1+2+1=4, write 4\n\\boxed{42}"


def fake_verify(texts, references):
    """Deterministic stand-in for the checker: 'correct' when the text holds an even digit
    count, so that random continuations are sometimes right and sometimes wrong."""
    return [sum(ch.isdigit() for ch in t) % 2 == 0 for t in texts]


def test_values_and_importance_match_plain_computations(smoke_run, monkeypatch):
    workdir, _ = smoke_run
    monkeypatch.setattr(trace_lib, "verify_batch", fake_verify)
    (policy, tok, _), params = load_policy(workdir)
    # digits and spaces stop a continuation too: this barely trained policy then finishes
    # its continuations at random lengths, some right and some wrong under fake_verify
    tok.stop_ids = tok.stop_ids + tuple(tok.encode("0123456789 ", False))
    critic = value_models.load("critic", policy, workdir)
    k, seed, fmt = 6, 3, PromptFormat("{question}\n")
    tr = trace_lib.trace(policy, params, tok, "15+27=?", "42", fmt,
                         (critic.model, critic.params), k=k, max_new=16, seed=seed,
                         solution=SOLUTION, layers=(0,), heads=(0, 1))

    # the steps are the solution's lines; values are the value model's at each response token
    lines = SOLUTION.split("\n")
    assert tr.steps == lines and "".join(tr.tokens) == SOLUTION
    prompt = tok.encode(render_prompt("15+27=?", tok, fmt))
    seq = jnp.asarray([prompt + tok.encode(SOLUTION, False) + [tok.stop_ids[0]]])
    mask = jnp.ones_like(seq, bool)
    values, _ = critic.model.apply(critic.params, seq, positions_from_mask(mask), mask)
    np.testing.assert_allclose(tr.values, np.asarray(values[0, len(prompt):-1]), rtol=1e-5,
                               atol=1e-6)

    # importance: a plain loop over the prefixes built from the text, K samples each
    prefixes = [render_prompt("15+27=?", tok, fmt) + "".join(x + "\n" for x in lines[:j])
                for j in range(len(lines))]
    length = len(tok.encode(prefixes[-1]))
    sampler = make_sampler(policy, SamplingConfig(
        max_new_tokens=min(16, policy.cfg.max_seq_len - length), num_samples=k,
        stop_ids=tok.stop_ids, pad_id=tok.pad_id), gather=True)
    key = jax.random.fold_in(jax.random.key(seed), 1)
    rates = []
    for j, text in enumerate(prefixes):
        toks, m = pad_prompts([tok.encode(text)], tok.pad_id, length)
        roll = sampler(params, toks, m, jax.random.fold_in(key, j))
        correct = 0
        for i in range(k):
            ids = [int(t) for t, r in zip(roll.tokens[i], roll.response_mask[i]) if r]
            if roll.finished[i]:
                whole = "".join(x + "\n" for x in lines[:j]) + tok.decode(ids[:-1])
                correct += fake_verify([whole], ["42"])[0]
        rates.append(correct / k)
    assert tr.before == pytest.approx(rates) and 0 < np.mean(rates) < 1, rates
    final = float(fake_verify([SOLUTION], ["42"])[0])
    assert tr.after == pytest.approx(rates[1:] + [final])
    assert tr.importance == pytest.approx([a - b for a, b in zip(rates[1:] + [final], rates)])
    assert len(tr.labels) == seq.shape[1] and set(tr.attention) == {"0/0", "0/1"}
    att = np.asarray(tr.attention["0/1"])
    np.testing.assert_allclose(att.sum(-1), 1.0, rtol=1e-5)
    assert np.allclose(np.triu(att, 1), 0.0)          # causal


def test_attention_weights_are_the_ones_attend_uses():
    model = Transformer(preset("tiny", max_seq_len=32))
    params = model.init(jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (2, 7), 1, 100)
    mask = jnp.ones_like(tokens, bool).at[0, :2].set(False)
    maps = trace_lib.attention_maps(model, params, tokens, mask, [1])
    q = jax.random.normal(jax.random.key(2), (2, 7, 4, 16))
    k = jax.random.normal(jax.random.key(3), (2, 2, 16, 7))
    v = jax.random.normal(jax.random.key(4), (2, 2, 7, 16))
    key_mask = jnp.tril(jnp.ones((7, 7), bool))[None].repeat(2, 0)
    probs = attention_probs(q, k, key_mask)                     # [B, H, T, S]
    v_per_head = jnp.repeat(v, 2, axis=1)                       # head h reads KV head h // 2
    manual = jnp.einsum("bhts,bhsd->bthd", probs, v_per_head)
    np.testing.assert_allclose(manual, attend(q, k, v, key_mask), rtol=1e-5, atol=1e-6)
    assert maps.shape == (1, 2, 4, 7, 7)
    np.testing.assert_allclose(np.asarray(maps[0, 0, :, 2:, :2]), 0.0)  # padding gets nothing


def test_cli_errors_are_clear(smoke_run, capsys):
    workdir, _ = smoke_run
    assert trace_cli.main(["--workdir", str(workdir), "--problem", "1+1=?" * 40,
                           "--answer", "2"]) == 2
    assert "shorten the problem" in capsys.readouterr().err
    assert trace_cli.main(["--workdir", str(workdir), "--problem", "hello"]) == 2
    assert "give --answer" in capsys.readouterr().err
    assert trace_cli.main(["--workdir", str(workdir), "--problem", "1+2=?",
                           "--layers", "5"]) == 2
    assert "--layers" in capsys.readouterr().err


# ------------------------------------------------------------------ vision policies
@pytest.mark.parametrize("image_size,patch,merge", [(32, 4, 2), (32, 2, 4), (12, 2, 3)])
def test_image_heat_lights_only_the_window_of_its_image_token(image_size, patch, merge):
    from o1jax.models.vision_config import VisionConfig
    cfg = VisionConfig(image_size=image_size, patch_size=patch, merge_size=merge, hidden_size=16,
                       num_heads=1)
    per_side = image_size // patch // merge          # image tokens per row, row-major
    for k in range(per_side ** 2):
        heat = trace_lib.image_heat(cfg, np.eye(per_side ** 2)[k])
        expected = np.zeros((image_size // patch,) * 2)
        row, col = divmod(k, per_side)
        expected[row * merge:(row + 1) * merge, col * merge:(col + 1) * merge] = 1.0
        np.testing.assert_array_equal(heat, expected)
    # drawn over the image: each patch cell covers its patch x patch pixels
    heat = np.arange((image_size // patch) ** 2, dtype=float).reshape(image_size // patch, -1)
    pixels = upsample_heat(heat, (image_size, image_size))
    for y in range(image_size):
        for x in range(image_size):
            assert pixels[y, x] == heat[y // patch, x // patch]


@pytest.mark.parametrize("height,width,patch,merge", [(24, 40, 4, 2), (36, 12, 2, 3)])
def test_image_heat_of_an_image_at_its_own_size_follows_the_encoder_s_patch_order(
        height, width, patch, merge):
    """Each pixel coloured by its patch's index; ``patch_native`` (what the encoder reads) puts
    patches M x M at a time into image tokens: every patch of image token k must hold k's
    weight in the heat map, and the map drawn over the image covers each patch's pixels."""
    from o1jax.models.patches import patch_native
    from o1jax.models.vision_config import VisionConfig
    cfg = VisionConfig(image_size=24, patch_size=patch, merge_size=merge, hidden_size=16,
                       num_heads=1, min_pixels=0, max_pixels=4096)
    gh, gw = height // patch, width // patch
    index = np.arange(gh * gw).reshape(gh, gw)
    image = np.repeat(np.repeat(index, patch, 0), patch, 1)
    rgb = np.stack([image // 256, image % 256, np.zeros_like(image)], -1).astype(np.uint8)
    read = patch_native([rgb], patch, merge).pixels[0].reshape(-1, patch * patch, 3)
    owner = np.zeros((gh, gw), int)            # image token each patch went into
    for slot, p in enumerate(read[:gh * gw]):
        i = int(p[0, 0]) * 256 + int(p[0, 1])
        owner[i // gw, i % gw] = slot // merge ** 2
    weights = np.random.default_rng(0).random(gh * gw // merge ** 2)
    heat = trace_lib.image_heat(cfg, weights, (gh, gw))
    np.testing.assert_array_equal(heat, weights[owner].astype(np.float32))
    np.testing.assert_array_equal(upsample_heat(heat, (height, width))[::patch, ::patch], heat)


def forward_attention(monkeypatch, model, params, tokens, mask, **image_inputs) -> np.ndarray:
    """The attention weights [L, B, H, T, T] the model's own forward pass (``hidden``, layers
    unrolled) attends with, caught at every call of ``attend``."""
    import o1jax.models.transformer as transformer_lib
    seen = []

    def spy(q, k, v, key_mask):
        seen.append(np.asarray(attention_probs(q, k, key_mask)))
        return attend(q, k, v, key_mask)
    monkeypatch.setattr(transformer_lib, "attend", spy)
    model.hidden(unstack_layers(params), tokens, positions_from_mask(mask), mask, **image_inputs)
    return np.stack(seen)


@pytest.mark.parametrize("mrope_section", [None, (2, 3, 3)])
def test_attention_maps_are_the_forward_pass_s_with_an_image(monkeypatch, mrope_section):
    """The weights the model's own forward pass (``hidden``, layers unrolled) attends with,
    image tokens in place and, for an M-RoPE model, its multimodal positions."""
    from o1jax.models.vision_config import VisionConfig
    vis = VisionConfig(image_size=8, patch_size=2, hidden_size=16, num_layers=1, num_heads=2,
                       mlp_dim=32, merge_size=2)
    model = Transformer(preset("tiny", vocab_size=64, max_seq_len=32, vision=vis,
                               image_token_id=1, mrope_section=mrope_section))
    params = model.init(jax.random.key(0))
    tokens = jnp.asarray([[2, 1, 1, 1, 1, 7, 8, 9]])
    mask = jnp.ones_like(tokens, bool)
    white, black = (np.full((1, 8, 8, 3), v, np.uint8) for v in (255, 0))
    maps = np.asarray(trace_lib.attention_maps(model, params, tokens, mask, [0, 1], white))
    seen = forward_attention(monkeypatch, model, params, tokens, mask,
                             image_embeds=model.encode_images(params, white))
    np.testing.assert_allclose(maps, seen, rtol=1e-5, atol=1e-6)
    # the question's tokens attend differently after a black image
    other = np.asarray(trace_lib.attention_maps(model, params, tokens, mask, [0, 1], black))
    assert not np.allclose(maps[..., 5:, :], other[..., 5:, :])


def test_trace_of_an_image_at_its_own_size(monkeypatch):
    """A policy that reads images at their own sizes (M-RoPE, as Qwen2.5-VL): a 12 x 24 picture
    is 6 x 12 patches of 2 pixels, merged 2 x 2 into 18 image tokens. The trace's image
    attention has a column per image token, its heat map is the picture's own 6 x 12 patch
    grid, and its attention maps are those of the model's forward pass over the picture's
    patches."""
    from o1jax.models.patches import patch_native
    from o1jax.models.vision_config import VisionConfig
    from o1jax.tokenizer import byte_tokenizer
    monkeypatch.setattr(trace_lib, "verify_batch", fake_verify)
    vis = VisionConfig(image_size=8, patch_size=2, hidden_size=16, num_layers=1, num_heads=2,
                       mlp_dim=32, merge_size=2, min_pixels=16, max_pixels=4096)
    policy = Transformer(preset("tiny", vocab_size=320, max_seq_len=96, vision=vis,
                                image_token_id=259, mrope_section=(2, 3, 3)))
    params = policy.init(jax.random.key(0))
    tok = byte_tokenizer(image_token=True)
    image = np.random.default_rng(0).integers(0, 256, (12, 24, 3)).astype(np.uint8)
    fmt = PromptFormat("{question}", image_patch=(2, 2))
    tr = trace_lib.trace(policy, params, tok, "How many?", "2", fmt, k=2, max_new=8,
                         solution="\\boxed{2}", layers=(0,), heads=(0, 1), image=image)
    assert np.asarray(tr.image_attention).shape == (len(tr.answer_tokens), 18)
    assert np.asarray(tr.image_heat).shape == (6, 12)
    np.testing.assert_allclose(tr.image_heat, trace_lib.image_heat(
        vis, np.asarray(tr.image_attention).mean(0), (6, 12)), rtol=1e-6)
    prompt = prompt_ids({"question": "How many?", "image": image}, tok, fmt)
    assert prompt.count(259) == 18
    seq = jnp.asarray([prompt + tok.encode("\\boxed{2}", False) + [tok.stop_ids[0]]])
    mask = jnp.ones_like(seq, bool)
    seen = forward_attention(monkeypatch, policy, params, seq, mask,
                             **policy.image_inputs(params, patch_native([image], 2, 2)))
    np.testing.assert_allclose(np.stack([tr.attention["0/0"], tr.attention["0/1"]]),
                               seen[0][0, :2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tokens,expected", [
    (list("ab\\boxed{42}"), ([9, 10], "boxed")),
    (["x=", "\\box", "ed{", "1", "2}", "."], ([3, 4], "boxed")),       # a token beyond the box
    (list("\\boxed{1} then \\boxed{7}"), ([22], "boxed")),              # the last box
    (list("no box 7"), (list(range(8)), "response")),
    (list("\\boxed{}"), (list(range(8)), "response")),                  # empty: no answer
    (list("\\boxed{3"), (list(range(8)), "response")),                  # never closed
    ([], ([], "response")),
])
def test_answer_tokens_are_the_last_boxed_content(tokens, expected):
    assert trace_lib.answer_token_span(tokens) == expected


def test_trace_of_a_vision_policy_through_the_cli(visual_run, tmp_path, capsys):
    from PIL import Image

    from o1jax.data import visual
    from o1jax.rollout.scoring import prefix_values
    image = next(iter(visual.generate("count", "test", 1, seed=5, difficulty=2)))["image"]
    Image.fromarray(image).save(tmp_path / "scene.png")
    out = tmp_path / "traces"
    question, solution = "How many red objects are in the image?", "red circle at 0,1\n\\boxed{12}"
    args = ["--workdir", str(visual_run), "--image", str(tmp_path / "scene.png"), "--problem",
            question, "--answer", "12", "--solution", solution, "--samples", "2",
            "--layers", "0", "--heads", "0,1", "--out", str(out)]
    assert trace_cli.main(args) == 0, capsys.readouterr().err
    (path,) = out.glob("*.json")
    data = json.loads(path.read_text())
    name = path.stem
    # the image beside the JSON, the heat map PNG, and both in the page
    np.testing.assert_array_equal(np.asarray(Image.open(out / data["image"])), image)
    assert (out / f"{name}_image_attention.png").stat().st_size > 5000
    assert f'src="{name}_image_attention.png"' in (out / f"{name}.html").read_text()
    first = data["labels"].index("<image 0>")     # the template puts the image last
    assert data["labels"][first:first + 16] == [f"<image {k}>" for k in range(16)]
    # the answer tokens: "1" and "2" inside the box; their attention to the 16 image tokens
    assert data["answer_span"] == "boxed"
    assert [data["tokens"][i] for i in data["answer_tokens"]] == ["1", "2"]
    att = np.asarray(data["image_attention"])
    assert att.shape == (2, 16) and np.isfinite(att).all() and (att >= 0).all()
    assert (att.sum(axis=1) <= 1 + 1e-5).all() and att.sum() > 0
    # the same numbers as the recorded attention maps: rows of the positions that wrote the
    # answer tokens, columns of the image placeholders, mean over layers and heads
    (policy, tok, _), params = load_policy(visual_run)
    prompt = prompt_ids({"question": question, "image": image}, tok,
                        PromptFormat(wd.load_config(visual_run).data.template, image_tokens=16))
    columns = [i for i, t in enumerate(prompt) if t == policy.cfg.image_token_id]
    assert columns == list(range(first, first + 16))
    mean = np.mean([np.asarray(m) for m in data["attention"].values()], axis=0)
    queries = [len(prompt) + i - 1 for i in data["answer_tokens"]]
    np.testing.assert_allclose(att, mean[np.ix_(queries, columns)], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(data["image_heat"],
                               trace_lib.image_heat(policy.cfg.vision, att.mean(0)), rtol=1e-6)
    # the critic read the image: its values are the ones a pass with the image gives, and
    # another image changes them
    critic = value_models.load("critic", policy, visual_run)
    seq = jnp.asarray([prompt + tok.encode(solution, False) + [tok.stop_ids[0]]])
    mask = jnp.ones_like(seq, bool)
    with_image = prefix_values(critic.model, critic.params, seq, mask, image[None])[0]
    np.testing.assert_allclose(data["values"], with_image[len(prompt):-1], rtol=1e-5, atol=1e-6)
    dark = prefix_values(critic.model, critic.params, seq, mask, 255 - image[None])[0]
    assert not np.allclose(with_image[len(prompt):-1], dark[len(prompt):-1])
    assert len(data["before"]) == 2 and "trace:" in capsys.readouterr().out


def test_trace_of_a_held_out_example_is_in_the_workdir(visual_run):
    from o1jax import experiment
    (path,) = (visual_run / "traces").glob("*.json")
    data = json.loads(path.read_text())
    example = experiment.load_problems(wd.load_config(visual_run), visual_run, "test", 1)[0]
    assert (data["problem"], data["answer"]) == (example["question"], example["answer"])
    np.testing.assert_array_equal(read_png(visual_run / "traces" / data["image"]),
                                  example["image"])
    assert np.asarray(data["image_heat"]).shape == (8, 8)


@pytest.mark.parametrize("extra,match", [
    (["--image", "BAD", "--problem", "How many?", "--answer", "1"], "does not decode"),
    (["--image", "MISSING", "--problem", "How many?", "--answer", "1"], "does not decode"),
    (["--problem", "How many?", "--answer", "1"], "give --image PATH or --example K"),
    (["--example", "0", "--image", "BAD"], "brings its own image"),
    (["--example", "0", "--problem", "x"], "give --problem TEXT"),
    (["--example", "99"], "has 8 examples"),
])
def test_cli_bad_input_for_a_vision_policy(visual_run, tmp_path, capsys, extra, match):
    (tmp_path / "bad.png").write_text("not an image")
    extra = [str(tmp_path / "bad.png") if a == "BAD" else str(tmp_path / "none.png")
             if a == "MISSING" else a for a in extra]
    assert trace_cli.main(["--workdir", str(visual_run), "--out", str(tmp_path)] + extra) == 2
    assert match in capsys.readouterr().err


def test_an_image_for_a_text_policy_is_refused(smoke_run, tmp_path, capsys):
    workdir, _ = smoke_run
    from PIL import Image
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    assert trace_cli.main(["--workdir", str(workdir), "--problem", "1+2=?", "--image",
                           str(tmp_path / "x.png")]) == 2
    assert "reads no images (a text-only model" in capsys.readouterr().err
    (policy, tok, fmt), params = load_policy(workdir)
    with pytest.raises(ValueError, match="reads no images"):
        trace_lib.trace(policy, params, tok, "1+2=?", "3", fmt,
                        image=np.zeros((32, 32, 3), np.uint8))
