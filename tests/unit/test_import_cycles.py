"""No import cycle in the package (issue 12): the sans-IO core does not reach back into the
daemon, and the edge modules do not import one another in a circle.

Every import counts: module level, inside functions (a lazy import hides a cycle, it does not
remove it) and under `TYPE_CHECKING` (a cycle of types is a cycle of design all the same)."""

from __future__ import annotations

import ast
from pathlib import Path

import pcscf_alg

PACKAGE = Path(pcscf_alg.__file__).parent


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (a `from pkg import name` names the submodule
    `pkg.name` when there is one, else `pkg`)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    deps.add(sub if sub in mods else target)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_graph_sees_lazy_and_type_only_imports() -> None:
    graph = import_graph()
    # app imports the admin endpoint inside a function, admin names calls.Call for types only
    assert "pcscf_alg.admin" in graph["pcscf_alg.app"]
    assert "pcscf_alg.dialogs" in graph["pcscf_alg.admin"]


def test_no_import_cycle_in_the_package() -> None:
    found = cycles(import_graph())
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_call_layer_is_sans_io() -> None:
    """calls.py imports no asyncio, sockets or gateway implementation, nor the proxy core."""
    graph = import_graph()
    text = (PACKAGE / "calls.py").read_text()
    tree = ast.parse(text)
    stdlib = {
        a.name.partition(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for a in node.names
    } | {
        (node.module or "").partition(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and not node.level
    }
    assert not stdlib & {"asyncio", "socket", "selectors", "time", "threading"}
    forbidden = {"pcscf_alg.alg", "pcscf_alg.app", "pcscf_alg.agw.gateway", "pcscf_alg.agw.driver"}
    assert not graph["pcscf_alg.calls"] & forbidden
