"""Agreement of o1jax.rewards.verify with Hugging Face Math-Verify 0.9.0's own test suite.

    python benchmarks/math_verify_suite.py [--tests DIR] [--dump FILE] [--timeout S]
                                           [--any-match-types]

DIR is the tests/ folder of the math-verify 0.9.0 source distribution (default: found under
/tmp/mvsrc, else fetched with ``pip download math-verify==0.9.0 --no-binary :all:`` into a
temporary folder). The cases are read mechanically: ``ast`` walks every test file and takes the
literal (gold, pred, expected) of each parametrize row (and of literal asserts in unparametrized
tests) whose check runs at the library's default settings; the others are counted as skipped,
with the reason. Each gold is stripped of surrounding $...$, \\(...\\), \\[...\\] and one outer
\\boxed{...}, as a dataset would store it, and ``verify(pred, gold)`` is compared with the
boolean the suite asserts. ``--dump FILE`` writes every case as a JSON line (with the answer
our extractor took from pred); ``--any-match-types`` also runs the suite's latex-only and
expr-only checks. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import ast
import collections
import glob
import itertools
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from o1jax.rewards import default_pool, verify  # noqa: E402
from o1jax.rewards.answers import extract_answer  # noqa: E402

VERSION = "0.9.0"
SEARCH_ROOT = "/tmp/mvsrc"
# The library's defaults: parse() extracts with [LatexExtractionConfig(), ExprExtractionConfig()]
# ("latex", "expr" in the suite's compare_strings helper); verify(float_rounding=6, strict=True,
# allow_set_relation_comp=False).
DEFAULTS = {"match_types": ["latex", "expr"], "precision": 6, "float_rounding": 6,
            "strict": True, "allow_set_relation_comp": False}
NOT_VERIFY = "asserts on parse() output or another value, not on a verify() result"


# --------------------------------------------------------------------------- the suite
def find_tests(path: str | None) -> str:
    """The tests/ folder: ``path``, else one under SEARCH_ROOT, else a fresh pip download."""
    if path:
        return path
    for test_all in sorted(glob.glob(os.path.join(SEARCH_ROOT, "**", "tests", "test_all.py"),
                                     recursive=True)):
        if f"math_verify-{VERSION}" in test_all:
            return os.path.dirname(test_all)
    tmp = tempfile.mkdtemp(prefix="mvsrc-")
    sdists = glob.glob(os.path.join(SEARCH_ROOT, f"math_verify-{VERSION}.tar.gz"))
    if not sdists:
        subprocess.run([sys.executable, "-m", "pip", "download", f"math-verify=={VERSION}",
                        "--no-binary", ":all:", "--no-deps", "-q", "-d", tmp], check=True)
        sdists = glob.glob(os.path.join(tmp, "*.tar.gz"))
    with tarfile.open(sdists[0]) as tar:
        tar.extractall(tmp, filter="data")
    return os.path.join(tmp, f"math_verify-{VERSION}", "tests")


def suite_version(tests_dir: str) -> str | None:
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(tests_dir)), "PKG-INFO")) as f:
            m = re.search(r"^Version:\s*(\S+)", f.read(), flags=re.M)
        return m.group(1) if m else None
    except OSError:
        return None


def _literal(node: ast.expr):
    return ast.literal_eval(node)


def _parametrize_rows(fn: ast.FunctionDef) -> list[dict] | None:
    """One {param: ast node} per case from @pytest.mark.parametrize (several decorators give
    their product), or None when the test is not parametrized."""
    grids = []
    for dec in fn.decorator_list:
        if not (isinstance(dec, ast.Call) and ast.unparse(dec.func).endswith("mark.parametrize")):
            continue
        names = _literal(dec.args[0])
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        rows = []
        for row in dec.args[1].elts:
            values = row.elts if len(names) > 1 else [row]
            rows.append(dict(zip(names, values)))
        grids.append(rows)
    if not grids:
        return None
    return [dict(collections.ChainMap(*combo)) for combo in itertools.product(*grids)]


def _helpers(trees: dict[str, ast.Module]) -> dict[str, tuple[list[str], dict]]:
    """Module-level non-test functions that call verify(): name -> (parameters, defaults)."""
    out = {}
    for tree in trees.values():
        for fn in tree.body:
            if (isinstance(fn, ast.FunctionDef) and not fn.name.startswith("test")
                    and any(isinstance(n, ast.Call) and ast.unparse(n.func) == "verify"
                            for n in ast.walk(fn))):
                params = [a.arg for a in fn.args.args]
                defaults = {a.arg: _literal(d) for a, d in
                            zip(fn.args.args[len(params) - len(fn.args.defaults):],
                                fn.args.defaults)}
                out[fn.name] = (params, defaults)
    return out


def _uses_mock(fn: ast.FunctionDef) -> bool:
    return any(isinstance(n, (ast.Name, ast.Attribute)) and ast.unparse(n) in ("patch",
               "mock.patch", "unittest.mock.patch") for n in ast.walk(fn))


def _split_assert(test: ast.expr) -> tuple[ast.expr, ast.expr | bool]:
    """(checked call, expected) of ``call == expected``, ``not call`` or ``call``."""
    if (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return test.left, test.comparators[0]
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return test.operand, False
    return test, True


def _check_call(call: ast.expr, helpers) -> tuple[dict | None, str | None]:
    """({'gold', 'pred', settings...} as ast nodes, None) for a verify() check, else
    (None, reason)."""
    while (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
           and call.func.id in ("int", "bool") and len(call.args) == 1):
        call = call.args[0]
    if not isinstance(call, ast.Call):
        return None, NOT_VERIFY
    name = ast.unparse(call.func)
    if name in helpers:
        params, _ = helpers[name]
        bound = dict(zip(params, call.args))
        bound.update({k.arg: k.value for k in call.keywords})
        bound["gold"], bound["pred"] = bound.pop(params[0]), bound.pop(params[1])
        return bound, None
    if name in ("verify", "grader.verify", "math_verify.verify"):
        if len(call.args) != 2 or not all(
                isinstance(a, ast.Call) and ast.unparse(a.func) in ("parse", "parser.parse")
                for a in call.args):
            return None, "verify() on ready-made objects, not on parse() of strings"
        (gold, *gold_opts), (pred, *pred_opts) = (a.args for a in call.args)
        bound = {"gold": gold, "pred": pred}
        bound.update({k.arg: k.value for k in call.keywords})
        if gold_opts or pred_opts or any(a.keywords for a in call.args):
            bound["extraction"] = "non-default parse() arguments"
        return bound, None
    if name.endswith("sympy_expr_eq"):
        return None, "calls grader.sympy_expr_eq on sympy values"
    return None, NOT_VERIFY


def _settings_reason(bound: dict, row: dict, helper_defaults: dict,
                     ignore: frozenset = frozenset()) -> str | None:
    """Why a check does not run at the library's defaults (None when it does); settings in
    ``ignore`` do not count."""
    diffs = []
    if "extraction" in bound:
        diffs.append(bound["extraction"])
    for key in sorted(set(bound) | set(helper_defaults)):
        if key in ("gold", "pred", "extraction") or key in ignore:
            continue
        if key not in DEFAULTS:
            diffs.append(f"{key} set")
            continue
        node = bound.get(key)
        if node is None:
            value = helper_defaults.get(key)
        elif isinstance(node, ast.Name) and node.id in row:
            value = _literal(row[node.id])
        else:
            value = _literal(node)
        if value != DEFAULTS[key]:
            diffs.append(f"{key}={value!r}")
    return "non-default settings: " + ", ".join(diffs) if diffs else None


def _value(node, row: dict):
    if isinstance(node, ast.Name) and node.id in row:
        node = row[node.id]
    return _literal(node)


def collect(tests_dir: str, ignore: frozenset = frozenset()) -> tuple[list[dict], list[dict]]:
    """(cases, skipped) from every test_*.py under ``tests_dir``; a check whose only
    non-default settings are in ``ignore`` counts as a case."""
    files = sorted(glob.glob(os.path.join(tests_dir, "test_*.py")))
    trees = {os.path.basename(f): ast.parse(open(f).read(), filename=f) for f in files}
    helpers = _helpers(trees)
    cases, skipped = [], []
    for fname, tree in trees.items():
        for fn in tree.body:
            if not (isinstance(fn, ast.FunctionDef) and fn.name.startswith("test")):
                continue
            rows = _parametrize_rows(fn)
            asserts = [n for n in ast.walk(fn) if isinstance(n, ast.Assert)]
            for row in rows if rows is not None else [{}]:
                for node in asserts:
                    where = {"file": fname, "function": fn.name, "line": node.lineno}
                    call, expected = _split_assert(node.test)
                    bound, reason = _check_call(call, helpers)
                    if reason is None and _uses_mock(fn):
                        reason = "mocks library internals"
                    if reason is None:
                        helper = ast.unparse(call).split("(")[0]
                        defaults = helpers.get(helper, (None, {}))[1]
                        try:
                            reason = _settings_reason(bound, row, defaults, ignore)
                        except ValueError:
                            reason = "non-literal settings"
                    if reason is None:
                        try:
                            gold, pred = _value(bound["gold"], row), _value(bound["pred"], row)
                            exp = expected if isinstance(expected, bool) else _value(expected, row)
                        except ValueError:
                            reason = "non-literal gold, pred or expected"
                    if reason is None and not (isinstance(gold, str) and isinstance(pred, str)):
                        reason = "gold or pred is not a string"
                    if reason is None and exp not in (0, 1):  # True/False or 1/0
                        reason = "expected value is not boolean"
                    if reason is not None:
                        skipped.append({**where, "reason": reason})
                        continue
                    cases.append({"gold_raw": gold, "gold": bare_answer(gold), "pred": pred,
                                  "expected": bool(exp), **where})
    return cases, skipped


# ------------------------------------------------------------------------------ golds
_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def _matching_brace(s: str, open_at: int) -> int | None:
    depth = 0
    for j in range(open_at, len(s)):
        if s[j] == "{" and (j == 0 or s[j - 1] != "\\"):
            depth += 1
        elif s[j] == "}" and (j == 0 or s[j - 1] != "\\"):
            depth -= 1
            if depth == 0:
                return j
    return None


def bare_answer(gold: str) -> str:
    """The gold as a dataset would store it: no surrounding $...$, $$...$$, \\(...\\), \\[...\\],
    and no single \\boxed{...} around the whole of it."""
    s = gold.strip()
    boxed_done = False
    while True:
        before = s
        for left, right in _DELIMS:
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                inner = s[len(left):-len(right)]
                if left.startswith("$") and re.search(r"(?<!\\)\$", inner):
                    continue  # $a$ and $b$: two pieces, not one wrapped answer
                if not left.startswith("$") and (left in inner or right in inner):
                    continue
                s = inner.strip()
                break
        m = re.match(r"\\boxed\s*\{", s)
        if m and not boxed_done and _matching_brace(s, m.end() - 1) == len(s) - 1:
            s, boxed_done = s[m.end():-1].strip(), True
        if s == before:
            return s


# ------------------------------------------------------------------------------- check
def run_checks(cases: list[dict], timeout: float | None) -> None:
    """Sets ``ours``, ``timeout`` and ``error`` on every case (one check at a time)."""
    pool = default_pool()
    for case in cases:
        t0, e0 = pool.stats["timeouts"], pool.stats["errors"]
        case["ours"] = verify(case["pred"], case["gold"], timeout=timeout)
        case["timeout"] = pool.stats["timeouts"] > t0
        case["error"] = pool.stats["errors"] > e0
        case["extracted"] = extract_answer(case["pred"])  # regex only: safe outside the pool


def _short(s: str, n: int = 90) -> str:
    r = repr(s)
    return r if len(r) <= n else r[:n - 4] + "...'"


def report(cases: list[dict], skipped: list[dict], tests_dir: str, seconds: float) -> dict:
    equal = [c for c in cases if c["expected"]]
    unequal = [c for c in cases if not c["expected"]]
    fps = [c for c in unequal if c["ours"]]
    fns = [c for c in equal if not c["ours"]]
    timeouts = [c for c in cases if c["timeout"]]
    errors = [c for c in cases if c["error"]]
    agree = len(cases) - len(fps) - len(fns)
    reasons = collections.Counter(s["reason"] for s in skipped)
    pct = lambda a, b: round(100.0 * a / b, 1) if b else 0.0  # noqa: E731

    print(f"Math-Verify {suite_version(tests_dir) or '?'} test suite at {tests_dir}")
    print(f"{len(cases) + len(skipped)} asserted checks read, {len(cases)} run at default "
          f"settings, {len(skipped)} skipped:")
    for reason, n in reasons.most_common():
        print(f"  {n:4d}  {reason}")
    print("cases per file: " + ", ".join(
        f"{f} {n}" for f, n in sorted(collections.Counter(c["file"] for c in cases).items())))
    print(f"\nagreement: {agree}/{len(cases)} = {pct(agree, len(cases))}%  ({seconds:.0f} s)")
    print(f"accepted of equal pairs:    {len(equal) - len(fns)}/{len(equal)} = "
          f"{pct(len(equal) - len(fns), len(equal))}%")
    print(f"rejected of unequal pairs:  {len(unequal) - len(fps)}/{len(unequal)} = "
          f"{pct(len(unequal) - len(fps), len(unequal))}%")
    print(f"check timeouts: {len(timeouts)}, check errors: {len(errors)}")
    for title, group in (("false positives (ours True, suite False)", fps),
                         ("false negatives (ours False, suite True)", fns),
                         ("timeouts", timeouts)):
        print(f"\n{title}: {len(group)}")
        for c in group:
            print(f"  {c['file']}:{c['line']} {c['function']}")
            print(f"    gold {_short(c['gold'])}")
            print(f"    pred {_short(c['pred'])}")
    return {"suite": f"math-verify {suite_version(tests_dir) or '?'}", "cases": len(cases),
            "agreement_pct": pct(agree, len(cases)), "equal_pairs": len(equal),
            "accepted_equal": len(equal) - len(fns), "unequal_pairs": len(unequal),
            "rejected_unequal": len(unequal) - len(fps), "false_positives": len(fps),
            "false_negatives": len(fns), "timeouts": len(timeouts), "errors": len(errors),
            "skipped": len(skipped), "skipped_by_reason": dict(reasons.most_common()),
            "seconds": round(seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tests", help="math-verify's tests/ folder (default: find or download)")
    ap.add_argument("--dump", help="write every case as a JSON line to this file")
    ap.add_argument("--timeout", type=float, default=None,
                    help="per-check time limit in seconds (default: verify's own)")
    ap.add_argument("--any-match-types", action="store_true",
                    help="also run checks whose only non-default setting is match_types "
                         "(latex-only or expr-only extraction)")
    args = ap.parse_args()
    tests_dir = find_tests(args.tests)
    ignore = frozenset({"match_types"} if args.any_match_types else ())
    cases, skipped = collect(tests_dir, ignore)
    t = time.perf_counter()
    run_checks(cases, args.timeout)
    seconds = time.perf_counter() - t
    if args.dump:
        with open(args.dump, "w") as f:
            for c in cases:
                f.write(json.dumps(c, ensure_ascii=False) + "\n")
    summary = report(cases, skipped, tests_dir, seconds)
    if args.dump:
        print(f"\nall {len(cases)} cases written to {args.dump}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
