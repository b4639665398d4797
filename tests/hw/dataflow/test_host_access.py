"""The host's access to the dataflow core (hw/dataflow/host_access.py, the core as a component
with CoreInterface's ports: hw/dataflow/core.py's CoreComponent), in Amaranth's simulator
on the micro preset: random 32-bit writes into every memory space read back in a random order
(the first and last word of each included; the tables' words as the parameters give them, a
write to them changing nothing), and a random program whose weights, program and constants the
host writes before a ``run`` beat, its results read back through the host equal to the golden
model's."""

import dataclasses
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from tern_fpga.contracts.isa import encode
from tern_fpga.contracts.params import PRESETS
from tern_fpga.contracts.protocol import MemorySpace, space_words, to_words
from tern_fpga.hw.dataflow.core import CoreComponent
from tern_fpga.hw.dataflow.host_access import HostAccess, Window, core_windows, table_words
from tern_fpga.quant.compiler import compile_model
from tern_fpga.sim.rtl.dataflow_core import core_contents

from support.dataflow_programs import compiled_norms, golden_for_program, random_program
from support.random_model import random_model

PARAMS = PRESETS["micro"]
SEGMENTS = 2


class _Host:
    """CoreInterface's memory requests and runs, as the protocol engine makes them."""

    def __init__(self, ctx, dut):
        self.ctx, self.dut = ctx, dut

    async def write(self, space, address, value):
        ctx, request = self.ctx, self.dut.memory_request
        ctx.set(request.payload, {"space": space, "address": address,
                                  "write_data": int(value), "write": 1})
        ctx.set(request.valid, 1)
        await ctx.tick().until(request.ready)
        ctx.set(request.valid, 0)

    async def read(self, space, address) -> int:
        ctx, request, response = self.ctx, self.dut.memory_request, self.dut.memory_response
        ctx.set(request.payload, {"space": space, "address": address, "write_data": 0,
                                  "write": 0})
        ctx.set(request.valid, 1)
        await ctx.tick().until(request.ready)
        ctx.set(request.valid, 0)
        ctx.set(response.ready, 1)
        (value,) = await ctx.tick().sample(response.payload).until(response.valid)
        ctx.set(response.ready, 0)
        return int(value)

    async def run(self, token, limit) -> int:
        ctx, dut = self.ctx, self.dut
        ctx.set(dut.run.payload, {"entry": 0, "token": token})
        ctx.set(dut.run.valid, 1)
        await ctx.tick().until(dut.run.ready)
        ctx.set(dut.run.valid, 0)
        ctx.set(dut.done.ready, 1)
        for _ in range(limit):
            _, _, done, token = await ctx.tick().sample(dut.done.valid, dut.done.payload)
            if done:
                ctx.set(dut.done.ready, 0)
                return int(token)
        raise AssertionError(f"no done within {limit} cycles")


def _simulate(dut, testbench):
    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(testbench)
    simulator.run()


def _small_core(rng, **contents):
    compiled = compile_model(random_model(3, layers=1), PARAMS)
    program, matrices = random_program(rng, PARAMS, 14, compiled_norms(compiled), tmv=0.3)
    golden = golden_for_program(rng, compiled, matrices, rows=6)
    contents = {**core_contents(golden, program, SEGMENTS), **contents}
    return golden, program, contents


def test_every_space_reads_back_what_the_host_wrote():
    rng = random.Random("host-access")
    _, _, contents = _small_core(rng)
    dut = CoreComponent(PARAMS, **contents, max_segments=SEGMENTS)
    windows = core_windows(PARAMS, weight_words=len(contents["weights"]))
    sizes = {space: window.depth * window.slices for space, window in windows.items()}
    tables = table_words(PARAMS)

    async def testbench(ctx):
        host, written = _Host(ctx, dut), {}
        for space, size in sizes.items():
            for address in {0, size - 1, *rng.sample(range(size), 24)}:
                value = rng.getrandbits(32)
                await host.write(space, address, value)
                written[space, address] = value
        await host.write(MemorySpace.TABLES, 3, 0x1234_5678)         # changes nothing
        reads = list(written.items())
        rng.shuffle(reads)
        for (space, address), value in reads:
            got = await host.read(space, address)
            assert got == value, f"{space.name} word {address}: {got:#x}, wrote {value:#x}"
        for address in (0, 3, len(tables) - 1, *rng.sample(range(len(tables)), 8)):
            assert await host.read(MemorySpace.TABLES, address) == tables[address]

    _simulate(dut, testbench)


def test_a_program_the_host_loads_runs_as_the_golden_model():
    rng = random.Random("host-program")
    golden, program, contents = _small_core(rng)
    weights, segmented = contents["weights"], contents["program"]
    constants = np.asarray(golden.constants, dtype=np.int64)
    # What the host loads starts as something else: zero weights, no program, wrong constants.
    dut = CoreComponent(PARAMS, **{**contents, "weights": np.zeros_like(weights), "program": (),
                                   "constants": constants[::-1].copy()},
                        max_segments=SEGMENTS)
    token = golden.token
    for instruction in program:
        golden.execute(instruction)
    written = sorted({instruction.dst + element for instruction in program
                      if instruction.opcode.name not in ("QUANT", "HALT")
                      for element in range(instruction.length)
                      if instruction.dst + element < PARAMS.vector_memory_words})

    async def testbench(ctx):
        host = _Host(ctx, dut)
        for space, words in ((MemorySpace.WEIGHTS, to_words(weights)),
                             (MemorySpace.PROGRAM, encode(segmented)),
                             (MemorySpace.CONSTANTS, to_words(constants))):
            for address, word in enumerate(words):
                await host.write(space, address, word)
        assert await host.run(token, limit=20_000) == golden.token
        for element in written:
            got = await host.read(MemorySpace.VECTOR, element)
            expected = int(golden.memory[element]) & 0xFFFF_FFFF
            assert got == expected, f"element {element}: {got:#x}, golden {expected:#x}"

    _simulate(dut, testbench)
    assert len(written) >= 64


def test_windows_refuse_shapes_that_do_not_take_host_words():
    for width in (48, 96):
        with pytest.raises(ValueError, match="power of two times 32"):
            Window(16, width)
    with pytest.raises(ValueError, match="granularity"):
        Window(16, 64, 24)
    with pytest.raises(ValueError, match="V >= 2"):
        core_windows(dataclasses.replace(PARAMS, vector_lanes=1))
    with pytest.raises(ValueError, match="no window for PROGRAM"):
        HostAccess(PARAMS, {space: window for space, window in core_windows(PARAMS).items()
                            if space != MemorySpace.PROGRAM})
    assert space_words(PARAMS)[MemorySpace.TABLES] == len(table_words(PARAMS))
