"""The code sandbox against hostile programs: each ends with a counted reason within its limits,
and nothing outside its directory changes. These tests fail (never skip) where bubblewrap is
missing: code rewards must not run without it."""

import os
import socket
import time

import pytest

from o1jax.rewards import sandbox
from o1jax.rewards.sandbox import Limits, run_programs, run_python

FAST = Limits(cpu_seconds=1, wall_seconds=3.0)


def _run(source: str, limits: Limits = FAST, stdin: str = ""):
    t = time.monotonic()
    out = run_python({"main.py": source}, "main.py", stdin, limits)
    assert time.monotonic() - t < 10
    return out


def test_a_program_runs_and_reads_its_input_and_files():
    out = run_python({"main.py": "import helper, sys\nprint(helper.twice(int(sys.stdin.read())))",
                      "helper.py": "def twice(x):\n    return 2 * x\n"}, "main.py", "21")
    assert out == ("ok", 0, "42\n", "")
    assert _run("raise SystemExit(3)").status == "error"


def test_a_loop_runs_out_of_cpu_time_and_a_sleeper_out_of_wall_time():
    assert _run("while True:\n    pass").status == "cpu"
    t = time.monotonic()
    assert _run("import time\ntime.sleep(60)").status == "timeout"
    assert time.monotonic() - t < 3.0 + 2


def test_a_fork_bomb_is_capped_and_killed_with_its_tree():
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    assert _run(bomb).status in ("timeout", "cpu")
    assert _run("print(1)").status == "ok"       # the next program still starts


def test_memory_and_output_are_bounded():
    assert _run("x = bytearray(4 << 30)").status == "memory"
    out = _run("while True:\n    print('x' * 10000)")
    assert out.status == "output" and len(out.stdout) <= FAST.output_bytes
    assert _run("open('big', 'w').write('x' * (1 << 20))").status == "output"


def test_nothing_outside_its_directory_is_seen_or_changed(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    victim = os.path.abspath(__file__)
    before = open(victim).read()
    for target in (str(secret), victim, "/usr/evil", "/tmp/evil"):
        out = _run(f"open({target!r}, 'a').write('x')")
        assert out.status == "error", (target, out)
    assert not os.path.exists("/tmp/evil") and open(victim).read() == before
    assert _run(f"print(open({str(secret)!r}).read())").status == "error"
    assert secret.read_text() == "do not read"
    listing = _run("import os\nprint(sorted(os.listdir('/')))").stdout
    assert "root" not in listing and "home" not in listing and "tmp" not in listing


def test_no_network_reaches_the_host():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        out = _run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)")
        assert out.status == "error" and "refused" in out.stderr.lower()
        server.settimeout(0.1)
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()


def test_the_trainers_environment_is_not_visible(monkeypatch):
    monkeypatch.setenv("O1JAX_TEST_SECRET", "hunter2")
    out = _run("import os\nprint(dict(os.environ))\n"
               "for p in filter(str.isdigit, os.listdir('/proc')):\n"
               "    print(open(f'/proc/{p}/environ', 'rb').read())")
    assert out.status == "ok" and "hunter2" not in out.stdout and "O1JAX" not in out.stdout


def test_without_bubblewrap_it_refuses_to_run(monkeypatch):
    real = sandbox.shutil.which
    monkeypatch.setattr(sandbox.shutil, "which", lambda n: None if n == "bwrap" else real(n))
    with pytest.raises(sandbox.SandboxMissing, match="apt-get install bubblewrap"):
        run_python({"main.py": "print(1)"}, "main.py")


def test_programs_of_one_batch_run_apart_and_hostile_ones_fail_alone():
    programs = ["print(6*7)", "while True:\n    pass", "import time\ntime.sleep(60)",
                "x = bytearray(4 << 30)", "while True:\n    print('x' * 10000)",
                "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n"
                "        pass", "raise SystemExit(3)", "import sys\nprint(sys.argv)"]
    t = time.monotonic()
    out = run_programs(programs, FAST)
    assert time.monotonic() - t < FAST.wall_seconds + 4
    assert out[0].status == "ok" and out[1].status in ("cpu", "timeout")
    assert out[0].stdout == "42\n"
    assert out[2].status == "timeout" and out[3].status == "memory"
    assert out[4].status == "output" and len(out[4].stdout) <= FAST.output_bytes
    assert out[5].status in ("timeout", "cpu") and out[6].status == "error"
    assert out[7] == ("ok", 0, "['main.py']\n", "")
    assert run_programs(["print(1)"] * 16, FAST) == [("ok", 0, "1\n", "")] * 16
