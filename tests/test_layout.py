"""The package's shape: one-way imports (no cycle, counting every import) and a small root."""

from __future__ import annotations

import ast
import asyncio
import re
from pathlib import Path

import tornado_memory_exporter
from tornado_memory_exporter import Config, install

PACKAGE = Path(tornado_memory_exporter.__file__).parent
NAME = "tornado_memory_exporter"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every package module ``name`` imports: module level, in functions, under TYPE_CHECKING."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in known:
                    found.add(sub)
                elif target in known:
                    found.add(target)
    found.discard(name)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_import_graph_has_no_cycle():
    found = modules()
    graph = {name: imports(name, path, set(found)) for name, path in found.items()}
    assert graph[f"{NAME}.install"], "the checker must see install's imports"
    assert find_cycle(graph) is None


def test_at_most_ten_modules_at_the_package_root():
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= 10, root


def test_every_folder_is_a_package_with_a_docstring():
    for folder in (p for p in PACKAGE.rglob("*") if p.is_dir() and p.name != "__pycache__"):
        if folder.name == "static":
            continue
        init = folder / "__init__.py"
        assert init.exists(), folder
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init} says what lives there"


ROOT = PACKAGE.parents[1]


def test_the_readme_points_to_the_design_page_and_nowhere_outside_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert "(docs/design.md)" in readme
    assert "../" not in readme
    for target in re.findall(r"\]\(([^)#]+)", readme):
        assert target.startswith(("http://", "https://")) or (ROOT / target).exists(), target


def test_every_served_metric_is_in_the_catalogue():
    from prometheus_client import CollectorRegistry, generate_latest

    catalogue = (ROOT / "docs" / "design.md").read_text()
    documented = set(re.findall(r"`<ns>_([a-z0-9_]+)`", catalogue))

    async def scrape() -> str:
        registry = CollectorRegistry()
        exporter = install(None, None, config=Config(census_interval=0), registry=registry)
        try:
            await exporter.census_now()
            exporter.watch("sessions", {"a": 1})
            await exporter.census_now()
            return generate_latest(registry).decode()
        finally:
            exporter.stop()

    served = set(re.findall(r"^# TYPE tornado_(\S+) ", asyncio.run(scrape()), re.MULTILINE))
    assert len(served) > 30
    assert served - documented == set()
