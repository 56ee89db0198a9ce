"""The house stays in order: one-way imports, no circles, small modules, strict types.

ARCHITECTURE.md draws the rooms; this test holds the code to that drawing. Every import counts:
module level, inside functions (a lazy import still ties two modules together) and under
``TYPE_CHECKING`` (a type-only circle is still a circle a reader has to untangle).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("router", "config", "adapters", "escalation", "rules")

# From the bottom up: a module may import its own room and the rooms below it, never above.
# router → config → adapters → escalation (engine → store → incidents → oncall) → rules
ROOMS = (
    "rules",
    "escalation.oncall",
    "escalation.incidents",
    "escalation.store",
    "escalation.engine",
    "adapters",
    "config",
    "router",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_modules() -> dict[str, Path]:
    """Every product module by dotted name."""
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            out[_module_name(path)] = path
    return out


def room_of(module: str) -> int:
    """Index of the room ``module`` lives in (the longest matching prefix wins)."""
    best = -1
    best_len = -1
    for i, room in enumerate(ROOMS):
        if (module == room or module.startswith(room + ".")) and len(room) > best_len:
            best, best_len = i, len(room)
    if best < 0:
        raise AssertionError(f"{module} lives in no room: add its package to ROOMS in {__file__}")
    return best


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The product module ``name`` refers to (a name inside a module resolves to the module)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> Iterator[tuple[int, str]]:
    """(line, imported product module) for every import statement anywhere in the file."""
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found = _resolve(alias.name, modules)
                if found is not None:
                    yield node.lineno, found
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                found = _resolve(f"{base}.{alias.name}", modules) or _resolve(base, modules)
                if found is not None:
                    yield node.lineno, found


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    """Module → imported modules, and every import that runs up the rooms."""
    modules = product_modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    upward: list[str] = []
    for module, path in modules.items():
        if module == "escalation":
            continue  # empty (see test_every_product_module_lives_in_a_room)
        for line, target in imports_of(module, path, modules):
            if target in (module, "escalation"):
                continue
            graph[module].add(target)
            if room_of(target) > room_of(module):
                rel = path.relative_to(ROOT)
                upward.append(
                    f"{rel}:{line}: {module} ({ROOMS[room_of(module)]}) imports {target} "
                    f"({ROOMS[room_of(target)]}), a room above it"
                )
    return graph, upward


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_every_product_module_lives_in_a_room() -> None:
    for module in product_modules():
        if module == "escalation":
            # The package that holds four rooms is no room of its own: it must stay empty.
            assert not (ROOT / "escalation" / "__init__.py").read_text().strip()
            continue
        room_of(module)


def test_imports_flow_one_way_between_rooms() -> None:
    _, upward = import_graph()
    assert not upward, "imports that run up the rooms:\n" + "\n".join(upward)


def test_no_import_circles() -> None:
    graph, _ = import_graph()
    found = circles(graph)
    assert not found, "import circles:\n" + "\n".join(" ↔ ".join(c) for c in found)


# -- the checker itself can fail --------------------------------------------------------------


def test_circle_finder_finds_a_circle_and_passes_a_chain() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


@pytest.mark.parametrize(
    ("module", "room"),
    [
        ("rules.matchers", "rules"),
        ("escalation.incidents.model", "escalation.incidents"),
        ("escalation.store.sqlite", "escalation.store"),
        ("adapters.email.sender", "adapters"),
        ("router.cli", "router"),
    ],
)
def test_room_of_takes_the_longest_prefix(module: str, room: str) -> None:
    assert ROOMS[room_of(module)] == room


def test_a_function_level_import_counts(tmp_path: Path) -> None:
    src = tmp_path / "mod.py"
    src.write_text("def f():\n    from rules.matrix import Matrix\n    return Matrix\n")
    modules = {"rules.matrix": ROOT / "rules" / "matrix.py", "escalation.x": src}
    assert list(imports_of("escalation.x", src, modules)) == [(2, "rules.matrix")]


# -- small rooms: no module over 600 lines, no function over 60 ------------------------------

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60


def oversized() -> list[str]:
    """Every product module and function over its size limit, as ``path:line: what``."""
    found: list[str] = []
    for path in product_modules().values():
        rel = path.relative_to(ROOT)
        source = path.read_text()
        lines = source.count("\n")
        if lines > MAX_MODULE_LINES:
            found.append(f"{rel}: {lines} lines (limit {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(source, str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(
                        f"{rel}:{node.lineno}: {node.name} is {length} lines "
                        f"(limit {MAX_FUNCTION_LINES})"
                    )
    return found


def test_no_module_or_function_over_its_size() -> None:
    found = oversized()
    assert not found, "split these:\n" + "\n".join(found)


def test_mypy_strict_is_clean() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", *PACKAGES],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
