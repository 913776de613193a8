"""The client's modules import each other in one direction: no import circles."""

from __future__ import annotations

import ast
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "client"


def client_imports(path: Path) -> set[str]:
    """The `client.*` modules a module imports, at run time or for type checking alike."""
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("client."):
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names if a.name.startswith("client."))
    return imported


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of the graph, as the modules along it, or None."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> list[str] | None:
        if module in visiting:
            return [*visiting[visiting.index(module) :], module]
        if module in done:
            return None
        visiting.append(module)
        for imported in sorted(graph.get(module, set())):
            circle = visit(imported)
            if circle is not None:
                return circle
        visiting.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        circle = visit(module)
        if circle is not None:
            return circle
    return None


def test_the_circle_finder_finds_a_circle():
    # GIVEN a graph where a imports b and b imports a / THEN it is found
    assert find_circle({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == ["a", "b", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None


def module_name(path: Path) -> str:
    parts = path.relative_to(CLIENT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def with_packages(module: str, imported: set[str]) -> set[str]:
    """What importing `imported` runs: also each package's `__init__` on the way,
    unless `module` is inside that package (then it has run already)."""
    runs = set(imported)
    for name in imported:
        parts = name.split(".")
        for end in range(2, len(parts)):
            package = ".".join(parts[:end])
            if not module.startswith(package + ".") and module != package:
                runs.add(package)
    return runs


def test_no_client_module_is_part_of_an_import_circle():
    # GIVEN every module of the Python client (its subpackages too, their
    # `__init__` run by importing any of their modules), with what it imports
    graph = {
        module_name(path): with_packages(module_name(path), client_imports(path))
        for path in CLIENT.rglob("*.py")
        if module_name(path) != "client"
    }
    assert "client.errors" in graph and "client.conversation.machine" in graph
    # THEN following the imports never leads back to where it started
    assert find_circle(graph) is None
