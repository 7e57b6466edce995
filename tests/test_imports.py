"""The house's shape: packages import only downward (the import-linter contract in
.importlinter), no import loop even counting imports inside functions, at most three
function-level imports of o1jax modules (each with its reason beside it), no module over 300
lines."""

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "o1jax")
MAX_LINES = 300
MAX_FUNCTION_LEVEL_IMPORTS = 3


def _modules() -> dict[str, str]:
    """{dotted module name: file path} of every module in o1jax/."""
    out = {}
    for directory, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(directory, f)
                name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                out[name.removesuffix(".__init__")] = path
    return out


def imports_of(name: str, path: str, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported o1jax module, line, inside a function) for every import statement of the module
    ``name`` at ``path``; ``from o1jax.x import y`` counts as importing o1jax.x.y when that is a
    module, else o1jax.x."""
    tree = ast.parse(open(path).read())
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                      ast.Lambda))
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")
                    parts = parts[:len(parts) - child.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                           for a in child.names]
            else:
                visit(child, inner)
                continue
            found.extend((t, child.lineno, in_function) for t in targets
                         if t in known and t != name)
    visit(tree, False)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))
    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def _graph():
    mods = _modules()
    known = set(mods)
    edges = {m: imports_of(m, p, known) for m, p in mods.items()}
    return mods, edges


def test_the_cycle_finder_finds_a_loop_through_a_function_level_import(tmp_path):
    a = tmp_path / "a.py"
    a.write_text("import o1jax.b\n")
    b = tmp_path / "b.py"
    b.write_text("def f():\n    from o1jax import a\n    return a\n")
    known = {"o1jax.a", "o1jax.b"}
    graph = {"o1jax.a": {t for t, *_ in imports_of("o1jax.a", str(a), known)},
             "o1jax.b": {t for t, *_ in imports_of("o1jax.b", str(b), known)}}
    assert imports_of("o1jax.b", str(b), known) == [("o1jax.a", 2, True)]
    assert cycles(graph) == [["o1jax.a", "o1jax.b"]]


def test_no_import_cycle_counting_function_level_imports():
    mods, edges = _graph()
    graph = {m: {t for t, *_ in e} for m, e in edges.items()}
    # a package's __init__ re-exporting its modules is not a loop of the modules themselves
    for m in graph:
        graph[m] = {t for t in graph[m] if not m.startswith(t + ".")}
    assert cycles(graph) == []


def test_few_function_level_imports_each_with_its_reason():
    mods, edges = _graph()
    lazy = sorted({(m, line) for m, e in edges.items() for _, line, inner in e if inner})
    assert len(lazy) <= MAX_FUNCTION_LEVEL_IMPORTS, lazy
    for m, line in lazy:
        source = open(mods[m]).read().splitlines()
        context = " ".join(source[max(0, line - 3):line + 1])
        assert "#" in context, f"{m}:{line}: a function-level import needs its reason beside it"


def test_no_module_over_300_lines():
    long = {m: n for m, p in _modules().items()
            if (n := len(open(p).read().splitlines())) > MAX_LINES}
    assert long == {}


def test_import_contract_holds():
    """lint-imports (import-linter) on .importlinter's layers contract."""
    lint = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    run = subprocess.run([lint, os.path.join(ROOT, ".importlinter")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Contracts: 1 kept, 0 broken" in run.stdout


def test_the_documented_api_keeps_importing():
    """What README's users call keeps its names when modules move."""
    import importlib
    for name in ("o1jax.rewards.verify", "o1jax.rewards.functions.register",
                 "o1jax.data.builders.build", "o1jax.models.hf.load",
                 "o1jax.models.hf.save_pretrained", "o1jax.sharding.initialize_distributed",
                 "o1jax.rollout.prefill", "o1jax.rollout.decode_step"):
        module, _, attr = name.rpartition(".")
        assert callable(getattr(importlib.import_module(module), attr)), name
