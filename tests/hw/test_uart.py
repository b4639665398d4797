# amaranth: UnusedElaboratable=no
"""UART transmitter and receiver in Amaranth's simulator, against the ideal 8N1 line model of
:mod:`tern_fpga.sim.rtl.testbenches.uart` (which also runs them on Verilator: ``tern sim uart``)."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from tern_fpga.hw.uart import UartRx, UartTx, baud_error, bit_period
from tern_fpga.sim.rtl.testbenches.uart import decode_line, line_levels


def run_rx(clock_hz, baud, levels, *, ready=True):
    dut = UartRx(clock_hz, baud)
    events = {"bytes": [], "framing_errors": 0, "overruns": 0}

    async def drive(ctx):
        ctx.set(dut.o.ready, ready)
        for level in levels:
            ctx.set(dut.rx, level)
            await ctx.tick()

    async def watch(ctx):
        async for _, _, valid, payload, ready_, error, overrun in ctx.tick().sample(
                dut.o.valid, dut.o.payload, dut.o.ready, dut.framing_error, dut.overrun):
            if valid and ready_:
                events["bytes"].append(payload)
            events["framing_errors"] += error
            events["overruns"] += overrun

    simulator = Simulator(dut)
    simulator.add_clock(1e-6)
    simulator.add_testbench(drive)
    simulator.add_process(watch)
    simulator.run_until(1e-6 * (len(levels) + 2))
    return events


@pytest.mark.parametrize("clock_hz, baud, expected", [
    (48_000_000, 3_000_000, 0.0), (60_000_000, 3_000_000, 0.0), (12_000_000, 3_000_000, 0.0)])
def test_exact_rates(clock_hz, baud, expected):
    assert bit_period(clock_hz, baud) == clock_hz // baud * 256
    assert baud_error(clock_hz, baud) == expected


def test_fractional_rate_error_is_tiny():
    # 16.67 cycles a bit: an integer divisor (17) would be 2 % slow.
    assert abs(baud_error(50_000_000, 3_000_000)) < 1e-4
    assert abs(baud_error(50_000_000, 115_200)) < 1e-5


def test_too_fast_is_refused():
    with pytest.raises(ValueError, match=r"baud 3000000 is too fast for a 10000000 Hz clock: a "
                                         r"bit must last at least 4 cycles; use at most 2500000"):
        UartTx(10_000_000, 3_000_000)
    with pytest.raises(ValueError, match="baud must be a positive integer, not 0"):
        UartRx(10_000_000, 0)


@pytest.mark.parametrize("clock_hz", [50_000_000, 12_000_000])
def test_tx_bits_land_on_their_ideal_edges(clock_hz):
    baud = 3_000_000
    cycles_per_bit = clock_hz / baud
    data = random.Random(clock_hz).randbytes(12)
    dut = UartTx(clock_hz, baud)
    levels = []

    async def send(ctx):
        for byte in data:
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, byte)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        await ctx.tick().repeat(40)

    async def record(ctx):
        async for _, _, level in ctx.tick().sample(dut.tx):
            levels.append(level)

    simulator = Simulator(dut)
    simulator.add_clock(1e-6)
    simulator.add_testbench(send)
    simulator.add_process(record)
    simulator.run_until(1e-6 * (len(data) * 10.5 * cycles_per_bit + 60))
    assert decode_line(levels, cycles_per_bit) == list(data)
    # Within a frame every level change lies within one cycle of its ideal time.
    start = levels.index(0)
    edges = [i for i in range(start + 1, start + round(9.5 * cycles_per_bit))
             if levels[i] != levels[i - 1]]
    for edge in edges:
        offset = (edge - start) / cycles_per_bit
        assert abs(offset - round(offset)) * cycles_per_bit <= 1.0


@pytest.mark.parametrize("clock_hz, mismatch", [
    (50_000_000, 0.0), (50_000_000, 0.025), (50_000_000, -0.025), (12_000_000, 0.02),
    (12_000_000, -0.02)])
def test_rx_receives_a_line_off_by_a_few_percent(clock_hz, mismatch):
    baud = 3_000_000
    rng = random.Random(round(mismatch * 1000) + clock_hz)
    data = rng.randbytes(16)
    levels = line_levels([(b, 1) for b in data], clock_hz / baud * (1 + mismatch), seed=1)
    events = run_rx(clock_hz, baud, levels)
    assert events["bytes"] == list(data)
    assert events["framing_errors"] == events["overruns"] == 0


def test_rx_framing_error_drops_the_byte_and_recovers():
    clock_hz, baud = 12_000_000, 3_000_000
    frames = [(0x55, 1), (0xA7, 0), (0x3C, 1), (0x00, 0), (0xFF, 1)]
    events = run_rx(clock_hz, baud, line_levels(frames, clock_hz / baud, gap_bits=(1, 2)))
    assert events["bytes"] == [0x55, 0x3C, 0xFF]
    assert events["framing_errors"] == 2


def test_rx_ignores_a_glitch_shorter_than_half_a_bit():
    clock_hz, baud = 50_000_000, 3_000_000
    glitch = [1] * 20 + [0] * 5 + [1] * 40
    levels = glitch + line_levels([(0x81, 1)], clock_hz / baud)
    events = run_rx(clock_hz, baud, levels)
    assert events["bytes"] == [0x81]
    assert events["framing_errors"] == 0


def test_rx_overrun_keeps_the_newest_byte():
    clock_hz, baud = 12_000_000, 3_000_000
    levels = line_levels([(0x11, 1), (0x22, 1), (0x33, 1)], clock_hz / baud)
    events = run_rx(clock_hz, baud, levels, ready=False)
    assert events["overruns"] == 2 and events["bytes"] == []


@pytest.mark.parametrize("clock_hz", [50_000_000, 24_000_000])
def test_loopback(clock_hz):
    baud = 3_000_000
    data = random.Random(clock_hz + 1).randbytes(10)
    tx, rx = UartTx(clock_hz, baud), UartRx(clock_hz, baud)
    received = []

    async def send(ctx):
        ctx.set(rx.o.ready, 1)
        for byte in data:
            ctx.set(tx.i.valid, 1)
            ctx.set(tx.i.payload, byte)
            await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)

    async def wire(ctx):
        async for _, _, level, valid, payload in ctx.tick().sample(tx.tx, rx.o.valid,
                                                                   rx.o.payload):
            ctx.set(rx.rx, level)
            if valid:
                received.append(payload)

    m = Module()
    m.submodules.tx, m.submodules.rx = tx, rx
    simulator = Simulator(m)
    simulator.add_clock(1e-6)
    simulator.add_testbench(send)
    simulator.add_process(wire)
    simulator.run_until(1e-6 * (len(data) + 2) * 10 * clock_hz / baud)
    assert received == list(data)
