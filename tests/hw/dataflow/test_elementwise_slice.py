"""The element-wise slice of the dataflow core in Amaranth's simulator: the scoreboard issuing a
random element-wise program (ZERO, EMBED and every row operation over the compiler's kind of
regions, operand ``b`` from the constants bank too) to ``ElementwiseReader``, ``ElementwiseUnit``,
``ResultWriter`` and ``WriteArbiter`` around a real ``BankedMemory`` and an embedding memory.
The two other writers of the core keep the one write port busy with words of their own. The
vector memory afterwards must equal the golden model's (``GoldenModel.execute``, the program in
order, and those words) element for element: every hazard the scoreboard resolves is on real
values here."""

import random

import numpy as np
import pytest
from amaranth.hdl import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from tern_fpga.contracts.isa import Instruction, Opcode
from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.dataflow.elementwise import ElementwiseUnit
from tern_fpga.hw.dataflow.elementwise_reader import ElementwiseReader
from tern_fpga.hw.dataflow.scoreboard import Scoreboard
from tern_fpga.hw.dataflow.vector_writes import ResultWriter, WriteArbiter
from tern_fpga.hw.memory_banks import BankedMemory
from tern_fpga.quant.compiler import compile_model
from tern_fpga.sim.golden.model import GoldenModel
from tern_fpga.sim.golden.vector_writes import arbitrated_memory

from support.memory_ports import read_back
from support.random_model import random_model

PARAMS = PRESETS["micro"]
LANES = PARAMS.vector_lanes
WORDS = PARAMS.vector_memory_words // LANES
BITS = PARAMS.vector_bits
ROW = 4 * LANES           # EMBED's length: an embedding row
ROWS = 6
OPERATIONS = [Opcode.ZERO, Opcode.EMBED, Opcode.SIGMOID, Opcode.SILU, Opcode.ONE_MINUS,
              Opcode.MUL, Opcode.ADD, Opcode.SUB]


def _program(rng, count):
    """``count`` element-wise instructions over regions of 4 and 2 words in the work bank
    (and, for ``b``, 4-word regions of constants), each range a whole region."""
    work = PARAMS.vector_work_words
    big = [index * ROW for index in range(8)]
    small = [8 * ROW + index * 2 * LANES for index in range(6)]
    constants = [work + index * ROW for index in range(3)]
    program = []
    for _ in range(count):
        opcode = rng.choice(OPERATIONS)
        if opcode == Opcode.EMBED:
            program.append(Instruction(opcode, dst=rng.choice(big), length=ROW,
                                       imm=rng.randrange(0, BITS - PARAMS.embedding_bits + 1)))
            continue
        regions = rng.choice([big, small])
        words = 4 if regions is big else 2
        length = rng.choice([words * LANES, rng.randrange((words - 1) * LANES + 1,
                                                          words * LANES + 1)])
        a = rng.choice(regions)
        b = rng.choice(constants if regions is big and rng.random() < 0.3 else regions)
        dst = rng.choice([a, b if b < work else a, rng.choice(regions)])
        program.append(Instruction(opcode, dst=dst, a=a, b=b, length=length))
    return program


def _word(values) -> int:
    return sum((int(value) & ((1 << BITS) - 1)) << (BITS * lane) for lane, value in enumerate(values))


def _values(word: int) -> list[int]:
    lanes = [(word >> (BITS * lane)) & ((1 << BITS) - 1) for lane in range(LANES)]
    return [value - (1 << BITS) if value >> (BITS - 1) else value for value in lanes]


def _slice(memory_init, embeddings, token):
    """The slice wired as the core will be; returns the top, the scoreboard and a read port."""
    top = Module()
    top.submodules.scoreboard = scoreboard = Scoreboard(PARAMS, slots=4)
    top.submodules.reader = reader = ElementwiseReader(PARAMS)
    top.submodules.unit = unit = ElementwiseUnit(PARAMS)
    top.submodules.writer = writer = ResultWriter(PARAMS, commands=16)
    top.submodules.arbiter = arbiter = WriteArbiter(PARAMS, sources=3)
    work = PARAMS.vector_work_words // LANES
    memory = BankedMemory(top, "vector", BITS * LANES, [work, WORDS - work],
                          [[0], [0, 1], [0, 1]], granularity=BITS,
                          init=[_word(memory_init[index * LANES:(index + 1) * LANES])
                                for index in range(WORDS)])
    top.submodules.embeddings = table = Memory(
        shape=unsigned(LANES * PARAMS.embedding_bits), depth=ROWS * ROW // LANES,
        init=[sum((int(value) & 0xFFFF) << (16 * lane) for lane, value in
                  enumerate(embeddings.reshape(-1)[index * LANES:(index + 1) * LANES]))
              for index in range(ROWS * ROW // LANES)])
    row = table.read_port()
    port = scoreboard.elementwise
    top.d.comb += [
        reader.instruction.valid.eq(port.command.valid),
        reader.instruction.payload.eq(port.command.payload),
        port.command.ready.eq(reader.instruction.ready),
        reader.go.eq(port.go), port.read.eq(reader.read), port.write.eq(arbiter.written[1]),
        reader.token.eq(token),
        *reader.read_ports(memory.read[0], memory.read[1], row),
        memory.write.addr.eq(arbiter.write_addr), memory.write.data.eq(arbiter.write_data),
        memory.write.en.eq(arbiter.write_en),
        writer.passed.ready.eq(1),
    ]
    wiring.connect(top, reader.command, unit.command)
    wiring.connect(top, reader.a, unit.a)
    wiring.connect(top, reader.b, unit.b)
    wiring.connect(top, reader.destination, writer.destination)
    top.d.comb += [writer.result.valid.eq(unit.result.valid),
                   writer.result.payload.eq(unit.result.payload.data),
                   unit.result.ready.eq(writer.result.ready)]
    wiring.connect(top, writer.write, arbiter.source[1])
    return top, scoreboard, arbiter, memory.read[2]


@pytest.mark.parametrize("seed", range(3))
def test_random_elementwise_programs_leave_the_golden_models_memory(seed):
    rng = random.Random(f"elementwise-slice{seed}")
    program = _program(rng, 40)
    golden = GoldenModel(PARAMS, compile_model(random_model(3, layers=1), PARAMS).sections())
    golden.memory = np.array([rng.randrange(-2**31, 2**31) for _ in range(WORDS * LANES)],
                             dtype=np.int64)
    # Values the sigmoid and the products see in their interesting ranges too.
    golden.memory[:PARAMS.vector_work_words] >>= rng.choice([0, 12, 15])
    embeddings = np.array([[rng.randrange(-2**15, 2**15) for _ in range(ROW)]
                           for _ in range(ROWS)], dtype=np.int64)
    golden.embeddings = embeddings
    golden.token = token = rng.randrange(ROWS)
    top, scoreboard, arbiter, read = _slice(golden.memory.copy(), embeddings, token)
    for instruction in program:
        golden.execute(instruction)
    # The two other writers of the core (the matrix pipe, the norm unit) keep the one write
    # port busy with words of their own, so the element-wise unit's results wait for it and
    # its back-pressure reaches the reader.
    others = {source: [(word, [rng.randrange(-2**31, 2**31) for _ in range(LANES)],
                        rng.randrange(1, 1 << LANES))
                       for word in rng.choices(range(first, first + 50), k=400)]
              for source, first in ((0, 100), (2, 150))}
    golden.memory = arbitrated_memory(golden.memory.reshape(WORDS, LANES),
                                      [others[0], others[2]]).reshape(-1)
    memory, cycles, finished = [], [], []

    def other_writer(source):
        async def process(ctx):
            port = arbiter.source[source]
            for address, values, mask in others[source]:
                while rng.random() < 0.05:
                    await ctx.tick()
                ctx.set(port.payload, {"address": address, "data": values, "mask": mask})
                ctx.set(port.valid, 1)
                await ctx.tick().until(port.ready)
                ctx.set(port.valid, 0)
            finished.append(source)
        return process

    async def bench(ctx):
        count = 0
        for instruction in program:
            ctx.set(scoreboard.instruction.payload, {
                "opcode": instruction.opcode, "dst": instruction.dst, "a": instruction.a,
                "b": instruction.b, "length": instruction.length, "imm": instruction.imm,
                "flags": int(instruction.flags)})
            ctx.set(scoreboard.instruction.valid, 1)
            await ctx.tick().until(scoreboard.instruction.ready)
            count += 1
        ctx.set(scoreboard.instruction.valid, 0)
        await ctx.tick()
        for _ in range(5000):
            if ctx.get(scoreboard.idle):
                break
            await ctx.tick()
            count += 1
        cycles.append(count)
        while len(finished) < 2:
            await ctx.tick()
        await ctx.tick()
        for values in await read_back(ctx, read, WORDS, _values):
            memory.extend(values)

    simulator = Simulator(top)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    for source in others:
        simulator.add_testbench(other_writer(source), background=True)
    simulator.run()
    assert cycles[0] < 5000 + len(program), "the program did not finish: a deadlock"
    differing = np.flatnonzero(np.array(memory) != golden.memory)
    assert differing.size == 0, (
        f"{differing.size} elements differ from the golden model's, the first at "
        f"{differing[0]}: {memory[differing[0]]} against {golden.memory[differing[0]]}")
    # Work overlapped: fewer cycles than one instruction at a time through the 14 stages.
    beats = sum(-(-instruction.length // LANES) for instruction in program)
    assert cycles[0] < beats + 14 * len(program)
