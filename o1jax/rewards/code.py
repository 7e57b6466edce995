"""Checking a Python answer by running unit tests on it in the sandbox (``o1jax.rewards.sandbox``).

The response's last fenced code block is the solution. It is written to ``solution.py`` beside a
fixed harness that reads its job from stdin (a nonce, the tests, the entry point), imports the
solution, runs each test (an ``assert`` statement of the dataset's, MBPP's and HumanEval's form)
under its own time limit, and prints the nonce with the count passed. A solution that exits early,
prints a forged count or crashes at import earns nothing: only the line with this check's nonce
counts. Everything the program does happens inside the sandbox.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import NamedTuple, Sequence

from o1jax.rewards.sandbox import Limits, run_python

MAX_CODE_CHARS = 20_000
REASONS = ("passed", "failed", "no_code", "error", "timeout", "cpu", "memory", "output",
           "killed")
_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)
_ENTRY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

HARNESS = '''\
import json, signal, sys


class _Slow(BaseException):
    pass


def _alarm(*_):
    raise _Slow()


def main():     # the nonce stays a local: not a global the solution can import
    job = json.loads(sys.stdin.read())
    sys.stdin.close()
    signal.signal(signal.SIGALRM, _alarm)
    import solution
    scope = dict(vars(solution))
    scope.setdefault("candidate", scope.get(job["entry_point"]))
    passed = 0
    for test in job["tests"]:
        signal.setitimer(signal.ITIMER_REAL, job["seconds"])
        try:
            exec(test, dict(scope))
            passed += 1
        except BaseException:
            pass
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    sys.stdout.write("\\n" + job["nonce"] + " " + str(passed) + " " + str(len(job["tests"]))
                     + "\\n")


main()
'''


class CodeResult(NamedTuple):
    """passed of total tests; reason: "passed", "failed" (some tests failed), "no_code", or the
    sandbox's status when the harness did not report (``sandbox.Outcome.status``)."""
    passed: int
    total: int
    reason: str


def extract_code(response: str) -> str | None:
    """The last fenced code block of ``response`` (```python, ```py or a bare fence), or None;
    None too when it is longer than ``MAX_CODE_CHARS``."""
    blocks = _FENCE.findall(response[-4 * MAX_CODE_CHARS:])
    if not blocks or len(blocks[-1]) > MAX_CODE_CHARS:
        return None
    return blocks[-1]


def run_tests(response: str, tests: Sequence[str], entry_point: str,
              limits: Limits = Limits(), test_seconds: float = 1.0) -> CodeResult:
    """Runs ``tests`` against the code in ``response`` in the sandbox (raises
    ``sandbox.SandboxMissing`` rather than run it anywhere else)."""
    if not _ENTRY.fullmatch(entry_point):
        raise ValueError(f"entry point {entry_point!r} is not a Python name")
    code = extract_code(response)
    if code is None:
        return CodeResult(0, len(tests), "no_code")
    nonce = secrets.token_hex(16)
    job = json.dumps({"nonce": nonce, "tests": list(tests), "entry_point": entry_point,
                      "seconds": test_seconds})
    out = run_python({"solution.py": code, "harness.py": HARNESS}, "harness.py", job, limits)
    found = re.findall(rf"^{nonce} (\d+) (\d+)$", out.stdout, re.MULTILINE)
    if not found or int(found[-1][1]) != len(tests):
        reason = out.status if out.status != "ok" else "error"
        return CodeResult(0, len(tests), reason)
    passed = min(int(found[-1][0]), len(tests))
    return CodeResult(passed, len(tests), "passed" if passed == len(tests) else "failed")


def code_check(response: str, tests: Sequence[str], entry_point: str) -> tuple[float, str]:
    """(share of the tests passed, reason): the check the reward functions run in the pool."""
    r = run_tests(response, tests, entry_point)
    return r.passed / max(r.total, 1), r.reason
