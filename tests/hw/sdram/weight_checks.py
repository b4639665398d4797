"""cocotb test of SDRAMWeights on SDRAMController's sim variant (LiteDRAM's memory model),
run by test_sdram_weights.py.

Waits for ``status`` 0 (initialised), writes random 32-bit host words (an image of either
packing: random bytes, so base-3 ones include invalid bytes), reads some back through
``host``/``host_response``, sets the packing register and reads it back, then announces several
TMVs back to back on ``prefetch`` and takes their words through ``matrix_en`` as fast as
``matrix_available`` allows, checking every word against the golden unpacker
(``sdram_run_words``) and logging the SDRAM words and cycles they took.
"""

import random

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, with_timeout

from tern_fpga.contracts.sdram_image import PACKING_CODES, sdram_weight_run
from tern_fpga.sim.golden.base3 import sdram_run_words
from tern_fpga.sim.rtl.cocotb_support import (
    StreamDriver,
    StreamSink,
    announce_prefetches,
    await_memory_ready,
    current_cycle,
    start_clock_and_reset,
    test_config,
)


@cocotb.test()
async def host_then_matrix(dut):
    config = test_config()
    rng = random.Random(config["seed"])
    await start_clock_and_reset(dut)
    await await_memory_ready(dut, config["init_timeout"],
                             "status stayed non-zero: the SDRAM did not initialise")

    packing = config["packing"]
    address_bits = config["address_bits"]
    host = StreamDriver(dut, "host", probability=0.7, seed=rng.getrandbits(32))
    responses = StreamSink(dut, "host_response", probability=0.7, seed=rng.getrandbits(32))

    async def write(items):
        await with_timeout(host.send([address | value << address_bits | 1 << (address_bits + 32)
                                      for address, value in items]), 2000, "us")

    async def read(address):   # one read and its answer, as the core does
        await host.send([address])
        (answer,) = await with_timeout(responses.receive(1), 100, "us")
        return answer

    values = {address: rng.getrandbits(32) for address in range(config["image_words"])}
    await write(values.items())
    dut._log.info("wrote %d host words", len(values))
    for address in rng.sample(sorted(values), 24):
        answer = await read(address)
        assert answer == values[address], (hex(address), hex(values[address]), hex(answer))
    register = config["packing_address"]
    await write([(register, PACKING_CODES[packing] | 0xFFFF_FFFE)])   # only bit 0 counts
    assert await read(register) == PACKING_CODES[packing]

    # The TMVs back to back: each announced as soon as the one before has its reads out,
    # before the core has taken its words; some re-read the words of others.
    runs = config["runs"]
    sdram = np.zeros(2 * len(values), dtype=np.uint16)
    for address, value in values.items():
        sdram[2 * address], sdram[2 * address + 1] = value & 0xFFFF, value >> 16
    expected, beats = [], 0
    for start, count in runs:
        plan = sdram_weight_run(start, count, config["ternary_lanes"], packing)
        expected += sdram_run_words(sdram, *plan, count, config["ternary_lanes"], packing)
        beats += plan[1]

    first_cycle = current_cycle()
    cocotb.start_soon(announce_prefetches(dut, runs, config["prefetch_word_bits"]))
    received, taken_before = [], False
    for _ in range(config["matrix_timeout"]):
        await FallingEdge(dut.clk)
        if taken_before:
            received.append(int(dut.matrix_data.value))
        if len(received) == len(expected):
            break
        taken_before = bool(int(dut.matrix_available.value))
        dut.matrix_en.value = int(taken_before)
    dut.matrix_en.value = 0
    assert len(received) == len(expected), f"only {len(received)} of {len(expected)} words came"
    for index, (word, want) in enumerate(zip(received, expected)):
        assert word == want, f"weight word {index} of the runs: {word:#x} != {want:#x}"
    dut._log.info("tern-matrix packing=%s words=%d beats=%d cycles=%d", packing, len(expected),
                  beats, current_cycle() - first_cycle)
