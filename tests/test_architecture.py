"""The package tree is the architecture: imports point down, and no module grows past 300 lines."""

import ast
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
    ("dispatch", "roster", "ticks"),
    ("recorder",),
    ("adoption",),
    ("maintenance",),
    ("drill",),
    ("repository", "recovery"),
    ("runs",),
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
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name) for a in node.names if a.name.startswith("orchestrator")
            ]
    return found


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
# Each pure module, and the modules it may import (dotted, below `orchestrator.`).
PURE = {
    "planner": {"schedule", "model", "errors"},
    "schedule": set(),
    "model": set(),
    "rustic/commands": {"model", "runtime.paths"},
    "rustic/output": {"model"},
    "rustic/listing": set(),
    "runtime/paths": set(),
}


def test_the_pure_core_imports_only_pure_modules() -> None:
    for name, allowed in PURE.items():
        imported = {
            module.removeprefix("orchestrator.") for _, module in imports_of(PACKAGE / f"{name}.py")
        }
        assert imported <= allowed, f"{name}.py imports {sorted(imported - allowed)}"


def test_no_module_imports_by_name_at_run_time() -> None:
    """`importlib` or `__import__` would pass the direction check unseen."""
    dynamic = [
        str(path.relative_to(PACKAGE))
        for path in modules()
        if "importlib" in path.read_text() or "__import__(" in path.read_text()
    ]
    assert not dynamic
