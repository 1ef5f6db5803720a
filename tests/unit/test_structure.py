"""The shape issue 12 set, kept: no import cycles, no upward imports, small facades and classes."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTROLLER = ROOT / "controller"
MAX_CLASS_LINES = 250
MAX_FACADE_LINES = 200


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(body: list[ast.stmt], known: set[str]) -> set[str]:
    """Modules imported when this module loads (not in functions, not under TYPE_CHECKING)."""
    found: set[str] = set()
    for node in body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names} & known
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= ({node.module} | {f"{node.module}.{a.name}" for a in node.names}) & known
        elif isinstance(node, (ast.If, ast.Try)):
            for block in (node.body, node.orelse, getattr(node, "finalbody", [])):
                found |= _imports(block, known)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in CONTROLLER.rglob("*.py")}
    known = set(files)
    return {m: _imports(ast.parse(p.read_text()).body, known) - {m} for m, p in files.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles_in_the_controller() -> None:
    assert _cycle(_graph()) is None


def test_the_cycle_check_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_lower_layers_never_import_upper_ones() -> None:
    upper = ("controller.backends", "controller.manager", "controller.api", "controller.runtime")
    graph = _graph()
    upward = [
        (m, d)
        for m, deps in graph.items()
        if m.startswith(("controller.k8s", "controller.stores", "controller.kernel"))
        for d in deps
        if d.startswith(upper)
    ]
    assert upward == []


def test_the_kubernetes_facade_and_every_class_stay_small() -> None:
    assert len((CONTROLLER / "backends" / "kubernetes.py").read_text().splitlines()) <= MAX_FACADE_LINES
    big = [
        f"{path.relative_to(ROOT)}:{node.name} ({(node.end_lineno or 0) - node.lineno + 1} lines)"
        for path in CONTROLLER.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef) and (node.end_lineno or 0) - node.lineno + 1 > MAX_CLASS_LINES
    ]
    assert big == []


def test_the_kubernetes_client_loads_only_with_the_kubernetes_backend() -> None:
    """kubernetes_asyncio costs about 60 MB of RSS and seconds of import: a controller on the
    local backend (threadbox dev) must not pay for it (sts.py once pulled it in through k8s/api.py)."""
    probe = "import sys, controller.runtime, controller.api, controller.cli; print('kubernetes_asyncio' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "False"
