"""The package tree is the architecture: imports point down, and no module grows past 300 lines."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "orchestrator"
MAX_LINES = 300

# From the top down. A module may import from its own entry or any entry below it, never above:
# `config` must not know about runs, `runtime` must not know about customers' sources.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli",),
    ("commands",),
    ("daemon",),
    ("status",),
    ("dispatch", "roster", "ticks"),
    ("recorder",),
    ("receipts",),
    ("adoption",),
    ("maintenance",),
    ("drill",),
    ("browse", "to_source"),
    ("archive", "repository", "recovery", "rebuild"),
    ("runs",),
    ("launcher",),
    ("preparation",),
    ("judgement",),
    ("planner",),
    ("reporting",),
    ("sources",),
    ("rustic",),
    ("runtime",),
    ("storage",),
    ("secrets",),
    ("config",),
    ("schedule",),
    ("model", "errors", "deadline", "__init__"),
)


def unit_of(module: str) -> str:
    """Return the layer unit of a dotted module inside the package: its first component."""
    if module == "orchestrator":
        return "__init__"
    return module.removeprefix("orchestrator.").split(".")[0]


def rank(unit: str) -> int:
    for index, units in enumerate(LAYERS):
        if unit in units:
            return index
    raise AssertionError(f"orchestrator/{unit} is in no layer of tests/test_architecture.py")


def _dotted(path: Path) -> str:
    return "orchestrator." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Return (line, module) of every `orchestrator` import in `path`, lazy ones included.

    A relative import is resolved against the module's own package.
    """
    return _imports_in(path, path.read_text())


def _imports_in(path: Path, text: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            package = _dotted(path).split(".")[: -node.level]
            base = ".".join([*package, *([node.module] if node.module else [])])
            if node.module:
                found.append((node.lineno, base))
            else:
                found += [(node.lineno, f"{base}.{a.name}") for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "orchestrator":
                found += [(node.lineno, _submodule(a.name)) for a in node.names]
            elif node.module.startswith("orchestrator."):
                found += [(node.lineno, _from(node.module, a.name)) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name) for a in node.names if a.name.startswith("orchestrator")
            ]
    return found


def _from(module: str, name: str) -> str:
    """Return what `from module import name` loads: the submodule `name`, or `module`."""
    folder = PACKAGE.joinpath(*module.split(".")[1:])
    return f"{module}.{name}" if (folder / f"{name}.py").exists() else module


def _submodule(name: str) -> str:
    """Return the module `from orchestrator import name` imports: a submodule, or the package."""
    is_module = (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").exists()
    return f"orchestrator.{name}" if is_module else "orchestrator"


def test_every_module_is_in_a_layer() -> None:
    units = {unit_of(_dotted(p)) for p in modules()}
    assert units, "no module found: the check would pass vacuously"
    for unit in units:
        rank(unit)


def test_imports_point_down() -> None:
    upward = []
    checked = 0
    for path in modules():
        own = rank(unit_of(_dotted(path)))
        for line, module in imports_of(path):
            checked += 1
            if rank(unit_of(module)) < own:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    assert checked > 50, "too few imports seen: the parser misses them"
    assert not upward, "imports pointing up a layer:\n" + "\n".join(upward)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_over_300_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines: split it by the nouns it holds"


def test_the_checker_sees_an_upward_import() -> None:
    """The direction check must be able to fail: a config module importing runs is caught."""
    bad = PACKAGE / "config" / "zz_not_a_module.py"  # never written: parsed from text below
    text = (
        "from orchestrator.runs import Jobs\nimport orchestrator.daemon\nfrom ..runs import Jobs\n"
    )
    found = _imports_in(bad, text)
    assert found == [
        (1, "orchestrator.runs"),
        (2, "orchestrator.daemon"),
        (3, "orchestrator.runs"),
    ]
    assert all(rank(unit_of(module)) < rank("config") for _, module in found)


# The pure core (STYLE.md rule 1) imports nothing with effects: no runtime, no ledger, no I/O.
# Every module the pure ones reach, however far down, is pure too (dotted, below
# `orchestrator.`): the closure of each may hold nothing outside this set.
PURE = {
    "planner",
    "schedule",
    "model",
    "errors",
    "drill",
    "rustic.commands",
    "rustic.output",
    "rustic.listing",
    "rustic.findings",
    "runtime.spec",
    "runtime.protocol",
    "runtime.paths",
    "runtime.exit_codes",
    "storage.repo_dirs",
}
# Libraries that talk to the network or a store, or read settings from the environment:
# loading any of them is an effect the pure core must not have.
EFFECTFUL = (
    "minio",
    "urllib3",
    "requests",
    "docker",
    "pydantic_settings",
    "pydantic",
    "sqlite3",
    "cryptography",
    "prometheus_client",
    "http.client",
    "ssl",
)


def graph() -> dict[str, set[str]]:
    """Return each module's `orchestrator` imports (dotted, below `orchestrator.`).

    Lazy imports count (they load when called); those under `if TYPE_CHECKING:` do not.
    """
    edges: dict[str, set[str]] = {}
    for path in modules():
        name = _dotted(path).removeprefix("orchestrator.")
        edges[name] = {_unit(m) for _, m in _run_time_imports(path, path.read_text())}
    return edges


def _unit(module: str) -> str:
    """Return the graph's name of an imported module: a package is its `__init__`."""
    name = module.removeprefix("orchestrator").removeprefix(".") or "__init__"
    return f"{name}.__init__" if PACKAGE.joinpath(*name.split(".")).is_dir() else name


def _run_time_imports(path: Path, text: str) -> list[tuple[int, str]]:
    tree = ast.parse(text)
    typing_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only |= {n.lineno for child in node.body for n in ast.walk(child)}
    return [(line, m) for line, m in _imports_in(path, text) if line not in typing_only]


def closure(edges: dict[str, set[str]], start: str) -> dict[str, str]:
    """Return every module `start` reaches, each with the module that imports it."""
    seen: dict[str, str] = {}
    todo = [start]
    while todo:
        here = todo.pop()
        for there in edges.get(here, set()):
            if there not in seen and there != start:
                seen[there] = here
                todo.append(there)
    return seen


def impure_reach(edges: dict[str, set[str]], pure: set[str]) -> list[str]:
    """Return `a -> b` for each pure module that reaches a module outside `pure`."""
    found = []
    for name in sorted(pure):
        for reached, via in sorted(closure(edges, name).items()):
            if reached not in pure:
                found.append(f"{name} reaches {reached} (imported by {via})")
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Return the import cycles among modules (each as the modules on it)."""
    found, state = [], {}
    for start in sorted(edges):
        stack = [(start, iter(sorted(edges[start])))]
        path = [start]
        if state.get(start):
            continue
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                found.append([*path[path.index(child) :], child])
            elif child in edges and not state.get(child):
                state[child] = 1
                stack.append((child, iter(sorted(edges[child]))))
                path.append(child)
    return found


def test_the_pure_core_reaches_only_pure_modules() -> None:
    edges = graph()
    assert all(name in edges for name in PURE), sorted(PURE - edges.keys())
    assert not impure_reach(edges, PURE), "\n".join(impure_reach(edges, PURE))


def test_no_module_imports_itself_back() -> None:
    """Inside a package as across them: no cycle, so every module reads top to bottom."""
    edges = graph()
    assert sum(map(len, edges.values())) > 100, "too few imports seen: the parser misses them"
    assert not cycles(edges), cycles(edges)


def test_the_checks_see_a_leak_and_a_cycle() -> None:
    """Both checks must be able to fail: an indirect leak, and a cycle of three."""
    leaky = {"planner": {"schedule"}, "schedule": {"storage.layout"}, "storage.layout": set()}
    assert impure_reach(leaky, {"planner", "schedule"}) == [
        "planner reaches storage.layout (imported by schedule)",
        "schedule reaches storage.layout (imported by schedule)",
    ]
    looped = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(looped) == [["a", "b", "c", "a"]]
    typed = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import orchestrator.daemon\n"
    assert _run_time_imports(PACKAGE / "model.py", typed) == []


@pytest.mark.parametrize("name", sorted(PURE))
def test_a_pure_module_loads_no_effectful_library(name: str) -> None:
    """What the interpreter really loads, third-party imports included."""
    probe = (
        f"import sys, orchestrator.{name}\n"
        f"print(' '.join(m for m in {EFFECTFUL!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=PACKAGE.parent
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [], f"{name} loads {done.stdout.strip()}"


def test_no_module_imports_by_name_at_run_time() -> None:
    """`importlib` or `__import__` would pass the direction check unseen."""
    dynamic = [
        str(path.relative_to(PACKAGE))
        for path in modules()
        if "importlib" in path.read_text() or "__import__(" in path.read_text()
    ]
    assert not dynamic
