"""The house rules of docs/architecture.md: one import root, the layers (import-linter, with a
broken copy that must fail), no bare folder imports, no product module importing the tests, and
imports inside functions only for heavy dependencies, each with a comment."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tern_fpga.contracts import paths

BIN = Path(sys.executable).parent
PYPROJECT = paths.SOURCE_ROOT / "pyproject.toml"
# Imports that may stay inside a function (a command that does not need them must not pay for
# them), by top-level module. tokenizers: a Rust extension only a checkpoint's tokenizer.json needs.
HEAVY = {"torch", "amaranth", "amaranth_boards", "matplotlib", "cocotb", "cocotb_tools",
         "tokenizers"}


def _installed_layout(folder: Path) -> Path:
    """The package as a wheel lays it out (hw/, sim/, host/, quant/ inside tern_fpga/), which
    is what import-linter's graph builder walks."""
    shutil.copytree(paths.PACKAGE, folder / "tern_fpga",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in paths.SUBPACKAGES:
        shutil.copytree(paths.package_folder(name), folder / "tern_fpga" / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def _lint_imports(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "lint-imports"), str(PYPROJECT), "--no-cache"],
                          cwd=folder, env={"PYTHONPATH": str(folder), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_layers_hold_and_a_violation_is_caught(tmp_path):
    layout = _installed_layout(tmp_path)
    result = _lint_imports(layout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
    # The same check on a copy where the contracts reach up into the RTL must fail.
    (layout / "tern_fpga" / "contracts" / "upward.py").write_text("import tern_fpga.hw.core\n")
    broken = _lint_imports(layout)
    assert broken.returncode != 0 and "BROKEN" in broken.stdout, broken.stdout[-2000:]


@pytest.mark.parametrize("name", paths.SUBPACKAGES)
def test_a_folder_imported_by_its_bare_name_is_refused(name):
    """`import hw` from the checkout's root would load a second copy of every module."""
    result = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=paths.SOURCE_ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert f"ImportError: import tern_fpga.{name}, not {name}" in result.stderr


def _product_files():
    folders = [paths.PACKAGE] + [paths.package_folder(name) for name in paths.SUBPACKAGES]
    return sorted(file for folder in folders for file in folder.rglob("*.py"))


def test_no_product_module_imports_the_tests():
    offenders = []
    for file in _product_files():
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.split(".")[0] in {"tests", "support", "conftest"}:
                offenders.append(f"{file}:{node.lineno}")
    assert offenders == []


def _top_level_imports(module: str) -> set[str]:
    """The modules ``module`` imports when it is loaded (its top-level import statements, the
    names of ``from a import b`` as ``a.b`` too), and its parent packages."""
    parts = module.split(".")
    found = {".".join(parts[:depth]) for depth in range(1, len(parts))}
    source = paths.module_source(module)
    if source is None:
        return found
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _heavy(module: str, seen=None) -> bool:
    """A module that loads torch, Amaranth, matplotlib or cocotb when imported."""
    seen = set() if seen is None else seen
    if module.split(".")[0] in HEAVY:
        return True
    if not module.startswith("tern_fpga") or module in seen:
        return False
    seen.add(module)
    return any(_heavy(name, seen) for name in _top_level_imports(module))


def test_imports_inside_functions_are_heavy_and_say_so():
    """Inside a function only an import that loads a heavy dependency, with a comment on its
    line or the line above; everything else at the top of the module."""
    found = {}
    for file in _product_files():
        source = file.read_text()
        lines = source.splitlines()
        tree = ast.parse(source)
        guarded = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.Try)
                   for statement in node.body for inner in ast.walk(statement)}
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in guarded:
                    # ``from a import b``: b may be the (heavy) module
                    module = f"{node.module}.{node.names[0].name}" \
                        if isinstance(node, ast.ImportFrom) else node.names[0].name
                    commented = "#" in lines[node.end_lineno - 1] or \
                        lines[node.lineno - 2].strip().startswith("#")
                    found[f"{file.relative_to(paths.SOURCE_ROOT)}:{node.lineno}"] = \
                        (module, commented)
    uncommented = [place for place, (_, commented) in found.items() if not commented]
    assert uncommented == [], "imports inside functions without a comment saying why"
    modules = sorted({module for module, _ in found.values()})
    light = [module for module in modules if not _heavy(module)
             and not _heavy(module.rpartition(".")[0])]
    assert light == [], "light modules imported inside functions: move them to the top"


def test_the_command_line_and_tern_golden_load_neither_torch_nor_amaranth():
    """`tern --help` and `tern golden` stay light: the command line builds its parser and the
    golden command's modules load without torch or Amaranth (they are imported where needed)."""
    code = ("import sys\n"
            "from tern_fpga.commands import cli, golden\n"
            "from tern_fpga.sim.golden.model import golden_from_file\n"
            "cli.build_parser()\n"
            "print(sorted({'torch', 'amaranth', 'cocotb', 'matplotlib'} & set(sys.modules)))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.strip() == "[]"
