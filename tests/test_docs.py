"""README.md and docs/*.md name only things that exist.

Four checks over every page: each ``o1jax.x.y`` name imports (a module, or an attribute of one);
each ``python -m o1jax.X`` names a module that runs as a script; each repository path in a code
span or block exists (with ``path::test`` or ``path:NAME``, the name is in the file); each
markdown link reaches a page, and its ``#anchor`` a heading of that page (GitHub's slug rules).
Modules are found with ``importlib.util.find_spec``; one is imported only to check an attribute.
"""

from __future__ import annotations

import glob
import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEST_COMMAND = ("bash scripts/setup.sh --test && "
                ".venv/bin/python -m pytest -q -n 2 --dist loadfile tests")
MAX_README_LINES = 250

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
SPAN = re.compile(r"(`+)(.+?)\1", re.S)
DOTTED = re.compile(r"(?<![\w./-])o1jax(?:\.[A-Za-z_]\w*)+")
RUN_MODULE = re.compile(r"-m\s+(o1jax[\w.]*)")
FROM_IMPORT = re.compile(r"^\s*from\s+(o1jax[\w.]*)\s+import\s+([\w, ]+)", re.M)
IMPORT_AS = re.compile(r"^\s*import\s+(o1jax[\w.]*)\s+as\s+(\w+)", re.M)
REPO_DIRS = ("o1jax", "configs", "benchmarks", "tests", "scripts", "docs", ".ci")
REPO_PATH = re.compile(r"(?<![\w/.~$-])(?:%s)/[\w./*-]*(?:::?[\w-]+)?" %
                       "|".join(re.escape(d) for d in REPO_DIRS))
ROOT_FILE = re.compile(r"[\w-]+\.(?:txt|md|toml|cfg|ini)")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]{2,}(?:\.\w+)?$")   # configs/NAME.py: any file there
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)


def code_blocks(text: str) -> list[str]:
    """The contents of fenced code blocks."""
    return [m.group(0) for m in FENCE.finditer(text)]


def prose(text: str) -> str:
    """``text`` without fenced code blocks."""
    return FENCE.sub("", text)


def code_spans(text: str) -> list[str]:
    """The contents of inline code spans outside fenced blocks."""
    return [m.group(2) for m in SPAN.finditer(prose(text))]


def code(text: str) -> list[str]:
    """Every piece of code on a page: fenced blocks and inline spans."""
    return code_blocks(text) + code_spans(text)


def _spec(name: str):
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):   # a parent that is a module, not a package
        return None


def resolve(name: str) -> str | None:
    """None when dotted ``name`` is a module or an attribute path of one, else the problem."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        module = ".".join(parts[:i])
        if _spec(module) is None:
            continue
        if i == len(parts):
            return None
        obj = importlib.import_module(module)
        for attr in parts[i:]:   # a submodule would have been the longer module above
            if not hasattr(obj, attr):
                return f"{name}: {module} has no {'.'.join(parts[i:])}"
            obj = getattr(obj, attr)
        return None
    return f"{name}: no such module"


def imported(text: str) -> dict[str, str]:
    """Local name -> dotted name, for each ``from o1jax.x import y [as z]`` and ``import
    o1jax.x as z`` in a page's code: a page that imports ``sharding`` means
    ``o1jax.sharding`` when it later writes ``sharding.make_mesh``."""
    out = {}
    for block in code(text):
        for module, names in FROM_IMPORT.findall(block):
            for item in filter(None, (n.strip() for n in names.split(","))):
                original, _, local = item.partition(" as ")
                out[(local or original).strip()] = f"{module}.{original.strip()}"
        out.update({local: module for module, local in IMPORT_AS.findall(block)})
    return out


def name_problems(text: str) -> list[str]:
    """``o1jax.`` names in code that do not import: dotted in full, imported, or written
    through a name the page imported."""
    aliases = imported(text)
    names = set(aliases.values())
    for piece in code(text):
        names.update(DOTTED.findall(piece))
        if aliases:
            short = re.compile(r"(?<![\w./-])(%s)((?:\.[A-Za-z_]\w*)+)" % "|".join(aliases))
            names.update(aliases[a] + rest for a, rest in short.findall(piece))
    return [p for p in map(resolve, sorted(names)) if p]


def runs_as_script(module: str) -> bool:
    """Whether ``python -m module`` runs something: a module with a ``__main__`` guard, or a
    package with a ``__main__`` submodule."""
    spec = _spec(module)
    if spec is None:
        return False
    if spec.submodule_search_locations is not None:
        return _spec(module + ".__main__") is not None
    return "__main__" in Path(spec.origin).read_text()


def command_problems(text: str) -> list[str]:
    """``python -m o1jax.X`` commands whose module does not exist or does not run."""
    modules = {m for piece in code(text) for m in RUN_MODULE.findall(piece)}
    return [f"python -m {m}: no such command" for m in sorted(modules) if not runs_as_script(m)]


def _path_problem(token: str) -> str | None:
    token = token.rstrip(".,;)")
    path, sep, name = token.partition("::")
    if not sep:
        path, sep, name = token.partition(":")
    if "*" in path:
        return None if glob.glob(str(ROOT / path)) else f"`{token}`: nothing matches"
    parts = path.rstrip("/").split("/")
    if PLACEHOLDER.match(parts[-1]):
        parts = parts[:-1]
    target = ROOT.joinpath(*parts)
    if not target.exists():
        return f"`{token}`: no such file or directory"
    if name and not re.fullmatch(r"[\d-]+", name):   # a name, not line numbers
        defined = re.compile(rf"^\s*(?:(?:async\s+)?def|class)\s+{name}\b|^{name}\s*[:=]", re.M)
        if not target.is_file() or not defined.search(target.read_text()):
            return f"`{token}`: {path} defines no {name}"
    return None


def path_problems(text: str) -> list[str]:
    """Repository paths in code (``o1jax/...``, ``tests/x.py::test``, ``requirements.txt``)
    that do not exist."""
    tokens = {t for piece in code(text) for t in REPO_PATH.findall(piece)}
    tokens.update(s for s in code_spans(text) if ROOT_FILE.fullmatch(s))
    return [p for p in map(_path_problem, sorted(tokens)) if p]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text lower-cased, punctuation other than
    ``-`` and ``_`` removed, spaces made hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").replace("*", "").lower()
    return "".join(c for c in text if c.isalnum() or c in "-_ ").replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a page, repeated headings numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    out = set()
    for _, heading in HEADING.findall(prose(text)):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def link_problems(text: str, page: Path) -> list[str]:
    """Links (and images) to a file that does not exist or to an anchor that is not there;
    ``page`` is where ``text`` lives, so relative links resolve from its folder."""
    out = []
    for target in LINK.findall(SPAN.sub("", prose(text))):
        if re.match(r"[a-z]+:", target):   # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if path and not dest.exists():
            out.append(f"({target}): no such file")
        elif anchor:
            dest_text = text if dest == page else dest.read_text() if dest.suffix == ".md" else ""
            if anchor not in anchors(dest_text):
                out.append(f"({target}): no heading with that anchor")
    return out


def problems(text: str, page: Path) -> list[str]:
    return (name_problems(text) + command_problems(text) + path_problems(text)
            + link_problems(text, page))


def test_pages_exist():
    assert (ROOT / "README.md") in PAGES and len(PAGES) > 1


def test_every_name_path_and_link_exists():
    found = {p.relative_to(ROOT).as_posix(): problems(p.read_text(), p) for p in PAGES}
    assert {page: probs for page, probs in found.items() if probs} == {}


def test_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    lines = len(readme.splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move detail to docs/"
    assert TEST_COMMAND in readme and TEST_COMMAND in (ROOT / ".ci" / "run").read_text()
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in LINK.findall(readme)}
    unlinked = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert unlinked == [], f"docs pages README does not link: {unlinked}"


def test_docs_and_benchmarks_need_nothing_outside_the_repository():
    texts = {p.relative_to(ROOT).as_posix(): p.read_text()
             for p in [*PAGES, *sorted((ROOT / "benchmarks").glob("*.py"))]}
    outside = {name for name, text in texts.items()
               if re.search(r"\.\./shared|shared/peers|/work/", text)}
    assert outside == set()


def test_tunix_side_says_how_to_get_tunix(tmp_path):
    """benchmarks/tunix_grpo.py runs under another environment's Python; under one without
    Tunix (-S: no site-packages at all) it stops before importing anything, saying how to make
    the right one."""
    res = subprocess.run([sys.executable, "-S", str(ROOT / "benchmarks" / "tunix_grpo.py")],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode != 0
    assert "pip install google-tunix==0.1.7" in res.stderr and "Traceback" not in res.stderr


SYNTHETIC = """# A page

## Good `names`, and Bad Ones!

`o1jax.rewards.verify`, `o1jax.rewards.nonexistent_name`, `o1jax.nosuchmodule.x`.

```python
from o1jax import sharding
from o1jax.rewards import verify as check, no_such_function
```

`sharding.make_mesh`, `sharding.maybe_initialize_distributed(True)`, `check("1", "1")`.

```bash
python -m o1jax.train --config configs/smoke.py
python -m o1jax.nosuchcommand
python -m o1jax.rewards
```

`o1jax/rl/iteration.py`, `o1jax/rl/no_such_file.py`, `tests/test_docs.py::test_no_such_test`,
`configs/NAME.py`, `requirements.txt`, `requirements-nope.txt`.

[fine](#good-names-and-bad-ones) [fine too](../README.md) [bad](#no-such-heading)
[bad page](no_such_page.md) [bad anchor elsewhere](../README.md#no-such-heading)
"""


def test_checker_catches_bad_names_paths_and_links():
    page = ROOT / "docs" / "synthetic.md"
    assert name_problems(SYNTHETIC) == [
        "o1jax.nosuchcommand: o1jax has no nosuchcommand",
        "o1jax.nosuchmodule.x: o1jax has no nosuchmodule.x",
        "o1jax.rewards.no_such_function: o1jax.rewards has no no_such_function",
        "o1jax.rewards.nonexistent_name: o1jax.rewards has no nonexistent_name",
        "o1jax.sharding.maybe_initialize_distributed: o1jax.sharding has no "
        "maybe_initialize_distributed"]
    assert command_problems(SYNTHETIC) == [
        "python -m o1jax.nosuchcommand: no such command",
        "python -m o1jax.rewards: no such command"]
    assert path_problems(SYNTHETIC) == [
        "`o1jax/rl/no_such_file.py`: no such file or directory",
        "`requirements-nope.txt`: no such file or directory",
        "`tests/test_docs.py::test_no_such_test`: tests/test_docs.py defines no test_no_such_test"]
    assert link_problems(SYNTHETIC, page) == [
        "(#no-such-heading): no heading with that anchor",
        "(no_such_page.md): no such file",
        "(../README.md#no-such-heading): no heading with that anchor"]


def test_slugs_follow_github():
    text = "# Run on TPU or GPU\n## `rl.length_buckets`: padding-free\n## Run on TPU or GPU\n"
    assert anchors(text) == {"run-on-tpu-or-gpu", "rllength_buckets-padding-free",
                             "run-on-tpu-or-gpu-1"}
