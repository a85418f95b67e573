"""Imports sit at the top of a module, where a reader and ``lint-imports`` see them; inside a
function only the optional dependencies below, which ``import jepa`` must not pull in."""

import ast
import pathlib
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "jepa"
# What may be imported inside a function, and why it waits for the call.
LAZY = {
    "torch": "the [torch] extra, read only to import official I-JEPA checkpoints",
    "jepa.ijepa_import": "jepa.from_ijepa_torch: the torch extra's importer, kept out of jepa.hub",
    "matplotlib": "the PNG plots only; matplotlib.use('Agg') must precede pyplot",
    "tensorboardX": "loads torch whenever torch is installed",
}


def imports_in_functions(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, name) of every import inside a function body of ``path``; ``from m import a``
    is ``m.a`` (a submodule or a name of ``m``)."""
    found = []

    def visit(node, in_function: bool) -> None:
        if in_function and isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif in_function and isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            sep = "." if node.module else ""
            found.extend((node.lineno, f"{base}{sep}{alias.name}") for alias in node.names)
        inside = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def allowed(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in LAZY)


def test_imports_inside_functions_are_optional_dependencies_only():
    paths = sorted(PACKAGE.rglob("*.py"))
    assert len(paths) > 50
    bad = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {module}"
        for path in paths
        for line, module in imports_in_functions(path)
        if not allowed(module)
    ]
    assert not bad, "move these imports to the top of their module:\n" + "\n".join(bad)


def test_the_check_sees_nested_and_relative_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "import os\n"
        "def f():\n"
        "    import torch\n"
        "    def g():\n"
        "        from . import sibling\n"
        "    from matplotlib import pyplot\n"
        "class C:\n"
        "    def h(self):\n"
        "        import json\n"
    )
    found = imports_in_functions(source)
    assert sorted(found) == [(3, "torch"), (5, ".sibling"), (6, "matplotlib.pyplot"), (9, "json")]
    assert [allowed(m) for _, m in sorted(found)] == [True, False, True, False]


def test_import_jepa_loads_no_optional_dependency():
    names = ("torch", "matplotlib", "tensorflow", "tensorboardX", "jepa.ijepa_import")
    code = f"import sys, jepa; print([n for n in {names} if n in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"
