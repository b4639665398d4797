"""How the virtual board is built for speed: the power-on reset inside its top level, the
harness's refusal of another reset length, and a build key that follows every option."""

import subprocess

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out
from amaranth.sim import Simulator

from tern_fpga.sim.rtl.virtual_board import RESET_CYCLES, build_board, build_key, power_on_reset


class _Counter(wiring.Component):
    """Counts clock cycles in ``sync``, from 0 at reset."""

    value: Out(8)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.value.eq(self.value + 1)
        return m


def _values_after_each_edge(top, module, edges):
    simulator = Simulator(module)
    simulator.add_clock(1e-6, domain="sync")
    seen = []

    async def bench(ctx):
        for _ in range(edges):
            await ctx.tick("sync")
            seen.append(ctx.get(top.value))

    simulator.add_testbench(bench)
    simulator.run()
    return seen


@pytest.mark.parametrize("cycles", [1, 3])
def test_power_on_reset_holds_the_design_for_its_first_edges(cycles):
    top = _Counter()
    module, ports = power_on_reset(top, cycles)
    assert [port.name for port in ports] == ["clk", "value"]
    # The counter stays in reset for `cycles` rising edges, then counts one an edge.
    assert _values_after_each_edge(top, module, cycles + 3) == [0] * cycles + [1, 2, 3]


def test_power_on_reset_refuses_a_reset_of_no_cycles():
    with pytest.raises(ValueError, match="at least one cycle, not 0"):
        power_on_reset(object(), 0)


def test_the_build_key_follows_the_design_and_every_option():
    key = build_key("module top; endmodule", ("-fno-gate", "OPT_FAST=-O3"))
    assert key == build_key("module top; endmodule", ("-fno-gate", "OPT_FAST=-O3"))
    assert key != build_key("module top; endmodule", ("-fno-gate", "OPT_FAST=-O2"))
    assert key != build_key("module top; endmodule", ("OPT_FAST=-O3",))
    assert key != build_key("module top(); endmodule", ("-fno-gate", "OPT_FAST=-O3"))


def test_the_harness_refuses_another_reset_length(board_top):
    binary = build_board(board_top, "link-test")
    run = subprocess.run([str(binary), "--cycles-per-bit", "4", "--reset-cycles",
                          str(RESET_CYCLES + 1)], capture_output=True, text=True, timeout=30,
                         check=False)
    assert run.returncode == 2
    assert f"resets itself for {RESET_CYCLES} cycles" in run.stderr
