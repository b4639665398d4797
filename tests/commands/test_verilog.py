"""tern verilog: one file per unit, and Verilator -Wall lint clean with only the waivers."""

import contextlib
import io
import re

import pytest

from tern_fpga.commands.cli import main
from tern_fpga.commands.verilog import LINT_WAIVERS, UNITS, lint, lint_warnings
from tern_fpga.contracts.errors import TernError


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """``tern verilog --lint`` once (writing the whole accelerator takes a while): the folder
    and what the command printed."""
    directory = tmp_path_factory.mktemp("verilog")
    with contextlib.redirect_stdout(io.StringIO()) as output:
        assert main(["verilog", "--preset", "micro", "-o", str(directory), "--lint"]) == 0
    return directory, output.getvalue()


def test_writes_one_module_per_unit(written):
    directory, output = written
    for name, _ in UNITS:
        text = (directory / f"{name}.v").read_text()
        assert re.search(rf"^module {name}\(", text, re.MULTILINE)
        assert str(directory / f"{name}.v") in output


def test_lint_clean_with_exactly_the_waivers(written):
    """Clean with the waivers (the command's --lint), and every waiver is needed by some unit
    (none is stale)."""
    directory, output = written
    assert f"lint: clean ({len(UNITS)} file(s)" in output
    rules = set()
    for name, _ in UNITS:
        rules |= {re.match(r"%Warning-(\w+):", line).group(1)
                  for line in lint_warnings(directory / f"{name}.v", waivers=())}
    assert rules == set(LINT_WAIVERS)


def test_lint_reports_other_warnings(tmp_path):
    bad = tmp_path / "loop.v"
    bad.write_text("module loop(input a, output y);\n  wire b;\n  assign b = y ^ a;\n"
                   "  assign y = b;\nendmodule\n")
    with pytest.raises(TernError, match=r"loop\.v: \d+ Verilator lint warning\(s\) beyond the "
                                        r"waivers in tern_fpga/commands/verilog\.py, first: "
                                        r"%Warning-"):
        lint([bad])


def test_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["verilog", "--preset", "micro", "-o", str(blocker / "sub")]) == 1
    error = capsys.readouterr().err
    assert error == (f"tern verilog: error: -o {blocker}/sub: {blocker} is not a folder; "
                     f"choose another path\n")
