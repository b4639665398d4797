"""cocotb test of SDRAMController (sim variant) on Verilator, run by test_sdram_controller.py.

Waits for the init sequencer's ``init_done``, writes random 16-bit words to random distinct
addresses through the native port (random stalls on ``cmd``), reads them
back and compares; then overwrites the low byte of some of them with
byte enable 0b01 and checks that the high byte stayed; then writes a run of consecutive
addresses and reads it back with no stall, logging the read bandwidth; then idles so that refreshes happen with
no traffic. The memory is LiteDRAM's model inside the core; the timing checks read the log.
"""

import random

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout

from tern_fpga.sim.rtl.cocotb_support import (
    StreamDriver,
    StreamSink,
    start_clock_and_reset,
    test_config,
)


async def _wait_init(dut, timeout):
    for _ in range(timeout):
        await RisingEdge(dut.clk)
        if dut.init_done.value:
            return
    raise AssertionError(f"init_done did not rise within {timeout} cycles")


async def _write(cmd, wdata, addresses, values, byte_enable=0b11):
    commands = cocotb.start_soon(cmd.send([1 | address << 1 for address in addresses]))
    await wdata.send([value | byte_enable << 16 for value in values])
    await commands


async def _read(cmd, rdata, addresses):
    commands = cocotb.start_soon(cmd.send([address << 1 for address in addresses]))
    received = await rdata.receive(len(addresses))
    await commands
    return received


@cocotb.test()
async def write_read_random(dut):
    config = test_config()
    rng = random.Random(config["seed"])
    await start_clock_and_reset(dut)
    await _wait_init(dut, config["init_timeout"])

    addresses = rng.sample(range(1 << config["address_width"]), config["words"])
    values = [rng.getrandbits(16) for _ in addresses]
    stall = config["probability"]
    cmd = StreamDriver(dut, "cmd", probability=stall, seed=rng.getrandbits(32))
    # LiteDRAM's native port ignores wdata.valid and rdata.ready (docs/sdram.md): write data
    # must wait at the port before its command, and read data is taken as it comes. Only the
    # command stream stalls at random.
    wdata = StreamDriver(dut, "wdata")
    rdata = StreamSink(dut, "rdata")

    limit = config["stage_timeout_us"]
    await with_timeout(_write(cmd, wdata, addresses, values), limit, "us")
    dut._log.info("wrote %d words", len(addresses))
    received = await with_timeout(_read(cmd, rdata, addresses), limit, "us")
    mismatches = [(hex(a), hex(v), hex(r)) for a, v, r in zip(addresses, values, received)
                  if v != r]
    assert not mismatches, f"{len(mismatches)} words read back wrong (addr, wrote, read): " \
                           f"{mismatches[:8]}"

    some = addresses[:config["masked_words"]]
    low_bytes = [rng.getrandbits(8) for _ in some]
    await with_timeout(_write(cmd, wdata, some, low_bytes, byte_enable=0b01), limit, "us")
    received = await with_timeout(_read(cmd, rdata, some), limit, "us")
    expected = [(value & 0xFF00) | low for value, low in zip(values, low_bytes)]
    assert received == expected, "a write with byte enable 0b01 changed the high byte " \
                                 "or missed the low byte"

    # Sequential reads with no stall, as a weight stream would make them: across rows, banks
    # and refreshes. The log line gives the read bandwidth (words per cycle of the data's run).
    start, count = config["sequential_start"], config["sequential_words"]
    sequential = list(range(start, start + count))
    values = [rng.getrandbits(16) for _ in sequential]
    await with_timeout(_write(cmd, wdata, sequential, values), limit, "us")
    fast_cmd, fast_rdata = StreamDriver(dut, "cmd"), StreamSink(dut, "rdata")
    received = await with_timeout(_read(fast_cmd, fast_rdata, sequential), limit, "us")
    assert received == values, "sequential reads returned other words than were written"
    first_command, data = fast_cmd.transfer_cycles[0], fast_rdata.transfer_cycles
    dut._log.info("tern-bandwidth words=%d first_command=%d first_data=%d last_data=%d",
                  count, first_command, data[0], data[-1])

    await ClockCycles(dut.clk, config["idle_cycles"])
