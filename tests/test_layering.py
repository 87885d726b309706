"""The import structure holds its layers (docs/ARCHITECTURE.md, "Layers"):

- no import cycle among the app modules, counting imports inside functions too (a
  deferred import hides a cycle from Python, not from a reader);
- the gateways import nothing of ours above them;
- models import no services, and services import no views, consumers, webhooks or tasks
  (they enqueue tasks by name).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("accounts", "polls", "pollstr", "tasks", "two_factor")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _app_modules() -> dict[str, Path]:
    modules = {}
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" not in path.parts:
                modules[_module_name(path)] = path
    return modules


MODULES = _app_modules()


def _imported(module: str, path: Path) -> Iterator[str]:
    """Every app module `module` imports, wherever in the file the import stands."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)] if node.level > 1 else anchor
                base = ".".join([*anchor, base] if base else anchor)
            # `from package import module` names a module; `from module import name` not.
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            # A module's own parent packages are imported with it: not an edge of ours.
            if name and name != module and not module.startswith(f"{name}."):
                yield name


GRAPH = {module: sorted(set(_imported(module, path))) for module, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH.get(node, []):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def _in(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(f"{p}.") for p in prefixes)


def test_the_graph_sees_the_imports_it_should():
    assert "two_factor.models" in GRAPH["two_factor.services.transitions"]
    assert "two_factor.services" in GRAPH["tasks.verification"]


def test_no_import_cycle_among_app_modules():
    cycles = _cycles()
    assert not cycles, "import cycles: " + "; ".join(" ↔ ".join(c) for c in cycles)


@pytest.mark.parametrize(
    "module", sorted(m for m in GRAPH if _in(m, "two_factor.gateways")), ids=str
)
def test_gateways_import_nothing_above_them(module):
    above = [t for t in GRAPH[module] if not _in(t, "two_factor.gateways")]
    assert not above, f"{module} imports {above}"


@pytest.mark.parametrize("module", ["two_factor.models", "polls.models"])
def test_models_import_no_services_views_or_tasks(module):
    upward = [
        t
        for t in GRAPH[module]
        if _in(t, "two_factor.services", "polls.services", "tasks")
        or t.endswith((".views", ".consumers", ".webhooks", ".callbacks"))
    ]
    assert not upward, f"{module} imports {upward}"


@pytest.mark.parametrize(
    "module",
    sorted(m for m in GRAPH if _in(m, "two_factor.services", "polls.services")),
    ids=str,
)
def test_services_import_no_views_consumers_webhooks_or_tasks(module):
    upward = [
        t
        for t in GRAPH[module]
        if _in(t, "tasks") or t.endswith((".views", ".consumers", ".webhooks", ".middleware"))
    ]
    assert not upward, f"{module} imports {upward}"
