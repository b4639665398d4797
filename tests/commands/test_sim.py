"""tern sim: each unit's testbench and the whole core under the command, with a one-line
verdict; a mismatch's message with the command that re-runs it with waves; the timeline PNG;
tern --version. Small presets and the tests' cached Verilator builds (micro), so that it stays
quick."""

import re
import shlex

import numpy as np
import pytest
import torch

from tern_fpga.commands.cli import main
from tern_fpga.contracts.export_format import write_export
from tern_fpga.contracts.isa import Opcode
from tern_fpga.contracts.params import PRESETS
from tern_fpga.quant.compiler import compile_model
from tern_fpga.quant.config import HGRNBitConfig
from tern_fpga.quant.export import to_export
from tern_fpga.quant.model import HGRNBitForCausalLM
from tern_fpga.sim.golden import model as golden_model
from tern_fpga.sim.rtl.runs import UNITS

VERDICT = re.compile(r"^(PASS|FAIL) (\S+) \((\w+)\) \[([\d,]+) cycles simulated in "
                     r"[\d.]+ s\]: .+$")


@pytest.fixture(scope="module")
def micro_export(tmp_path_factory):
    """A random byte-level model of one layer, d=64 (a short step), exported for micro."""
    torch.manual_seed(1)
    model = HGRNBitForCausalLM(HGRNBitConfig(vocab_size=256, hidden_size=64,
                                             num_hidden_layers=1))
    path = tmp_path_factory.mktemp("export") / "micro.tern"
    write_export(path, to_export(compile_model(model, PRESETS["micro"])))
    return path


def verdict(capsys) -> re.Match:
    lines = capsys.readouterr().out.splitlines()
    match = VERDICT.match(lines[0])
    assert match, lines
    return match


@pytest.mark.parametrize("unit", list(UNITS))
def test_each_unit_passes_with_a_verdict(unit, capsys):
    assert main(["sim", unit, "--preset", "micro"]) == 0
    match = verdict(capsys)
    assert match.group(1, 2, 3) == ("PASS", unit, "micro")
    assert int(match.group(4).replace(",", "")) > 100


def test_given_inputs_replace_the_random_ones(tmp_path, capsys):
    """--config: a UART line 20 % off the receiver's rate fails, in one line, exit status 1."""
    config = tmp_path / "line.json"
    config.write_text('{"mismatch": 0.2, "count": 8}')
    assert main(["sim", "uart", "--config", str(config)]) == 1
    line = capsys.readouterr().out.splitlines()[0]
    assert re.match(r"FAIL uart \(micro\) \[[\d,]+ cycles simulated in [\d.]+ s\]: the "
                    r"receiver gave fewer than 8 bytes", line), line


def test_the_core_runs_an_export_bit_exact(micro_export, capsys):
    assert main(["sim", "core", str(micro_export), "--prompt", "Th", "-n", "2"]) == 0
    match = verdict(capsys)
    assert match.group(1, 2, 3) == ("PASS", "core", "micro")
    assert "3 steps bit-exact with the golden model" in match.group(0)


def test_a_mismatch_names_the_instruction_and_the_rerun_with_waves(micro_export, capsys,
                                                                   monkeypatch):
    """A golden model whose ADD is off by one in element 3: the core's first ADD differs."""
    add = golden_model._BINARY[Opcode.ADD]

    def wrong_add(a, b, params):
        result = np.array(add(a, b, params))
        result[3] += 1
        return result

    monkeypatch.setitem(golden_model._BINARY, Opcode.ADD, wrong_add)
    assert main(["sim", "core", str(micro_export), "--prompt", "Th", "-n", "1"]) == 1
    line = capsys.readouterr().out.splitlines()[0]
    found = re.search(r"first difference: instruction (\d+) \((add [^)]*)\): element 3 is "
                      r"(-?\d+), the golden model wrote (-?\d+); written at ([\d,]+) ns, cycle "
                      r"(\d+) \(the instruction started at cycle (\d+), in the re-run of step "
                      r"0\); waves around it: (tern sim core .*)$", line)
    assert found, line
    rtl, golden, ns, cycle, start = (int(found.group(i).replace(",", ""))
                                     for i in (3, 4, 5, 6, 7))
    assert golden == rtl + 1 and ns == 10 * cycle and start <= cycle
    rerun = shlex.split(found.group(8))
    assert rerun[:4] == ["tern", "sim", "core", str(micro_export.resolve())]
    assert rerun[4:8] == ["--prompt", "Th", "-n", "1"]
    assert rerun[8:11] == ["--waves", "mismatch.fst", "--from-cycle"]
    first, count = int(rerun[11]), int(rerun[13])
    assert rerun[12] == "--cycles" and first <= start and first + count > cycle


def test_the_timeline_of_one_token(micro_export, tmp_path, capsys):
    png = tmp_path / "timeline.png"
    assert main(["sim", "core", str(micro_export), "--prompt", "T", "-n", "1",
                 "--timeline", str(png)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(rf"timeline of one token \([\d,]+ cycles from the run command to the "
                        rf"token\): {re.escape(str(png))}", lines[-1])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


@pytest.mark.parametrize("arguments, message", [
    (["core"], "tern sim core needs an export (.tern, with --prompt or --ids) or a case (.npz)"),
    (["uart", "model.tern"], "tern sim uart takes no export or case"),
    (["core", "case.npz", "--waves", "w.fst", "--waves-steps", "2:1"],
     "--waves-steps needs 0 <= FIRST <= LAST, not '2:1'"),
    (["uart", "--waves", "w.fst", "--cycles", "0"],
     "the waves' window needs --from-cycle >= 0 and --cycles >= 1, not 0 and 0"),
    (["core", "case.npz", "--from-cycle", "3"], "--from-cycle goes with --waves FILE.fst"),
    (["uart", "--timeline", "t.png"], "--timeline goes with tern sim core, not uart"),
])
def test_wrong_arguments_are_one_line(arguments, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["sim", *arguments]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"tern sim: error: {message}") and error.count("\n") == 1


def test_version_names_the_presets_hashes_and_the_toolchain(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert re.match(r"tern \d+\.\d+\.\d+ \(ISA \d+, export format \d+, Python 3", text)
    for name, params in PRESETS.items():
        assert f"{name} {params.hash:016x}" in text
    for tool in ("Yosys", "nextpnr", "Verilator", "Amaranth", "cocotb"):
        assert re.search(rf"^  {tool} \S+ \(", text, re.MULTILINE), tool
