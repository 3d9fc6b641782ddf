"""No function in the package, configs/ or experiments/ takes more than 8 parameters (settings
travel in dataclasses such as EvalSettings, DatasetSpec, SACTrainConfig), except signatures a
framework imposes, each listed here and named by a comment above its definition."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_PARAMS = 8
# path: function names whose signature a framework fixes (named in a comment above each)
FRAMEWORK_IMPOSED = {"s4dm_jax/nn/transformer.py": {"gpt2_attention"}}  # Flax's attention_fn


def count_params(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> int:
    """Parameters of a definition, `self` / `cls` not counted, *args and **kwargs counted."""
    a = node.args
    positional = [x.arg for x in a.posonlyargs + a.args]
    n = (len(positional) + len(a.kwonlyargs) + (a.vararg is not None)
         + (a.kwarg is not None))
    return n - (positional[:1] in (["self"], ["cls"]))


def long_signatures(source: str) -> list[tuple[str, int, int]]:
    """(name, line, parameter count) of each function in `source` with more than 8."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            n = count_params(node)
            if n > MAX_PARAMS:
                found.append((getattr(node, "name", "<lambda>"), node.lineno, n))
    return found


def test_the_counter_counts_what_a_call_can_pass():
    source = ("def f(a, b, /, c, d=1, *args, e, f=2, g=3, **kw): pass\n"
              "class C:\n    def m(self, a, b, c, d, e, f, g, h, i): pass\n"
              "g = lambda a, b, c, d, e, f, g, h, i: 0\n")
    assert long_signatures(source) == [("f", 1, 9), ("m", 3, 9), ("<lambda>", 4, 9)]
    assert long_signatures("def ok(a, b, c, d, e, f, g, h): pass\n") == []


def test_no_function_takes_more_than_eight_parameters():
    offenders = []
    for top in ("s4dm_jax", "configs", "experiments"):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, ROOT).replace(os.sep, "/")
                with open(path, encoding="utf-8") as f:
                    lines = f.read()
                allowed = FRAMEWORK_IMPOSED.get(rel, set())
                offenders += [f"{rel}:{line} {fn} ({n} parameters)"
                              for fn, line, n in long_signatures(lines) if fn not in allowed]
    assert not offenders, ("group arguments that travel together in a settings dataclass: "
                           + "; ".join(offenders))


def test_framework_imposed_signatures_are_named_in_a_comment():
    for rel, names in FRAMEWORK_IMPOSED.items():
        with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
            lines = f.read().splitlines()
        for name in names:
            at = next(i for i, line in enumerate(lines) if line.startswith(f"def {name}("))
            assert "framework-imposed" in " ".join(lines[max(0, at - 3):at]).lower(), (rel, name)
