"""The package's layout is its architecture: imports only go downward, and no import cycle.

The import graph is read from the source (``ast``), with every import, also those inside
functions, so a function-level import cannot hide a cycle.  docs/architecture.rst explains the
layers.
"""
import ast
import os

import pytest

import astronn_gaiacal

PACKAGE = "astronn_gaiacal"
ROOT = os.path.dirname(astronn_gaiacal.__file__)

#: Layer of each top-level module or subpackage; a module may import its own layer or lower ones.
LAYERS = {
    "constants": 0, "_versions": 0, "_compat": 0, "conversions": 0, "registry": 0, "config": 0,
    "io": 1, "sources": 1, "metrics": 1,
    "nn": 2, "zeropoint": 2,
    "models": 3,
    "pipeline": 4, "summaries": 4, "distributed": 4, "simulate": 4, "plots": 4,
    "studies": 5,
    "cli": 6, "__main__": 6,
}
#: The package's own __init__ (re-exports and registration) sits above the library.
TOP = 7

#: Modules allowed over MAX_MODULE_LINES, with the reason.
LONG_MODULES = {}
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 500


def _modules():
    out = {}
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                out[".".join([PACKAGE, *rel])] = path
    return out


MODULES = _modules()


def _is_package(module):
    return MODULES[module].endswith("__init__.py")


def _imports(module):
    """Package modules that ``module`` imports: {target: line}."""
    with open(MODULES[module]) as f:
        tree = ast.parse(f.read())
    base = module if _is_package(module) else module.rsplit(".", 1)[0]
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                source = ".".join(parts + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # `import a.b.c` names a.b.c; attributes fall back
                target = target.rpartition(".")[0]
            if target.startswith(PACKAGE) and target != module:
                found.setdefault(target, node.lineno)
    return found


GRAPH = {m: _imports(m) for m in MODULES}


def _layer(module):
    if module == PACKAGE:
        return TOP
    return LAYERS[module.split(".")[1]]


def test_every_module_has_a_layer():
    unknown = sorted({m.split(".")[1] for m in MODULES if m != PACKAGE} - set(LAYERS))
    assert not unknown, f"add {unknown} to LAYERS (and to docs/architecture.rst)"


def test_imports_only_go_downward():
    upward = [f"{m} -> {t} (line {line})" for m in MODULES for t, line in GRAPH[m].items()
              if _layer(t) > _layer(m)]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_the_library_never_imports_studies_or_cli():
    library = [m for m in MODULES if _layer(m) < LAYERS["studies"]]
    bad = [f"{m} -> {t}" for m in library for t in GRAPH[m] if t.split(".")[1] in ("studies", "cli")]
    assert not bad


def test_no_import_cycle():
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in GRAPH[m]:
            if state.get(t) == "open":
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(MODULES):
        if m not in state:
            visit(m)
    # a package importing its own submodules, which import their siblings by name, is not a loop
    # unless a submodule imports the package __init__ back
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_graph_reader_sees_real_edges():
    """The checks above read real edges: the models import nn, the CLI the pipeline."""
    assert f"{PACKAGE}.nn.layers" in GRAPH[f"{PACKAGE}.models.base"] or any(
        t.startswith(f"{PACKAGE}.nn") for t in GRAPH[f"{PACKAGE}.models.base"])
    assert any(t.startswith(f"{PACKAGE}.io") for t in GRAPH[f"{PACKAGE}.pipeline"])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_and_class_sizes(module):
    with open(MODULES[module]) as f:
        source = f.read()
    n_lines = source.count("\n") + 1
    if module not in LONG_MODULES:
        assert n_lines <= MAX_MODULE_LINES, f"{module}: {n_lines} lines; split it (docs/architecture.rst)"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            size = node.end_lineno - node.lineno + 1
            assert size <= MAX_CLASS_LINES, f"{module}.{node.name}: {size} lines"


def test_curated_public_api_resolves_to_the_defining_modules():
    import importlib

    for name in astronn_gaiacal.__all__:
        value = getattr(astronn_gaiacal, name)
        if name in astronn_gaiacal._EXPORTS:
            module = importlib.import_module(f"{PACKAGE}.{astronn_gaiacal._EXPORTS[name]}")
            assert getattr(module, name) is value
    assert "studies" not in " ".join(astronn_gaiacal._EXPORTS.values())
    with pytest.raises(AttributeError):
        astronn_gaiacal.no_such_name


def test_every_library_module_is_in_the_api_reference():
    """docs/api.rst lists each module (the command line as one entry; private modules left out)."""
    with open(os.path.join(os.path.dirname(ROOT), "docs", "api.rst")) as f:
        listed = {line.strip() for line in f if line.strip().startswith(PACKAGE)}
    expected = {m for m in MODULES if not any(p.startswith("_") for p in m.split(".")[1:])
                and m.split(".")[1:2] != ["cli"] and os.path.getsize(MODULES[m]) > 0}
    assert sorted(expected - listed) == []
