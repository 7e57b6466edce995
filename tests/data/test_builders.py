"""TFDS builders build from files in the official formats and read back with tfds.data_source."""

import base64
import io
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from o1jax.data import builders, visual


def _read(source):
    return [{k: (v.decode() if isinstance(v, bytes) else v) for k, v in source[i].items()}
            for i in range(len(source))]


def test_task_builder_round_trip(tmp_path):
    ds = builders.build("linear", str(tmp_path), num_train=40, num_test=8, difficulty=1)
    assert {k: len(v) for k, v in ds.items()} == {"train": 40, "test": 8, "hard": 8}
    train, test, hard = _read(ds["train"]), _read(ds["test"]), _read(ds["hard"])
    assert {e["question"] for e in train}.isdisjoint(e["question"] for e in test + hard)
    assert {e["difficulty"] for e in test} == {1} and {e["difficulty"] for e in hard} == {2}
    assert all(e["solution"].endswith(f"\\boxed{{{e['answer']}}}") for e in train)
    # readable again through tfds.data_source, with no TensorFlow installed
    assert len(tfds.data_source(
        "o1jax_tasks/linear-difficulty1-num_test8-num_train40", data_dir=str(tmp_path),
        split="test")) == 8


def test_hard_arithmetic_has_more_digits_than_training(tmp_path):
    ds = builders.build("arithmetic", str(tmp_path), num_train=200, num_test=50, hard_levels=2)
    width = lambda rows: max(len(n) for e in rows  # noqa: E731
                             for n in e["question"].rstrip("=?").replace("+", " ")
                             .replace("-", " ").replace("*", " ").split())
    assert width(_read(ds["train"])) == 2 and width(_read(ds["hard"])) == 4


def test_gsm8k_official_jsonl(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    rows = [{"question": "Natalia sold clips to 48 of her friends in April, and then she sold "
                         "half as many clips in May. How many clips did she sell altogether?",
             "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold "
                       "48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"},
            {"question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 "
                         "minutes of babysitting. How much did she earn?",
             "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, "
                       "she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10"},
            {"question": "Big number?", "answer": "It is big.\n#### 1,234"}]
    (manual / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (manual / "test.jsonl").write_text(json.dumps(rows[0]) + "\n")
    ds = builders.build("gsm8k", str(tmp_path / "data"), manual_dir=str(manual))
    train = sorted(_read(ds["train"]), key=lambda e: e["question"])
    assert [e["answer"] for e in train] == ["1,234", "72", "10"]
    assert train[1]["solution"].endswith("#### 72") and train[1]["task"] == "gsm8k"
    assert len(ds["test"]) == 1


def test_hendrycks_math_official_layout(tmp_path):
    root = tmp_path / "manual" / "MATH"
    probs = {
        ("train", "algebra", "1.json"): {"problem": "Solve $2x=6$.", "level": "Level 1",
                                         "type": "Algebra",
                                         "solution": "Divide: $x=\\boxed{3}$."},
        ("train", "geometry", "7.json"): {"problem": "Area?", "level": "Level 5",
                                          "type": "Geometry",
                                          "solution": "It is $\\boxed{\\frac{\\pi}{4}}$."},
        ("train", "algebra", "2.json"): {"problem": "No box", "level": "Level 2",
                                         "type": "Algebra", "solution": "no boxed answer"},
        ("test", "algebra", "9.json"): {"problem": "1+1", "level": "Level ?",
                                        "type": "Algebra", "solution": "$\\boxed{2}$"},
    }
    for (split, subject, name), ex in probs.items():
        os.makedirs(root / split / subject, exist_ok=True)
        (root / split / subject / name).write_text(json.dumps(ex))
    ds = builders.build("math", str(tmp_path / "data"), manual_dir=str(tmp_path / "manual"))
    train = sorted(_read(ds["train"]), key=lambda e: e["question"])
    assert [(e["question"], e["answer"], e["difficulty"]) for e in train] == [
        ("Area?", "\\frac{\\pi}{4}", 5), ("Solve $2x=6$.", "3", 1)]  # unboxed one skipped
    assert train[0]["task"] == "math/Geometry"
    assert _read(ds["test"])[0]["difficulty"] == 0


def test_user_jsonl(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"question": "2+2?", "answer": "4"}\n\n{"question": "3*3?", "answer": 9}\n')
    ds = builders.build("jsonl", str(tmp_path / "data"), train_path=str(path))
    assert sorted((e["question"], e["answer"]) for e in _read(ds["train"])) == [
        ("2+2?", "4"), ("3*3?", "9")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "no answer"}\n')
    with pytest.raises(Exception, match="missing field"):
        builders.build("jsonl", str(tmp_path / "data2"), train_path=str(bad))


def test_unknown_dataset(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        builders.build("mnist", str(tmp_path))


def test_sloppy_demonstrations_only_in_train(tmp_path):
    ds = builders.build("arithmetic", str(tmp_path), num_train=60, num_test=30, slip_rate=1.0)
    train, test = _read(ds["train"]), _read(ds["test"])
    assert not all(e["solution"].endswith(f"\\boxed{{{e['answer']}}}") for e in train)
    assert all(e["solution"].endswith(f"\\boxed{{{e['answer']}}}") for e in test)


def test_sloppy_counts_only_in_train(tmp_path):
    ds = builders.build("count", str(tmp_path), num_train=60, num_test=30, slip_rate=1.0,
                        image_size=32)
    train, test = _read(ds["train"]), _read(ds["test"])
    assert not all(e["solution"].endswith(f"\\boxed{{{e['answer']}}}") for e in train)
    assert all(e["solution"].endswith(f"\\boxed{{{e['answer']}}}") for e in test)


def test_visual_task_builder_round_trip(tmp_path):
    ds = builders.build("count", str(tmp_path), num_train=20, num_test=5, difficulty=1,
                        image_size=24)
    assert set(ds) == {"train", "test", "hard"} and len(ds["train"]) == 20
    ex = ds["train"][0]
    assert ex["image"].shape == (24, 24, 3) and ex["image"].dtype == np.uint8
    spec = visual.spec_of({"meta": ex["meta"].decode() if isinstance(ex["meta"], bytes)
                           else ex["meta"]})
    np.testing.assert_array_equal(ex["image"], visual.render(spec, 24))


def _png(mode, size, colour):
    from PIL import Image
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format="PNG")
    return buf.getvalue()


def test_image_qa_jsonl_and_parquet(tmp_path):
    """Paths, base64 bytes and {'bytes': ...}; grayscale and RGBA converted by the stated rule
    (alpha over white, RGB, bicubic resize to the square size)."""
    (tmp_path / "a.png").write_bytes(_png("RGB", (40, 20), (10, 200, 30)))
    rows = [{"question": "q1", "answer": "1", "image": "a.png"},
            {"problem": "q2", "answer": "2",
             "images": [base64.b64encode(_png("L", (8, 8), 128)).decode()]},
            {"question": "q3", "answer": "3",
             "image": {"bytes": base64.b64encode(_png("RGBA", (8, 8), (0, 0, 0, 0))).decode()}}]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    ds = builders.build("image_qa", str(tmp_path / "data"), train_path=str(path), image_size=16)
    images = [ds["train"][i]["image"] for i in range(3)]
    assert all(im.shape == (16, 16, 3) for im in images)
    np.testing.assert_array_equal(images[0][8, 8], [10, 200, 30])
    np.testing.assert_array_equal(images[1][0, 0], [128, 128, 128])
    np.testing.assert_array_equal(images[2][0, 0], [255, 255, 255])    # transparent -> white

    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.table({"images": [[{"bytes": _png("RGB", (16, 16), (1, 2, 3)), "path": None}]],
                      "problem": ["find x"], "answer": ["4"]})
    pq.write_table(table, tmp_path / "geo.parquet")
    ds = builders.build("image_qa", str(tmp_path / "data2"),
                        train_path=str(tmp_path / "geo.parquet"), image_size=16)
    np.testing.assert_array_equal(ds["train"][0]["image"][3, 3], [1, 2, 3])


def test_image_qa_bad_images_name_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "1",
                                "image": base64.b64encode(b"not a png").decode()}))
    with pytest.raises(ValueError, match="bad.jsonl:1: the image does not decode"):
        builders.build("image_qa", str(tmp_path / "d1"), train_path=str(path))
    path.write_text(json.dumps({"question": "q", "answer": "1", "image": "missing.png"}))
    with pytest.raises(ValueError, match="neither a file next to bad.jsonl nor base64"):
        builders.build("image_qa", str(tmp_path / "d2"), train_path=str(path))
    path.write_text(json.dumps({"question": "q", "answer": "1"}))
    with pytest.raises(ValueError, match="missing field\\(s\\) \\['image'\\]"):
        builders.build("image_qa", str(tmp_path / "d3"), train_path=str(path))
