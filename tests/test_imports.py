"""No import cycle anywhere in the package: every module's imports, deferred ones inside
functions included, read from its source and searched for strongly connected components."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the installed package's directories (pyproject.toml's package-dir)
PACKAGES = {"zotrain": ROOT / "zotrain", "zotrain.kernels": ROOT / "kernels",
            "zotrain.pinn": ROOT / "pinn"}


def modules(packages):
    """``{dotted name: path}`` of every module below ``packages``."""
    out = {}
    for pkg, d in packages.items():
        for f in d.rglob("*.py"):
            parts = [p for p in f.relative_to(d).with_suffix("").parts if p != "__init__"]
            out[".".join([pkg] + parts)] = f
    return out


def imports(name, path, known):
    """The package's modules that module ``name`` imports (``from pkg import submodule``
    is an edge to the submodule, not to the package's ``__init__``)."""
    base = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                parts = base.split(".")
                mod = ".".join(parts[:len(parts) - node.level + 1] + ([mod] if mod else []))
            subs = {f"{mod}.{a.name}" for a in node.names} & set(known)
            found |= subs or {mod}
    edges = set()
    for m in found:
        while m and m not in known:
            m = m.rpartition(".")[0]
        if m and m != name:
            edges.add(m)
    return edges


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
                on.discard(comp[-1])
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def graph_of(packages):
    known = modules(packages)
    return {name: imports(name, path, known) for name, path in known.items()}


def test_the_package_has_no_import_cycle():
    graph = graph_of(PACKAGES)
    assert len(graph) >= 60 and graph["zotrain.cli"]  # it read the package
    assert cycles(graph) == []


def test_the_check_finds_a_cycle_through_a_deferred_import(tmp_path):
    pkg = tmp_path / "p"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from p.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import a\n")
    (pkg / "c.py").write_text("from p import a\n")
    assert cycles(graph_of({"p": pkg})) == [["p.a", "p.sub.b"]]
