"""STYLE.md rule 15, read from the code: compose, name identities, one way to say a run stopped.

Each check parses the package (no import) and is shown able to fail on a snippet of its own.
"""

import ast
from pathlib import Path

from orchestrator.model import Kind

PACKAGE = Path(__file__).resolve().parent.parent / "orchestrator"
# Where a word that is also a kind's name means something else: rustic's own subcommands
# (rustic/commands.py builds its argv), the CLI's subcommand names (cli.py), and the folder
# of rustic's repository layout that holds its snapshot files (storage/repo_dirs.py).
OTHER_WORDS = {
    "rustic/commands.py",
    "cli.py",
    "storage/repo_dirs.py",
    "receipts/receipt_checks.py",
    "receipts/verify_receipts.py",
}  # the customer's standalone script (two files): no Kind there
# Bases a class of ours may have even though they are ours: the exception tree, a seam.
ALLOWED_ROOTS = {"Exception", "Protocol", "BaseModel", "BaseSettings"}


def sources() -> dict[str, ast.Module]:
    return {
        str(p.relative_to(PACKAGE)): ast.parse(p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))
    }


def _base_names(node: ast.ClassDef) -> list[str]:
    return [ast.unparse(base).split(".")[-1] for base in node.bases]


def inheritance_of_ours(trees: dict[str, ast.Module]) -> list[str]:
    """Return `Child(Parent)` for each class of ours that subclasses another class of ours,
    unless the parent is an exception, a Protocol or a pydantic model."""
    classes = {
        node.name: node for tree in trees.values() for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    }  # fmt: skip

    def allowed(name: str, seen: frozenset[str] = frozenset()) -> bool:
        if name in ALLOWED_ROOTS:
            return True
        node = classes.get(name)
        if node is None or name in seen:
            return False
        return any(allowed(base, seen | {name}) for base in _base_names(node))

    return [
        f"{node.name}({base})"
        for node in classes.values()
        for base in _base_names(node)
        if base in classes and not allowed(base)
    ]


def kind_literals(trees: dict[str, ast.Module]) -> list[str]:
    """Return `file:line 'kind'` for each string constant that spells a kind outside Kind."""
    words = {kind.value for kind in Kind}
    return [
        f"{name}:{node.lineno} {node.value!r}"
        for name, tree in trees.items()
        if name != "model.py" and name not in OTHER_WORDS
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in words
    ]


def outcome_checks(trees: dict[str, ast.Module]) -> list[str]:
    """Return each `isinstance(x, Outcome)`: a stopped run travels as RunStopped instead."""
    return [
        f"{name}:{node.lineno}"
        for name, tree in trees.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and ast.unparse(node.func) == "isinstance"
        and len(node.args) == 2
        and "Outcome" in ast.unparse(node.args[1])
    ]


def test_no_class_of_ours_inherits_from_another() -> None:
    trees = sources()
    assert len(trees) > 50
    assert not inheritance_of_ours(trees), inheritance_of_ours(trees)


def test_no_kind_is_spelled_outside_kind() -> None:
    assert not kind_literals(sources()), kind_literals(sources())


def test_no_run_is_judged_stopped_by_its_type() -> None:
    assert not outcome_checks(sources()), outcome_checks(sources())


def test_each_check_can_fail() -> None:
    snippet = ast.parse(
        "class Store:\n    pass\n"
        "class Ledger(Store):\n    pass\n"
        "class Seam(Protocol):\n    pass\n"
        "class Fake(Seam):\n    pass\n"
        "class Oops(UnstoppableError):\n    pass\n"
        "class UnstoppableError(Exception):\n    pass\n"
        "done = isinstance(x, Outcome)\n"
        "kind = 'prune'\n"
    )
    trees = {"x.py": snippet}
    assert inheritance_of_ours(trees) == ["Ledger(Store)"]
    assert kind_literals(trees) == ["x.py:14 'prune'"]
    assert outcome_checks(trees) == ["x.py:13"]
