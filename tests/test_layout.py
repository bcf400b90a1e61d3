"""The house: data flows one way (facade → engine → models/layers → ops), memory/ is pure data,
and no module imports itself back through another."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import vxl_fast

PACKAGE = Path(vxl_fast.__file__).resolve().parent
OPTIONAL = {"fastapi", "uvicorn", "openai", "httpx", "ray", "av", "lmms_eval"}  # extras a module may need
FACADE = {"api", "cli", "chat", "stream", "video_memory", "info", "server", "distributed", "eval", "__main__", "preflight",
          "terminal"}
# folder (or module) → what it may not import
FORBIDDEN = {
    "memory": FACADE | {"engine", "models", "layers", "testing"},
    "layers": FACADE | {"engine", "models", "memory", "testing"},
    "models": FACADE | {"engine", "testing"},
    "ops": FACADE | {"engine", "models", "layers", "memory", "testing"},
    "engine": FACADE | {"testing"},
    "video": FACADE | {"engine", "models", "layers", "testing"},
    **{area: {"models", "layers", "testing"} for area in FACADE},
    **{area: {"testing"} for area in ("", "_ext", "config", "device", "errors", "loader", "limits", "options", "prompt",
                                      "runtime")},
}
# testing/ holds the development tools (the tiny demo checkpoint, the fake-device rehearsal); the
# runtime never imports them, except the user-facing `demo` commands, which import the tiny
# checkpoint's writer inside the function that runs the command.
DEMO_COMMANDS = {"vxl_fast.cli", "vxl_fast.server.cli"}
DEMO_IMPORTS = {"vxl_fast.testing", "vxl_fast.testing.tiny"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(["vxl_fast", *parts])] = path
    return out


def _imports(name: str, path: Path, top_level_only: bool) -> set[str]:
    """vxl_fast modules that ``name`` imports (every import, or only those run at import time)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # imports under `if TYPE_CHECKING:` or try/except still run at import time
        nodes = [n for stmt in tree.body for n in ast.walk(stmt)
                 if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if base else alias.name)
                found.add(base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    modules = _modules()
    return {m for m in found if m in modules and m != name}


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _violations(name: str, targets: set[str], top_level: set[str] = frozenset()) -> list[str]:
    """Imports of ``name`` (``targets``, of which ``top_level`` run at import time) that break the rules."""
    rules = FORBIDDEN.get(_area(name), set())
    if name in DEMO_COMMANDS:  # the lazy imports of its demo command are allowed
        targets = {t for t in targets if t not in DEMO_IMPORTS or t in top_level}
    return [f"{name} imports {t}" for t in sorted(targets) if _area(t) in rules]


def test_import_direction():
    bad = [v for name, path in _modules().items()
           for v in _violations(name, _imports(name, path, False), _imports(name, path, True))]
    assert bad == []


def test_every_runtime_area_has_rules():
    """A new folder or top-level module gets a line in FORBIDDEN (at least: it may not import testing/)."""
    areas = {_area(m) for m in _modules()} - {"testing"}
    assert areas - set(FORBIDDEN) == set()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph`` (module → modules it imports), each as a closed path."""
    # a package's __init__ importing its own submodules is not a cycle back into it
    graph = {name: {t for t in targets if not name.startswith(t + ".")} for name, targets in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_import_cycle():
    """No cycle, counting every import: those inside functions too (they close a circle when they run)."""
    assert _cycles({name: _imports(name, path, top_level_only=False) for name, path in _modules().items()}) == []


def test_no_folder_cycle():
    """Nor between folders and top-level modules (e.g. server/ → distributed/ → server/), every import
    counted; the package root, which every import passes through, is left out."""
    graph: dict[str, set[str]] = {}
    for name, path in _modules().items():
        graph.setdefault(_area(name), set()).update(
            _area(t) for t in _imports(name, path, top_level_only=False) if _area(t) not in ("", _area(name)))
    assert _cycles(graph) == []


def test_the_rules_find_a_planted_violation(tmp_path):
    """The walker really reads imports: an upward import and a cycle planted in a copy are seen."""
    planted = tmp_path / "kv.py"
    planted.write_text("import torch\nfrom ..api import VideoXL\n\n\ndef f():\n    from ..engine import runner\n")
    found = _imports("vxl_fast.memory.kv", planted, top_level_only=False)
    assert found == {"vxl_fast.api", "vxl_fast.engine", "vxl_fast.engine.runner"}
    assert _violations("vxl_fast.memory.kv", found) == [
        "vxl_fast.memory.kv imports vxl_fast.api", "vxl_fast.memory.kv imports vxl_fast.engine",
        "vxl_fast.memory.kv imports vxl_fast.engine.runner"]
    assert _imports("vxl_fast.memory.kv", planted, top_level_only=True) == {"vxl_fast.api"}
    graph = {"vxl_fast.engine.runner": {"vxl_fast.memory.kv"}, "vxl_fast.memory.kv": found}
    assert _cycles(graph) == [["vxl_fast.engine.runner", "vxl_fast.memory.kv", "vxl_fast.engine.runner"]]


def test_the_runtime_may_not_import_the_development_tools(tmp_path):
    """testing/ is off limits, but for the demo commands' imports of the tiny checkpoint inside a function."""
    planted = tmp_path / "cli.py"
    planted.write_text("def demo():\n    from .testing.tiny import ensure_demo\n\n\n"
                       "def rehearse():\n    from .testing.rehearsal import rehearse\n")
    found, top = _imports("vxl_fast.cli", planted, False), _imports("vxl_fast.cli", planted, True)
    assert _violations("vxl_fast.cli", found, top) == ["vxl_fast.cli imports vxl_fast.testing.rehearsal"]
    assert _violations("vxl_fast.info", found, top) == [
        "vxl_fast.info imports vxl_fast.testing.rehearsal", "vxl_fast.info imports vxl_fast.testing.tiny"]
    planted.write_text("from .testing.tiny import ensure_demo\n")
    top = _imports("vxl_fast.cli", planted, True)
    assert _violations("vxl_fast.cli", top, top) == ["vxl_fast.cli imports vxl_fast.testing.tiny"]
    assert _violations("vxl_fast.api", {"vxl_fast.models.videoxl"}) == ["vxl_fast.api imports vxl_fast.models.videoxl"]


_IMPORT_EACH = """
import importlib, json, sys, torch  # torch stays loaded; every vxl_fast module is imported afresh
failed = {}
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "vxl_fast" or m.startswith("vxl_fast.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as e:
        failed[name] = f"{type(e).__name__}: {e}"
print(json.dumps(failed))
"""


def test_every_module_imports_alone():
    """In a fresh interpreter, each module imports with no other vxl_fast module loaded before it."""
    names = sorted(m for m in _modules() if m != "vxl_fast.__main__")
    r = subprocess.run([sys.executable, "-c", _IMPORT_EACH, *names], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    failed = json.loads(r.stdout.strip().splitlines()[-1])
    optional = {m: e for m, e in failed.items() if any(f"No module named '{o}'" in e for o in OPTIONAL)}
    assert {m: e for m, e in failed.items() if m not in optional} == {}


def test_nothing_reads_outside_the_repository():
    """The tests and the package travel alone: no path to a folder beside the clone."""
    repo = Path(__file__).resolve().parents[1]  # the checkout (the package may be installed elsewhere)
    sources = [*(repo / "python").rglob("*.py"), *(repo / "tests").rglob("*.py"), *(repo / "benchmarks").rglob("*.py"),
               *(repo / "benchmarks").glob("*.sh"), *(repo / ".ci").iterdir()]
    bad = [str(p.relative_to(repo)) for p in sources
           if p.is_file() and p != Path(__file__).resolve()
           and any(s in p.read_text(errors="replace") for s in ("../shared", '"shared"', "'shared'"))]
    assert bad == []


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_files_and_functions_stay_small():
    """No module over 400 lines, no function over 60 (the house rule), in the runtime and its tools."""
    long_files = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > 400}
    long_functions = {f"{name}:{fn.lineno} {fn.name}": fn.end_lineno - fn.lineno + 1
                      for name, path in _modules().items() for fn in _functions(ast.parse(path.read_text()))
                      if fn.end_lineno - fn.lineno + 1 > 60}
    assert long_files == {} and long_functions == {}


def _reads_environment(tree: ast.AST) -> list[int]:
    """Lines that touch ``os.environ`` or call ``os.getenv``, except to set a variable for a library
    (``os.environ.setdefault(...)``, ``os.environ[k] = v``)."""
    def is_environ(node) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "environ" and getattr(node.value, "id", "") == "os"

    writes = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "setdefault" \
                and is_environ(node.func.value):
            writes.add(id(node.func.value))
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store) and is_environ(node.value):
            writes.add(id(node.value))
    return sorted({node.lineno for node in ast.walk(tree)
                   if (is_environ(node) and id(node) not in writes)
                   or (isinstance(node, ast.Attribute) and node.attr == "getenv" and getattr(node.value, "id", "") == "os")})


def test_the_environment_reader_sees_reads():
    tree = ast.parse("import os\nA = os.environ.get('X')\nB = os.getenv('Y')\nC = os.environ['Z']\n"
                     "D = 'W' in os.environ\nos.environ.setdefault('V', '0')\nos.environ['U'] = '1'\nE = os.environ\n")
    assert _reads_environment(tree) == [2, 3, 4, 5, 8]


def test_the_environment_is_read_in_one_module_and_never_at_import():
    readers = {name for name, path in _modules().items() if _reads_environment(ast.parse(path.read_text()))}
    assert readers == {"vxl_fast.runtime"}
    tree = ast.parse(_modules()["vxl_fast.runtime"].read_text())
    at_import = [n for stmt in tree.body if not isinstance(stmt, (ast.FunctionDef, ast.ClassDef))
                 for n in _reads_environment(stmt)]
    assert at_import == []


def test_no_module_level_mutable_state_is_rebound():
    """No ``global`` statement anywhere: a module's state is not switched at run time (choices and
    caches live in the objects that own them: the runner, its KernelPolicy)."""
    found = [f"{name}:{node.lineno}" for name, path in _modules().items()
             for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Global)]
    assert found == []
