"""Waveforms: a traced run writes an FST of its window that a reader opens (pywellen, from the
package index), with a GTKWave save file whose groups and state names come from the design;
the untraced build refuses waves; the virtual board traces a window it is told of."""

import re

import pytest

from tern_fpga.contracts.params import PRESETS
from tern_fpga.host.driver import Board
from tern_fpga.hw.uart import UartRx
from tern_fpga.sim.rtl.cocotb_support import VerilatorBuild
from tern_fpga.sim.rtl.runs import run_unit
from tern_fpga.sim.rtl.virtual_board import VirtualBoard
from tern_fpga.sim.rtl.waves import CYCLE_PS, read_scopes, state_names, write_save_file

from support.link import BAUD, LINK_PARAMS, make_board


def fst_reader():
    """pywellen (PyPI), an FST reader: the tests that read a waveform back need it."""
    return pytest.importorskip("pywellen", reason="pip install pywellen (an FST reader)")


def changes(waveform, name: str, start: int, end: int, step: int) -> set:
    """The values of the signal named ``name`` seen every ``step`` from ``start`` to ``end``."""
    signal = next(var for var in waveform.all_vars() if var.full_name == name).signal
    return {signal.value_at(time) for time in range(start, end, step)}


def test_a_unit_run_writes_its_window_and_a_save_file(tmp_path):
    fst = tmp_path / "uart.fst"
    verdict = run_unit("uart", PRESETS["micro"], waves=fst, window=(100, 300))
    assert verdict.passed and verdict.waves == fst
    waveform = fst_reader().Waveform(str(fst))
    # Nothing before the window, the clock and the line toggling inside it.
    assert changes(waveform, "uart_pair.clk", 0, 100 * CYCLE_PS, CYCLE_PS // 2) == {None}
    inside = (100 * CYCLE_PS, 400 * CYCLE_PS, CYCLE_PS // 2)
    assert changes(waveform, "uart_pair.clk", *inside) == {0, 1}
    assert changes(waveform, "uart_pair.tx", *inside) == {0, 1}
    times = []
    waveform.stream_time_steps(lambda time, *_: times.append(time), None)
    assert 100 * CYCLE_PS <= min(times) and max(times) < 400 * CYCLE_PS

    save = verdict.save_file.read_text()
    assert save.startswith("[*] tern: uart.fst") and f'[dumpfile] "{fst}"' in save
    groups = re.findall(r"^@800200\n-(.+)$", save, re.MULTILINE)
    assert groups == ["state", "uart_pair", "receiver", "transmitter"]
    assert "uart_pair.tx_data__valid\nuart_pair.tx_data__ready" in save
    states = (tmp_path / "uart.filters" / "uart_pair.receiver.fsm_state.txt").read_text()
    assert states.split() == ["0", "idle", "1", "start", "2", "data", "3", "stop", "4", "break"]


def test_an_untraced_build_refuses_waves(tmp_path):
    build = VerilatorBuild("row_unit", tmp_path)
    with pytest.raises(ValueError, match=f"{tmp_path.name} was built without tracing; build it "
                                         r"with build_component\(\.\.\., waves=True\)"):
        build.run("module", {}, waves=tmp_path / "w.fst")


def test_state_names_come_from_the_elaborated_design():
    assert state_names(UartRx(12_000_000, 3_000_000)) == {
        "fsm_state": {0: "idle", 1: "start", 2: "data", 3: "stop", 4: "break"}}


VERILOG = """\
module top(clk, rst, a__valid, a__ready, a__payload);
  input clk;
  wire clk;
  input rst;
  input a__valid;
  output a__ready;
  input [7:0] a__payload;
  (* enum_base_type = "Mode" *)
  (* enum_value_0 = "OFF" *)
  (* enum_value_1 = "ON" *)
  reg mode = 1'h0;
  reg [4:0] pc = 5'h00;
  reg [3:0] fsm_state = 4'h0;
  wire [9:0] \\$12 ;
  wire [6:0] buffer_read0_addr;
  \\top.unit  unit (
    .clk(clk)
  );
endmodule

module \\top.unit (clk, o__valid, busy);
  input clk;
  output o__valid;
  output busy;
endmodule
"""


def test_the_save_file_groups_state_streams_and_memory_ports(tmp_path):
    verilog = tmp_path / "top.v"
    verilog.write_text(VERILOG)
    scopes = read_scopes(verilog, "top", root="TOP")
    assert [(scope.path, scope.relative) for scope in scopes] == [
        ("TOP.top", ""), ("TOP.top.unit", "unit")]
    assert scopes[0].widths == {"clk": 1, "rst": 1, "a__valid": 1, "a__ready": 1,
                                "a__payload": 8, "mode": 1, "pc": 5, "fsm_state": 4,
                                "buffer_read0_addr": 7}
    save = write_save_file(tmp_path / "w.fst", verilog, "top", root="TOP",
                           translations={"pc": {3: "add x"}, "fsm_state": {0: "IDLE"}})
    lines = [line for line in save.read_text().splitlines() if not line.startswith(("@", "^"))]
    assert lines[lines.index("-state"):] == [
        "-state", "TOP.top.clk", "TOP.top.rst", "TOP.top.mode", "TOP.top.pc[4:0]",
        "TOP.top.fsm_state[3:0]", "-state",
        "-top", "TOP.top.a__valid", "TOP.top.a__ready", "-top",
        "-unit", "TOP.top.unit.o__valid", "TOP.top.unit.busy", "-unit",
        "-memory ports", "TOP.top.buffer_read0_addr[6:0]", "-memory ports"]
    filters = tmp_path / "w.filters"
    assert (filters / "TOP.top.mode.txt").read_text().split() == ["0", "OFF", "1", "ON"]
    assert (filters / "TOP.top.pc.txt").read_text() == "03 add x\n"


@pytest.mark.xdist_group("virtual-board-link-test-fst")
def test_the_virtual_board_traces_the_cycles_it_is_told(tmp_path):
    """No window at the start: nothing is written until trace(), then that many cycles."""
    fst = tmp_path / "board.fst"
    virtual = VirtualBoard(make_board(), LINK_PARAMS, name="link-test", waves=fst)
    with virtual as url, Board(url, baud=BAUD) as board:
        board.identify()
        virtual.trace(2_000)
        board.identify()
    waveform = fst_reader().Waveform(str(fst))
    times = []
    waveform.stream_time_steps(lambda time, *_: times.append(time), None)
    first = min(times)
    assert first > 1_000 * CYCLE_PS            # after the first IDENTIFY's traffic
    assert max(times) < first + 2_000 * CYCLE_PS
    assert changes(waveform, "TOP.top.uart_rx", first, first + 2_000 * CYCLE_PS,
                   CYCLE_PS) == {0, 1}
    assert virtual.save_file == tmp_path / "board.gtkw"
    assert "TOP.top.link.engine.receiver.fsm_state[1:0]" in virtual.save_file.read_text()
