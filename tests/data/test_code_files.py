"""Code tasks from MBPP's and HumanEval's JSONL layouts: fields, entry points, and the reference
solutions passing their own tests in the sandbox (the rows are written here, in each dataset's
published layout)."""

import json

import pytest

from o1jax.data import builders
from o1jax.data.user_files import code_example
from o1jax.rewards.code import run_tests

MBPP = [
    {"task_id": 2, "text": "Write a function to find the similar elements from the given two "
     "tuple lists.", "code": "def similar_elements(a, b):\r\n  return tuple(set(a) & set(b))",
     "test_list": ["assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))",
                   "assert set(similar_elements((1, 2, 3, 4),(5, 4, 3, 7))) == set((3, 4))"],
     "test_setup_code": "", "challenge_test_list": []},
    {"task_id": 9, "prompt": "Write a function for the area of a circle.",
     "code": "import math\ndef circle_area(r):\n    return math.pi * r * r",
     "test_imports": ["import math"],
     "test_list": ["assert math.isclose(circle_area(2), 12.566, rel_tol=0.001)"]},
]
HUMANEVAL = {"task_id": "HumanEval/0", "entry_point": "add",
             "prompt": "def add(x: int, y: int):\n    \"\"\"Add two numbers.\"\"\"\n",
             "canonical_solution": "    return x + y\n",
             "test": "METADATA = {}\n\ndef check(candidate):\n    assert candidate(2, 3) == 5\n"
                     "    assert candidate(-1, 1) == 0\n"}


def test_mbpp_and_humaneval_rows_build_and_their_references_pass(tmp_path):
    path = tmp_path / "code.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in MBPP + [HUMANEVAL]) + "\n")
    ds = builders.build("code_jsonl", str(tmp_path / "data"), train_path=str(path))
    rows = [{k: v.decode() if isinstance(v, bytes) else v for k, v in ds["train"][i].items()}
            for i in range(3)]
    rows.sort(key=lambda r: ["similar", "Write a function for", "def add"].index(
        next(w for w in ["similar", "Write a function for", "def add"] if w in r["question"])))
    metas = [json.loads(r["meta"]) for r in rows]
    assert [m["entry_point"] for m in metas] == ["similar_elements", "circle_area", "add"]
    assert metas[1]["tests"][0].startswith("import math\n")
    assert "Your code should pass this test:" in rows[0]["question"]
    for row, meta in zip(rows, metas):
        assert row["task"] == "code_jsonl"
        assert run_tests(row["solution"], meta["tests"], meta["entry_point"]).reason == "passed"
        wrong = row["solution"].replace("return", "return None and", 1)
        assert run_tests(wrong, meta["tests"], meta["entry_point"]).passed == 0


@pytest.mark.parametrize("row, error", [
    ({"text": "x"}, "neither MBPP's layout"),
    ({"text": "x", "test_list": ["assert len([1]) == 1"]}, "calls no function of its own"),
    ({"text": "", "test_list": ["assert f(1) == 1"]}, "has no text"),
])
def test_bad_rows_name_the_line_and_the_problem(row, error):
    with pytest.raises(ValueError, match=f"code.jsonl:7: .*{error}"):
        code_example(row, "code.jsonl:7")
