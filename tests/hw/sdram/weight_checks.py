"""cocotb test of SDRAMWeights on SDRAMController's sim variant (LiteDRAM's memory model),
run by test_sdram_weights.py.

Waits for ``status`` 0 (initialised), writes random 32-bit host words over a run of weight
words, reads some back through ``host``/``host_response``, then announces the run on
``prefetch`` and takes its words through ``matrix_en`` as fast as ``matrix_available`` allows,
checking every word and logging the cycles they took.
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

    dut.prefetch__payload.value = start | words << config["prefetch_word_bits"]
    dut.prefetch__valid.value = 1
    await RisingEdge(dut.clk)
    while not int(dut.prefetch__ready.value):
        await RisingEdge(dut.clk)
    first_cycle = current_cycle()
    await FallingEdge(dut.clk)
    dut.prefetch__valid.value = 0
    received, taken_before = [], False
    for _ in range(config["matrix_timeout"]):
        await FallingEdge(dut.clk)
        if taken_before:
            received.append(int(dut.matrix_data.value))
        if len(received) == words:
            break
        taken_before = bool(int(dut.matrix_available.value)) and \
            len(received) + 1 <= words
        dut.matrix_en.value = int(taken_before)
    dut.matrix_en.value = 0
    assert len(received) == words, f"only {len(received)} of {words} words came"
    for index, word in enumerate(received):
        expected = sum(values[(start + index) * lanes + lane] << (32 * lane)
                       for lane in range(lanes))
        assert word == expected, f"weight word {start + index}: {word:#x} != {expected:#x}"
    dut._log.info("tern-matrix words=%d beats=%d cycles=%d", words, config["beats"],
                  current_cycle() - first_cycle)
