"""The package's import structure: every module imports on its own in a fresh interpreter, no
two modules import each other (directly or through others), and no function imports a
s4dm_jax module (the way import cycles are dodged)."""

import ast
import os
import pkgutil
import subprocess
import sys

import s4dm_jax
from s4dm_jax import configs

PACKAGE_DIR = os.path.dirname(os.path.abspath(s4dm_jax.__file__))


def package_modules() -> dict[str, str]:
    """{module name: file path} of every module of s4dm_jax (configs included)."""
    modules = {"s4dm_jax": s4dm_jax.__file__, "s4dm_jax.configs": configs.__file__}
    # configs/ is installed as s4dm_jax.configs from outside the package folder: walk it too
    for path, prefix in ((s4dm_jax.__path__, "s4dm_jax."), (configs.__path__, "s4dm_jax.configs.")):
        for info in pkgutil.walk_packages(path, prefix):
            modules[info.name] = info.module_finder.find_spec(info.name, None).origin
    return modules


def imported_modules(name: str, tree: ast.Module, known: set[str]) -> tuple[set[str], list]:
    """(s4dm_jax modules `name` imports at module level, function-level s4dm_jax imports as
    (line, text)). `from package import module` counts as importing that module."""
    package = name if name in known and _is_package(name) else name.rpartition(".")[0]
    top, nested = set(), []

    def targets(node) -> set[str]:
        if isinstance(node, ast.Import):
            return {a.name for a in node.names}
        base = node.module or ""
        if node.level:
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                            + ([base] if base else []))
        return {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                mods = {m for m in targets(child) if m.split(".")[0] == "s4dm_jax"}
                if in_function and mods:
                    nested.append((child.lineno, ast.unparse(child)))
                elif not in_function:
                    top.update(m for m in mods if m in known)
            visit(child, in_function or isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    visit(tree, False)
    return top, nested


def _is_package(name: str) -> bool:
    return package_modules()[name].endswith("__init__.py")


def test_every_module_imports_alone_in_a_fresh_interpreter():
    """In one fresh interpreter, each module is imported with no s4dm_jax module loaded before
    it (sys.modules cleared of them each time; third-party libraries stay loaded)."""
    script = (
        "import importlib, sys, traceback\n"
        "failures = []\n"
        "for name in sys.argv[1:]:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] == 's4dm_jax']:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failures.append(name + ': ' + traceback.format_exc().splitlines()[-1])\n"
        "print('\\n'.join(failures))\n"
        "sys.exit(1 if failures else 0)\n")
    done = subprocess.run([sys.executable, "-c", script, *sorted(package_modules())],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]


def test_no_import_cycles_and_no_function_level_package_imports():
    modules = package_modules()
    known = set(modules)
    graph, nested = {}, []
    for name, path in modules.items():
        with open(path) as fh:
            tree = ast.parse(fh.read(), path)
        graph[name], inner = imported_modules(name, tree, known)
        nested += [f"{name}:{line}: {text}" for line, text in inner]
    assert not nested, "function-level s4dm_jax imports:\n" + "\n".join(nested)
    # a package imports its own submodules from __init__; that is not a cycle
    edges = {m: {d for d in deps if not m.startswith(d + ".") and d != m}
             for m, deps in graph.items()}
    cycles = []
    state: dict[str, int] = {}

    def walk(node, stack):
        state[node] = 1
        for dep in sorted(edges[node]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                walk(dep, stack + [dep])
        state[node] = 2

    for name in sorted(edges):
        if name not in state:
            walk(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
    assert graph["s4dm_jax.data.loading"] >= {"s4dm_jax.data.d4rl", "s4dm_jax.data.minari_io"}
    assert "s4dm_jax.data.loading" not in graph["s4dm_jax.data.dataset"]
