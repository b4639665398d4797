"""cocotb test of SDRAMWeights on SDRAMController's sim variant (LiteDRAM's memory model),
run by test_sdram_weights.py.

Waits for ``status`` 0 (initialised), writes random 32-bit host words over a run of weight
words, reads some back through ``host``/``host_response``, then announces the run on
``prefetch`` as two TMVs back to back and takes their words through ``matrix_en`` as fast as
``matrix_available`` allows, checking every word and logging the cycles they took.
"""

import random

import cocotb
from cocotb.triggers import FallingEdge, RisingEdge, with_timeout

from tern_fpga.sim.rtl.cocotb_support import (
    StreamDriver,
    StreamSink,
    current_cycle,
    start_clock_and_reset,
    test_config,
)


@cocotb.test()
async def host_then_matrix(dut):
    config = test_config()
    rng = random.Random(config["seed"])
    await start_clock_and_reset(dut)
    for _ in range(config["init_timeout"]):
        await RisingEdge(dut.clk)
        if int(dut.status.value) == 0:
            break
    else:
        raise AssertionError("status stayed non-zero: the SDRAM did not initialise")

    lanes, words, start = config["lanes"], config["words"], config["start"]
    address_bits = config["address_bits"]
    host = StreamDriver(dut, "host", probability=0.7, seed=rng.getrandbits(32))
    responses = StreamSink(dut, "host_response", probability=0.7, seed=rng.getrandbits(32))
    values = {start * lanes + index: rng.getrandbits(32) for index in range(words * lanes)}
    await with_timeout(host.send([address | value << address_bits | 1 << (address_bits + 32)
                                  for address, value in values.items()]), 2000, "us")
    dut._log.info("wrote %d host words", len(values))
    some = rng.sample(sorted(values), 24)
    for address in some:   # the host sends one read and waits for its answer, as the core does
        await host.send([address])
        (answer,) = await with_timeout(responses.receive(1), 100, "us")
        assert answer == values[address], (hex(address), hex(values[address]), hex(answer))

    # Two TMVs back to back: the second (which re-reads some of the first's words) is announced
    # as soon as the first's reads are all out, before the core has taken its words.
    runs = [(start, words - config["second_run"]),
            (start + config["second_offset"], config["second_run"])]
    order = [first + index for first, count in runs for index in range(count)]

    async def announce():
        for first, count in runs:
            dut.prefetch__payload.value = first | count << config["prefetch_word_bits"]
            dut.prefetch__valid.value = 1
            await RisingEdge(dut.clk)
            while not int(dut.prefetch__ready.value):
                await RisingEdge(dut.clk)
            await FallingEdge(dut.clk)
            dut.prefetch__valid.value = 0

    first_cycle = current_cycle()
    cocotb.start_soon(announce())
    received, taken_before = [], False
    for _ in range(config["matrix_timeout"]):
        await FallingEdge(dut.clk)
        if taken_before:
            received.append(int(dut.matrix_data.value))
        if len(received) == len(order):
            break
        taken_before = bool(int(dut.matrix_available.value))
        dut.matrix_en.value = int(taken_before)
    dut.matrix_en.value = 0
    assert len(received) == len(order), f"only {len(received)} of {len(order)} words came"
    for word_address, word in zip(order, received):
        expected = sum(values[word_address * lanes + lane] << (32 * lane)
                       for lane in range(lanes))
        assert word == expected, f"weight word {word_address}: {word:#x} != {expected:#x}"
    words = len(order)
    dut._log.info("tern-matrix words=%d beats=%d cycles=%d", words, config["beats"],
                  current_cycle() - first_cycle)
