"""The UART's golden line model, and the cocotb test of
:class:`tern_fpga.sim.rtl.uart_pair.UartPair`.

:func:`line_levels` is an ideal 8N1 transmitter (the line, one level a cycle, at any rate) and
:func:`decode_line` an ideal receiver sampling each bit in its middle: the golden functions the
transmitter's and the receiver's bytes are checked against, in Amaranth's simulator
(``tests/hw/test_uart.py``) and on Verilator (:func:`random_bytes` below, which ``tern sim uart``
runs).
"""

from __future__ import annotations

import math
import random

import cocotb
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from tern_fpga.sim.rtl.cocotb_support import (
    StreamDriver,
    StreamSink,
    start_clock_and_reset,
    test_config,
)

__all__ = ["decode_line", "line_levels"]


def line_levels(frames, cycles_per_bit, *, gap_bits=(0, 3), seed=0):
    """The line, one level per cycle, carrying ``frames``: (byte, stop level) pairs, each
    frame's bit ``k`` from ``start + k * cycles_per_bit``, random idle gaps between frames."""
    rng = random.Random(seed)
    levels, time = [1] * 5, 5.0
    for byte, stop in frames:
        bits = [0] + [(byte >> i) & 1 for i in range(8)] + [stop]
        for k, bit in enumerate(bits):
            end = time + (k + 1) * cycles_per_bit
            levels += [bit] * (math.floor(end) - len(levels))
        time += 10 * cycles_per_bit
        if stop == 0:   # a break: stay low a while, then recover
            levels += [0] * 3 * round(cycles_per_bit)
            time = len(levels)
        time += rng.uniform(*gap_bits) * cycles_per_bit
        levels += [1] * (math.floor(time) - len(levels))
    return levels + [1] * 3 * math.ceil(cycles_per_bit)


def decode_line(levels, cycles_per_bit):
    """Bytes of an ideal receiver sampling mid-bit; asserts every stop bit is high."""
    received, cycle = [], 0
    while cycle < len(levels):
        if levels[cycle] == 1:
            cycle += 1
            continue
        samples = [levels[min(len(levels) - 1, cycle + round((k + 0.5) * cycles_per_bit))]
                   for k in range(10)]
        assert samples[0] == 0 and samples[9] == 1, f"bad frame at cycle {cycle}: {samples}"
        received.append(sum(bit << i for i, bit in enumerate(samples[1:9])))
        cycle += round(9.5 * cycles_per_bit)
    return received


async def _record_tx(dut, levels: list, cycles: int):
    for _ in range(cycles):
        await RisingEdge(dut.clk)
        await ReadOnly()
        levels.append(int(dut.tx.value))


async def _drive_rx(dut, levels):
    for level in levels:
        await RisingEdge(dut.clk)
        dut.rx.value = level


async def _count_errors(dut, counts: dict):
    while True:
        await RisingEdge(dut.clk)
        await ReadOnly()
        counts["framing_error"] += int(dut.framing_error.value)
        counts["overrun"] += int(dut.overrun.value)


@cocotb.test()
async def random_bytes(dut):
    """``count`` random bytes out of the transmitter, decoded by the ideal receiver, and
    ``count`` more from the ideal transmitter at a line rate off by ``mismatch`` into the
    receiver (with random stalls on its output), bit for bit, no framing error or overrun."""
    config = test_config()
    rng = random.Random(config["seed"])
    cycles_per_bit = config["clock_hz"] / config["baud"]
    sent = rng.randbytes(config["count"])
    dut.rx.value = 1
    await start_clock_and_reset(dut)

    levels = []
    recorder = cocotb.start_soon(
        _record_tx(dut, levels, math.ceil((len(sent) + 2) * 12 * cycles_per_bit) + 20))
    await StreamDriver(dut, "tx_data", probability=0.5, seed=config["seed"]).send(sent)
    await recorder
    await RisingEdge(dut.clk)   # out of the recorder's read-only phase before driving again
    decoded = decode_line(levels, cycles_per_bit)
    assert decoded == list(sent), f"the transmitter sent {bytes(decoded).hex()}, " \
                                  f"expected {sent.hex()}"

    incoming = rng.randbytes(config["count"])
    counts = {"framing_error": 0, "overrun": 0}
    counter = cocotb.start_soon(_count_errors(dut, counts))
    line = line_levels([(byte, 1) for byte in incoming],
                       cycles_per_bit * (1 + config["mismatch"]), seed=config["seed"])
    # Ready often enough that no byte is overwritten: a byte waits at most a frame.
    sink = cocotb.start_soon(StreamSink(dut, "rx_data", probability=0.5,
                                        seed=config["seed"] + 1).receive(len(incoming)))
    await _drive_rx(dut, line)
    await ClockCycles(dut.clk, round(12 * cycles_per_bit))
    counter.cancel()
    if not sink.done():
        sink.cancel()
        raise AssertionError(f"the receiver gave fewer than {len(incoming)} bytes by the end "
                             f"of the line (receiver errors: {counts})")
    received = sink.result()
    assert bytes(received) == incoming, f"the receiver got {bytes(received).hex()}, " \
                                        f"expected {incoming.hex()}"
    assert counts == {"framing_error": 0, "overrun": 0}, f"receiver errors: {counts}"
