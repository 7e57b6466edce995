"""Running a Python program the model wrote: in a bubblewrap sandbox, never outside one.

``run_python`` writes the program into a private temporary directory and runs it with the
system's Python (under /usr, bound read-only) inside ``bwrap`` with every namespace unshared: no
network (a loopback of its own), its own process tree (killed with it), no view of the host's
files beyond /usr and its directory (mounted as /work, the only writable place), an empty
environment. Resource limits (``prlimit``) bound its CPU time, address space, processes, the size
of any file it writes (stdout and stderr are files too, so output is bounded the same way) and
its open files; a wall-clock limit kills the whole tree. Run as root, each program runs as a
fresh unprivileged uid of its own, so that the process limit counts only its processes (a fork
bomb's processes that the kernel is still tearing down do not hold back the next run); run as
another user, the limit is that user's process count plus the sandbox's.

What it does not stop: a program can fill its directory's disk with many files below the file
size limit until the wall-clock limit; it can use the CPU time it is given to probe the kernel's
system calls (bubblewrap sets no seccomp filter here); and it sees its own harness (``harness``),
so a program that inspects its interpreter's memory could find the nonce that certifies a test
result (a learned policy reaching for that would show up as passes that do not replay).

If ``bwrap`` or a system Python is missing, ``SandboxMissing`` is raised: code is never run
unsandboxed. ``apt-get install bubblewrap`` provides it (``.ci/run`` does).
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import signal
import subprocess
import tempfile
from typing import NamedTuple

SANDBOX_UIDS = (1 << 20, 1 << 24)   # a fresh uid per run (as root): see ``run_python``
PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3")


class SandboxMissing(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class Limits:
    """cpu_seconds: CPU time; wall_seconds: wall-clock time (the whole process tree);
    memory_bytes: address space per process; processes: processes and threads; output_bytes:
    the most any file (stdout, stderr, a file it writes) may hold; open_files: descriptors."""
    cpu_seconds: int = 2
    wall_seconds: float = 5.0
    memory_bytes: int = 512 << 20
    processes: int = 16
    output_bytes: int = 64 << 10
    open_files: int = 64


class Outcome(NamedTuple):
    """status: "ok" (exit 0), "error" (another exit status), "timeout" (wall clock), "cpu",
    "memory", "output" (a file or the output over its limit) or "killed" (another signal)."""
    status: str
    returncode: int
    stdout: str
    stderr: str


def sandbox_command() -> list[str]:
    """The ``prlimit``-free part of the command: bwrap and its mounts (raises ``SandboxMissing``
    naming the fix when the sandbox cannot be built)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxMissing("code rewards run programs in bubblewrap, and `bwrap` is not on "
                             "PATH: install it (apt-get install bubblewrap); nothing is run "
                             "outside the sandbox")
    if not any(os.path.exists(p) for p in PYTHONS):
        raise SandboxMissing(f"the sandbox runs the system's Python, and none of {PYTHONS} "
                             "exists: apt-get install python3")
    cmd = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
           "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/work",
           "--ro-bind", "/usr", "/usr", "--proc", "/proc", "--dev", "/dev"]
    for top in ("/bin", "/lib", "/lib64", "/lib32", "/sbin"):
        if os.path.islink(top):
            cmd += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            cmd += ["--ro-bind", top, top]
    return cmd


def _tasks_of(uid: int) -> int:
    """Processes and threads running as ``uid`` (what RLIMIT_NPROC counts)."""
    n = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                n += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            pass
    return n


def _limits(limits: Limits, running: int) -> list[str]:
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        raise SandboxMissing("the sandbox sets its limits with `prlimit`, which is not on PATH: "
                             "apt-get install util-linux")
    return [prlimit, f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds + 1}",
            f"--as={limits.memory_bytes}",
            f"--nproc={running + limits.processes}", f"--fsize={limits.output_bytes}",
            f"--nofile={limits.open_files}", "--core=0", "--"]


def run_python(files: dict[str, str], main: str, stdin: str = "",
               limits: Limits = Limits(), collect=None) -> Outcome:
    """Runs ``python3 main`` in the sandbox with ``files`` (name -> text, plain names) in its
    working directory and ``stdin`` as its input. Never raises for what the program does;
    raises ``SandboxMissing`` when there is no sandbox to run it in. ``collect(work)``, if
    given, reads the working directory (host path) after the run, before it is removed."""
    command = _limits(limits, 0 if os.geteuid() == 0 else _tasks_of(os.geteuid())) + \
        sandbox_command()
    python = next(p for p in PYTHONS if os.path.exists(p))
    root = os.geteuid() == 0
    uid = random.randrange(*SANDBOX_UIDS) if root else os.geteuid()
    host = tempfile.mkdtemp(prefix="o1jax-sandbox-")
    try:
        work = os.path.join(host, "work")
        os.mkdir(work)
        for name, text in files.items():
            if os.path.basename(name) != name or name.startswith("."):
                raise ValueError(f"sandbox file names are plain names, got {name!r}")
            with open(os.path.join(work, name), "w") as f:
                f.write(text)
        if root:     # nobody may pass through ``host`` (not list it) and own ``work``
            os.chmod(host, 0o711)
            for path in [work] + [os.path.join(work, n) for n in files]:
                os.chown(path, uid, uid)
        out, err = (open(os.path.join(host, n), "w+b") for n in ("stdout", "stderr"))
        with out, err:
            proc = subprocess.Popen(
                command + ["--bind", work, "/work", "--chdir", "/work", python, "-E", "-s", "-B",
                           main],
                stdin=subprocess.PIPE, stdout=out, stderr=err, start_new_session=True,
                env={"PATH": "/usr/bin:/bin"},    # bwrap's own process shows its environment
                **(dict(user=uid, group=uid, extra_groups=[]) if root else {}))
            status = _wait(proc, stdin.encode(), limits.wall_seconds)
            out.seek(0)
            err.seek(0)
            stdout = out.read(limits.output_bytes).decode("utf-8", "replace")
            stderr = err.read(limits.output_bytes).decode("utf-8", "replace")
        if status is None:
            status = _status(proc.returncode, stderr)
        if collect is not None:
            collect(work)
        return Outcome(status, proc.returncode, stdout, stderr)
    finally:
        shutil.rmtree(host, ignore_errors=True)


# Runs programs p0.py .. p{n-1}.py of its directory, each in a child forked from this warm
# interpreter: all forked before any starts (so that one program's forks cannot starve another's
# start), each in a process group of its own with its own CPU limit, stdout and stderr files;
# the wall clock is shared, and children still running at the deadline are killed.
BATCH_HARNESS = """
import json, os, resource, signal, sys, time, traceback
job = json.loads(sys.stdin.read())
n, cpu, wall = job["n"], job["cpu"], job["wall"]
gate_r, gate_w = os.pipe()
children = {}
for i in range(n):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(gate_w)
            os.setpgid(0, 0)
            for fd, name in ((1, "o%d" % i), (2, "e%d" % i)):
                os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
            os.read(gate_r, 1)
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
            with open("p%d.py" % i) as f:
                source = f.read()
            sys.argv = ["main.py"]
            exec(compile(source, "main.py", "exec"), {"__name__": "__main__"})
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    children[pid] = i
os.close(gate_r)
os.close(gate_w)
deadline = time.monotonic() + wall
codes = {}
while children and time.monotonic() < deadline:
    pid, status = os.waitpid(-1, os.WNOHANG)
    if pid == 0:
        time.sleep(0.002)
    elif pid in children:
        codes[children.pop(pid)] = os.waitstatus_to_exitcode(status)
for pid, i in children.items():
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    codes[i] = "timeout"
print(json.dumps(codes))
"""


def run_programs(programs: list[str], limits: Limits = Limits()) -> list[Outcome]:
    """Runs each of ``programs`` (no input) as ``run_python`` would, all in one sandbox: a
    warm interpreter forks a child per program (a fork is about a millisecond; a sandbox and
    an interpreter start cost about 40 ms). Each child has the CPU, memory, file-size and
    open-file limits of ``limits``; they share the wall clock, the process limit (raised by
    one per program) and the working directory (one program may read another's files).
    Never raises for what a program does; ``SandboxMissing`` without a sandbox."""
    if not programs:
        return []
    import json
    files = {f"p{i}.py": text for i, text in enumerate(programs)}
    batch = dataclasses.replace(limits, processes=limits.processes + len(programs),
                                open_files=limits.open_files + 2 * len(programs))
    job = json.dumps({"n": len(programs), "cpu": limits.cpu_seconds,
                      "wall": limits.wall_seconds})
    outputs = {}
    harness = run_python({**files, "harness.py": BATCH_HARNESS}, "harness.py", job,
                         dataclasses.replace(batch, wall_seconds=limits.wall_seconds + 2.0),
                         collect=lambda work: outputs.update(_read_outputs(
                             work, len(programs), limits.output_bytes)))
    try:
        codes = json.loads(harness.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return [Outcome(harness.status if harness.status != "ok" else "error",
                        harness.returncode, "", harness.stderr)] * len(programs)
    results = []
    for i in range(len(programs)):
        out, err = outputs.get(i, ("", ""))
        code = codes.get(str(i), "timeout")
        status = "timeout" if code == "timeout" else _status(int(code), err)
        results.append(Outcome(status, -1 if code == "timeout" else int(code), out, err))
    return results


def _read_outputs(work: str, n: int, limit: int) -> dict:
    """Each program's (stdout, stderr) files of a ``run_programs`` directory."""
    def read(name):
        try:
            with open(os.path.join(work, name), "rb") as f:
                return f.read(limit).decode("utf-8", "replace")
        except OSError:
            return ""
    return {i: (read(f"o{i}"), read(f"e{i}")) for i in range(n)}


def _wait(proc: subprocess.Popen, stdin: bytes, wall_seconds: float) -> str | None:
    """Feeds stdin and waits; "timeout" (the tree killed) when the wall clock runs out."""
    try:
        proc.communicate(stdin, timeout=wall_seconds)
        return None
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        return "timeout"


def _status(returncode: int, stderr: str) -> str:
    """The outcome of an exit status; bwrap reports its program's death by signal S as the
    status 128 + S."""
    sig = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    if returncode == 0:
        return "ok"
    if sig == signal.SIGXCPU:
        return "cpu"
    if sig == signal.SIGXFSZ or "File too large" in stderr:
        return "output"
    if "MemoryError" in stderr or "Cannot allocate memory" in stderr:
        return "memory"
    return "killed" if sig else "error"
