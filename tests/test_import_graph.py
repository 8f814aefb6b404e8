"""No import cycles in kcnn: every `import` — at module level or inside a function — read from
the source with `ast`, and the module graph they make checked for cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import kcnn

ROOT = Path(kcnn.__file__).parent

# Cycles allowed to remain; each entry is one cycle's modules, sorted. None is.
KNOWN_CYCLES: list[tuple[str, ...]] = []


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def import_graph(type_checking: bool = False) -> dict[str, set[str]]:
    """module → the kcnn modules it imports anywhere in its source (TYPE_CHECKING blocks aside,
    unless `type_checking`)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(tree):
            if not type_checking and _type_checking_only(node, parents):
                continue
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # `from a import b` imports the module a.b when there is one, else a's name b
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []

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
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(tuple(sorted(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_cycle_finder_finds_a_function_level_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [("a", "b", "c")]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    # kcnn.models.forms imports kcnn.models.blocks at module level; layers imports keras-side
    # padding only inside Pool.to_keras — both must be edges
    assert "kcnn.models.blocks" in graph["kcnn.models.forms"]
    assert "kcnn.models.padding" in graph["kcnn.models.layers"]


def test_no_import_cycles_in_kcnn():
    assert cycles(import_graph()) == KNOWN_CYCLES


def test_no_import_cycles_even_under_type_checking():
    """A type named for a checker only is still a dependency: no cycle through one either
    (use/calibration.py names the loaded run it reads instead of importing use/predict.py)."""
    assert cycles(import_graph(type_checking=True)) == []


def test_layer_specs_never_import_keras_side_blocks():
    graph = import_graph()
    assert "kcnn.models.blocks" not in graph["kcnn.models.layers"]
    assert "kcnn.models.blocks" not in graph["kcnn.models.composites"]


# The packages in the order data flows through them: each may import only those before it.
LAYERS = (
    "kcnn.text",
    "kcnn.progress",
    "kcnn.errors",
    "kcnn.defaults",
    "kcnn.data",
    "kcnn.models",
    "kcnn.engine",
    "kcnn.runs",
    "kcnn.use",
    "kcnn.commands",
    "kcnn.cli",
)
# Upward imports still to remove; each entry is (importer, imported). None is the goal.
KNOWN_UPWARD: set[tuple[str, str]] = set()


def _layer(module: str) -> int:
    return next(i for i, p in enumerate(LAYERS) if module == p or module.startswith(p + "."))


def test_no_package_imports_one_above_it():
    graph = import_graph()
    upward = {
        (m, t)
        for m, targets in graph.items()
        if m != "kcnn"
        for t in targets
        if t != "kcnn" and _layer(t) > _layer(m)
    }
    assert upward == KNOWN_UPWARD
