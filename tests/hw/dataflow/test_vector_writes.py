# amaranth: UnusedElaboratable=no
"""The vector memory's write side (hw/dataflow/vector_writes.py) in Amaranth's simulator:
``WriteArbiter`` in front of a real ``BankedMemory`` (the core's work and constants banks),
three sources writing random words with random gaps, each source rewriting some of its own
words (so its order matters); ``ResultWriter`` turning a unit's result beats into addressed
writes (the lanes past each command's length masked) and passing QUANT's beats on, with random stalls on every stream. Checked against
``sim.golden.vector_writes.arbitrated_memory`` and the handshakes beat by beat."""

import itertools
import random

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.dataflow.vector_writes import ResultWriter, WriteArbiter
from tern_fpga.hw.memory_banks import BankedMemory
from tern_fpga.sim.golden.vector_writes import arbitrated_memory
from tern_fpga.sim.rtl.cocotb_support import pack_lanes, unpack_lanes

from support.memory_ports import read_back

PARAMS = PRESETS["demo"]
LANES = PARAMS.vector_lanes
WORDS = PARAMS.vector_memory_words // LANES


def _word_bits(values) -> int:
    return pack_lanes(values, PARAMS.vector_bits)


def _lanes(word: int) -> list[int]:
    return unpack_lanes(word, PARAMS.vector_bits, LANES)


def _random_writes(rng, count, addresses):
    """``count`` writes over ``addresses`` (some written twice), random data and masks."""
    writes = []
    for _ in range(count):
        values = [rng.randrange(-2**31, 2**31) for _ in range(LANES)]
        mask = rng.choice([(1 << LANES) - 1, rng.randrange(1, 1 << LANES)])
        writes.append((rng.choice(addresses), values, mask))
    return writes


def _arbiter_top(old):
    """The arbiter driving the work and constants banks as the core has them, and a read
    port that reads both."""
    arbiter = WriteArbiter(PARAMS, sources=3)
    top = Module()
    top.submodules.arbiter = arbiter
    work = PARAMS.vector_work_words // LANES
    memory = BankedMemory(top, "vector", PARAMS.vector_bits * LANES, [work, WORDS - work],
                          [[0, 1]], granularity=PARAMS.vector_bits,
                          init=[_word_bits(row) for row in old])
    top.d.comb += [memory.write.addr.eq(arbiter.write_addr),
                   memory.write.data.eq(arbiter.write_data),
                   memory.write.en.eq(arbiter.write_en)]
    return top, arbiter, memory.read[0]


@pytest.mark.parametrize("seed", range(3))
def test_three_sources_write_the_memory_in_their_order(seed):
    rng = random.Random(f"arbiter{seed}")
    old = np.array([[rng.randrange(-2**31, 2**31) for _ in range(LANES)] for _ in range(WORDS)])
    words = rng.sample(range(WORDS), 90)          # disjoint words a source; both banks
    sources = [_random_writes(rng, 40, words[index::3]) for index in range(3)]
    gap = [rng.choice([0.0, 0.3, 0.7]) for _ in range(3)]
    top, arbiter, read = _arbiter_top(old)
    handshakes, pulses, memory = [], [], []

    def feeder(index):
        async def process(ctx):
            port = arbiter.source[index]
            for address, values, mask in sources[index]:
                while rng.random() < gap[index]:
                    await ctx.tick()
                ctx.set(port.payload, {"address": address, "data": values, "mask": mask})
                ctx.set(port.valid, 1)
                await ctx.tick().until(port.ready)
                ctx.set(port.valid, 0)
        return process

    async def monitor(ctx):
        signals = [arbiter.written] + [arbiter.source[index].valid for index in range(3)] + \
            [arbiter.source[index].ready for index in range(3)]
        async for _, _, written, *rest in ctx.tick().sample(*signals):
            valid, ready = rest[:3], rest[3:]
            handshakes.append([v and r for v, r in zip(valid, ready)])
            pulses.append(written)

    async def reader(ctx):
        while len([bit for cycle in pulses for bit in range(3) if cycle >> bit & 1]) < 120:
            await ctx.tick()
        await ctx.tick()
        memory.extend(await read_back(ctx, read, WORDS, _lanes))

    simulator = Simulator(top)
    simulator.add_clock(1e-8)
    for index in range(3):
        simulator.add_testbench(feeder(index), background=True)
    simulator.add_process(monitor)
    simulator.add_testbench(reader)
    simulator.run()

    assert np.array_equal(np.array(memory), arbitrated_memory(old, sources))
    # One write a cycle, each the pulse of the source whose word was taken the cycle before.
    assert all(sum(cycle) <= 1 for cycle in handshakes)
    taken = [sum(bit << index for index, bit in enumerate(cycle)) for cycle in handshakes]
    assert pulses[1:] == taken[:-1]
    assert [sum(pulse >> index & 1 for pulse in pulses) for index in range(3)] == [40, 40, 40]


def test_sources_that_keep_asking_take_turns():
    top, arbiter, _ = _arbiter_top(np.zeros((WORDS, LANES), dtype=np.int64))
    asks, grants = [], []

    async def bench(ctx):
        for index in range(3):
            ctx.set(arbiter.source[index].payload, {"address": index, "data": [index] * LANES,
                                                    "mask": 1})
        resting = 0       # source 2 rests this many cycles after each write, then holds valid
        for _ in range(40):
            asking = [1, 1, int(resting == 0)]
            for index in range(3):
                ctx.set(arbiter.source[index].valid, asking[index])
            await ctx.delay(1e-9)
            granted = [ctx.get(arbiter.source[index].ready) for index in range(3)]
            asks.append(asking)
            grants.append(granted)
            resting = 2 if granted[2] else max(resting - 1, 0)
            await ctx.tick()

    simulator = Simulator(top)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    assert all(sum(granted) == 1 for granted in grants)
    order = [granted.index(1) for granted in grants]
    # Never the same source twice in a row while another asks; a source that asks is served
    # within 3 cycles (it waits for at most the two others).
    assert all(first != second for first, second in itertools.pairwise(order))
    for index in range(3):
        waiting = 0
        for asking, granted in zip(asks, grants):
            waiting = 0 if granted[index] or not asking[index] else waiting + 1
            assert waiting <= 2
    assert order.count(2) >= 8


def test_refuses_no_sources():
    with pytest.raises(ValueError, match="at least one source"):
        WriteArbiter(PARAMS, sources=0)
    with pytest.raises(ValueError, match="at least 1 entry"):
        ResultWriter(PARAMS, commands=0)


@pytest.mark.parametrize("seed", range(3))
def test_result_writer_addresses_each_commands_beats(seed):
    rng = random.Random(f"result-writer{seed}")
    commands = []
    for _ in range(30):
        length = rng.randrange(1, 6 * LANES)
        beats = -(-length // LANES)
        commands.append({
            "word": rng.randrange(WORDS - beats), "to_memory": rng.random() < 0.7,
            "length": length,
            "beats": [([rng.randrange(-2**31, 2**31) for _ in range(LANES)],
                       (1 << LANES) - 1 if (beat + 1) * LANES <= length
                       else (1 << (length % LANES)) - 1) for beat in range(beats)]})
    writer = ResultWriter(PARAMS, commands=4)
    writes, passed = [], []

    async def destinations(ctx):
        for command in commands:
            while rng.random() < 0.3:
                await ctx.tick()
            ctx.set(writer.destination.payload, {"word": command["word"],
                                                  "length": command["length"],
                                                  "to_memory": command["to_memory"]})
            ctx.set(writer.destination.valid, 1)
            await ctx.tick().until(writer.destination.ready)
            ctx.set(writer.destination.valid, 0)

    async def results(ctx):
        for command in commands:
            for values, _ in command["beats"]:
                while rng.random() < 0.3:
                    await ctx.tick()
                ctx.set(writer.result.payload, values)
                ctx.set(writer.result.valid, 1)
                await ctx.tick().until(writer.result.ready)
                ctx.set(writer.result.valid, 0)

    async def sinks(ctx):
        total = sum(len(command["beats"]) for command in commands)
        while len(writes) + len(passed) < total:
            ctx.set(writer.write.ready, rng.random() < 0.7)
            ctx.set(writer.passed.ready, rng.random() < 0.7)
            _, _, write_valid, write_ready, write, pass_valid, pass_ready, beat = \
                await ctx.tick().sample(writer.write.valid, writer.write.ready,
                                        writer.write.payload, writer.passed.valid,
                                        writer.passed.ready, writer.passed.payload)
            if write_valid and write_ready:
                writes.append((write.address, list(write.data), write.mask))
            if pass_valid and pass_ready:
                passed.append((list(beat.data), beat.mask, beat.last))

    simulator = Simulator(writer)
    simulator.add_clock(1e-8)
    simulator.add_testbench(destinations, background=True)
    simulator.add_testbench(results, background=True)
    simulator.add_testbench(sinks)
    simulator.run()
    assert writes == [(command["word"] + beat, values, mask) for command in commands
                      if command["to_memory"]
                      for beat, (values, mask) in enumerate(command["beats"])]
    assert passed == [(values, mask, beat == len(command["beats"]) - 1) for command in commands
                      if not command["to_memory"]
                      for beat, (values, mask) in enumerate(command["beats"])]
