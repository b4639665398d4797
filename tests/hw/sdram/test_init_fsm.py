"""InitSequencer in Amaranth's simulator: the Wishbone writes it makes, their order, and the
waits between them, against the program (no LiteDRAM core: a slave that acks every cycle)."""

import pytest
from amaranth.sim import Simulator

from tern_fpga.hw.sdram.init_fsm import InitSequencer
from tern_fpga.hw.sdram.init_sequence import RegisterWrite, Wait, init_program

REGISTERS = {"sdram_dfii_control": 0x800, "sdram_dfii_pi0_command": 0x804,
             "sdram_dfii_pi0_command_issue": 0x808, "sdram_dfii_pi0_address": 0x80C,
             "sdram_dfii_pi0_baddress": 0x810, "ddrctrl_init_done": 0x0}
TIMINGS = {"tRP": 1, "tRFC": 4}


def run(program, cycles):
    """(cycle, word address, value) of each write the sequencer made, and when done rose."""
    dut = InitSequencer(program, REGISTERS)
    writes, done_at = [], []

    async def slave(ctx):
        for cycle in range(cycles):
            cyc, stb, we, adr, dat = (ctx.get(dut.bus.cyc), ctx.get(dut.bus.stb),
                                      ctx.get(dut.bus.we), ctx.get(dut.bus.adr),
                                      ctx.get(dut.bus.dat_w))
            ctx.set(dut.bus.ack, cyc and stb)
            if cyc and stb:
                assert we and ctx.get(dut.bus.sel) == 0xF
                writes.append((cycle, adr, dat))
            if ctx.get(dut.done) and not done_at:
                done_at.append(cycle)
            await ctx.tick()

    simulator = Simulator(dut)
    simulator.add_clock(1e-6)
    simulator.add_testbench(slave)
    simulator.run()
    return writes, done_at


def test_writes_follow_the_program_with_its_waits():
    program = init_program(2, TIMINGS, 50e6, power_up_us=1.0)  # 50 cycles of power-up
    writes, done_at = run(program, 200)
    expected = [(REGISTERS[s.register] // 4, s.value) for s in program
                if isinstance(s, RegisterWrite)]
    assert [(adr, value) for _, adr, value in writes] == expected
    assert done_at, "done never rose"
    # Between two writes, exactly the program's wait (plus the write's own cycle).
    gaps, index = [], 0
    for step in program:
        if isinstance(step, RegisterWrite):
            index += 1
        elif index:
            gaps.append((index - 1, step.cycles))
    for write_index, cycles in gaps:
        assert writes[write_index + 1][0] - writes[write_index][0] >= cycles + 1


def test_mode_register_load_carries_the_cas_latency():
    writes, _ = run(init_program(3, TIMINGS, 50e6, power_up_us=0.1), 200)
    address_register = REGISTERS["sdram_dfii_pi0_address"] // 4
    addresses = [value for _, adr, value in writes if adr == address_register]
    assert addresses == [0x400, 0, 0, 0x30]


def test_unknown_register_is_named():
    with pytest.raises(KeyError, match="sdram_dfii_pi1_command"):
        InitSequencer([RegisterWrite("sdram_dfii_pi1_command", 1), Wait(3)], REGISTERS)
