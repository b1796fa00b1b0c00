"""The package's import graph runs one way: no cycle, counting the imports inside
functions, and the command line on top, imported by no module of the package.

The graph is read from the sources with :mod:`ast` (nothing is imported):
an edge ``a -> b`` for every ``import``/``from ... import`` of ``a`` that names
module ``b`` of the package, at any depth of ``a``'s code. ``from . import x``
names the submodule ``x`` when there is one, else the package itself.
"""
import ast
import tomllib
from pathlib import Path

import pytest

import fastnn

PACKAGE = Path(fastnn.__file__).resolve().parent
ROOT = Path(__file__).resolve().parents[1]


def module_names(root):
    """``{dotted name: path}`` of the package's modules (``.py``), and the names of
    its compiled ones (``.pyx``, path None)."""
    names = {}
    for path in sorted(root.rglob("*.pyx")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names[".".join(parts)] = None
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imported(module, path, names):
    """The package's modules that ``module`` (its source at ``path``) imports."""
    is_package = path.name == "__init__.py"
    top = module.split(".")[0]
    found = set()
    tree = ast.parse(path.read_text(), str(path))
    # the imports under ``if TYPE_CHECKING:`` run only under a type checker: not edges
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                   for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [f"{target}.{alias.name}" if f"{target}.{alias.name}" in names else target
                       for alias in node.names]
        else:
            continue
        for target in targets:
            # "import fastnn.sweep.grid" names fastnn.sweep.grid; an attribute is its module's
            while target and target not in names:
                target = target.rpartition(".")[0]
            if target.split(".")[0] == top and target != module:
                found.add(target)
    return found


def import_graph(root=PACKAGE):
    names = module_names(root)
    return {m: imported(m, p, names) for m, p in names.items() if p is not None}


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan), and the
    modules that import themselves."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "fastnn.model" in graph["fastnn"]  # the walk sees the package,
    assert "fastnn.sklearn" in graph["fastnn"]  # the imports inside functions (__getattr__)
    assert "fastnn.experiment" in graph["fastnn.sweep.trial"]  # and the subpackages
    assert cycles(graph) == []


def test_nothing_in_the_package_imports_the_command_line():
    graph = import_graph()
    importers = sorted(m for m, targets in graph.items() if "fastnn.cli" in targets)
    assert importers == []


def test_experiments_sit_below_sweeps_and_studies():
    graph = import_graph()
    for module in ("fastnn.experiment", "fastnn.model", "fastnn.inference", "fastnn.training",
                   "fastnn.training.options", "fastnn.training.loop", "fastnn.reference",
                   "fastnn.sklearn", "fastnn.threads", "fastnn._validation", "fastnn.datasets"):
        reach, todo = set(), [module]
        while todo:
            for target in graph.get(todo.pop(), ()):
                if target not in reach:
                    reach.add(target)
                    todo.append(target)
        assert not reach & {"fastnn.cli", "fastnn.sweep", "fastnn.study"}, module


def test_every_subpackage_is_installed():
    """pyproject.toml lists the packages one by one: a subpackage left out of the list
    is missing from a wheel (an editable install, which reads src/, would not show it)."""
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = {".".join(init.parent.relative_to(ROOT / "src").parts)
             for init in (ROOT / "src").rglob("__init__.py")}
    assert sorted(listed) == sorted(found)


@pytest.mark.parametrize("source, expected", [
    ("from . import b\n", [["pkg.a", "pkg.b"]]),
    ("def f():\n    from .b import g\n", [["pkg.a", "pkg.b"]]),
    ("import pkg.b\n", [["pkg.a", "pkg.b"]]),
    ("import os\nfrom .c import x\n", []),
])
def test_the_walk_finds_a_cycle(tmp_path, source, expected):
    """The checker itself: ``pkg.b`` imports ``pkg.a`` inside a function; ``pkg.a``
    imports ``pkg.b`` in the ways above (a cycle) or not at all."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text(source)
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    (pkg / "c.py").write_text("x = 1\n")
    assert cycles(import_graph(pkg)) == expected


# -- sizes: modules split by concern stay readable -------------------------------

MAX_MODULE_LINES = 500
MAX_FUNCTION_CODE_LINES = 80


def code_lines(source):
    """The numbers of the lines of ``source`` that hold code: not blank, not only a
    comment, not part of a docstring (of the module, a class or a function)."""
    import io
    import tokenize
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
            tokenize.DEDENT, tokenize.ENCODING, tokenize.ENDMARKER}
    lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in skip:
            lines.update(range(tok.start[0], tok.end[0] + 1))
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                lines.difference_update(range(body[0].lineno, body[0].end_lineno + 1))
    return lines


def function_sizes(source):
    """``{qualified name: lines of code in its body}`` of the public functions and
    methods of ``source`` (a name that does not start with ``_``)."""
    code = code_lines(source)
    sizes = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                if not child.name.startswith("_"):
                    first = child.body[0].lineno
                    sizes[name] = len([n for n in code if first <= n <= child.end_lineno])
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)
    visit(ast.parse(source), "")
    return sizes


def test_modules_and_public_functions_are_small():
    """No module of the package over 500 lines, no public function over 80 lines of
    code (docstrings, comments and blank lines not counted)."""
    long_modules, long_functions = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        name = path.relative_to(PACKAGE.parent).as_posix()
        if len(source.splitlines()) > MAX_MODULE_LINES:
            long_modules.append((name, len(source.splitlines())))
        long_functions += [(f"{name}:{fn}", n) for fn, n in function_sizes(source).items()
                           if n > MAX_FUNCTION_CODE_LINES]
    assert long_modules == [] and long_functions == []


def test_the_size_count_reads_code_only():
    source = ('"""Module docstring."""\n'
              "def f(x):\n"
              '    """Docstring\n    of two lines."""\n'
              "    # a comment\n"
              "\n"
              "    y = (x +\n"
              "         1)\n"
              "    return y\n"
              "class C:\n"
              "    def g(self):\n"
              "        return 1\n"
              "    def _h(self):\n"
              "        return 2\n")
    assert function_sizes(source) == {"f": 3, "C.g": 1}
