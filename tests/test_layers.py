"""The package's imports point down only (DESIGN 2): no module imports one that imports it, directly or through
others, counting imports inside functions too; the bottom layers import nothing above them."""
import ast
from pathlib import Path

import lreid_core

ROOT = Path(lreid_core.__file__).parent


def modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = ("lreid_core",) + path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file (``from .x import y`` counts x.y when that is
    a module, else x)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            module = node.module if not node.level else (f"{base}.{node.module}" if node.module else base)
            for alias in node.names:
                target = f"{module}.{alias.name}"
                found.add(target if target in known else module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(root: str) -> None:
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(g[child]))))
                elif child in on:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_in_the_package():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_bottom_layers_import_nothing_above_them():
    g = graph()
    assert g["lreid_core.errors"] == set() and g["lreid_core.catalog"] == set()
    assert g["lreid_core.io"] <= {"lreid_core.errors"}
    assert g["lreid_core.recipes"] <= {"lreid_core.errors", "lreid_core.io"}
    assert g["lreid_core.config"] <= {"lreid_core.errors", "lreid_core.io", "lreid_core.catalog", "lreid_core.recipes"}


def test_catalog_names_match_what_owns_them():
    """The names config validates against are exactly what the registry and the generator hold."""
    from lreid_core.catalog import METHODS, SYNTH_VARIANTS
    from lreid_core.data.synthetic import STYLE_VARIANTS
    from lreid_core.errors import LReIDError
    from lreid_core.methods import list_methods, register

    assert tuple(list_methods()) == METHODS and tuple(STYLE_VARIANTS) == SYNTH_VARIANTS
    try:
        register("not_in_the_catalog")
    except LReIDError as exc:
        assert "catalog.METHODS" in str(exc)
    else:
        raise AssertionError("an uncatalogued method registered")
