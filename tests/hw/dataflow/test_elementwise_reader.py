"""``ElementwiseReader`` (hw/dataflow/elementwise_reader.py) alone in Amaranth's simulator, in
front of a real ``BankedMemory`` and an embedding memory: random instructions of every kind it
takes, ``go`` random, and every stream it drives consumed with random and long stalls. The
commands, destinations and operand beats must be each instruction's, in order, none lost or
doubled, and ``read`` must pulse once a beat."""

import random

import pytest
from amaranth.hdl import Module, unsigned
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from tern_fpga.contracts.isa import BINARY_OPERATIONS, OPERATION_OF_OPCODE, Opcode, RowOperation
from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.dataflow.elementwise_reader import ElementwiseReader
from tern_fpga.hw.memory_banks import BankedMemory
from tern_fpga.sim.rtl.cocotb_support import unpack_lanes

from support.streams import record_streams, send_all

PARAMS = PRESETS["micro"]
LANES = PARAMS.vector_lanes
WORDS = PARAMS.vector_memory_words // LANES
BITS = PARAMS.vector_bits
ROW = 4 * LANES
ROWS = 5
OPCODES = [Opcode.ZERO, Opcode.EMBED, Opcode.SIGMOID, Opcode.SILU, Opcode.ONE_MINUS,
           Opcode.MUL, Opcode.ADD, Opcode.SUB]


def _lanes(word: int, bits: int) -> list[int]:
    return unpack_lanes(word, bits, LANES)


@pytest.mark.parametrize("seed", range(3))
def test_reads_each_instructions_beats_in_order_under_stalls(seed):
    rng = random.Random(f"elementwise-reader{seed}")
    memory_words = [rng.getrandbits(BITS * LANES) for _ in range(WORDS)]
    embedding_words = [rng.getrandbits(16 * LANES) for _ in range(ROWS * ROW // LANES)]
    token = rng.randrange(ROWS)
    work = PARAMS.vector_work_words
    instructions = []
    for _ in range(30):
        opcode = rng.choice(OPCODES)
        length = ROW if opcode == Opcode.EMBED else rng.randrange(1, 6 * LANES)
        instructions.append({
            "opcode": opcode, "dst": LANES * rng.randrange(work // LANES - 6),
            "a": LANES * rng.randrange(work // LANES - 6),
            "b": LANES * rng.randrange(WORDS - 6), "length": length,
            "imm": rng.randrange(BITS - 16 + 1), "flags": 0})

    expected = {"command": [], "destination": [], "a": [], "b": []}
    for instruction in instructions:
        opcode, length = instruction["opcode"], instruction["length"]
        operation = OPERATION_OF_OPCODE.get(opcode, RowOperation.EMBED)
        expected["command"].append((operation, length,
                                    instruction["imm"] if opcode == Opcode.EMBED else 0))
        expected["destination"].append((instruction["dst"] // LANES, length, 1))
        for beat in range(-(-length // LANES)):
            if opcode == Opcode.ZERO:
                expected["a"].append([0] * LANES)
            elif opcode == Opcode.EMBED:
                expected["a"].append(_lanes(
                    embedding_words[token * length // LANES + beat], 16))
            else:
                expected["a"].append(_lanes(memory_words[instruction["a"] // LANES + beat],
                                            BITS))
            if operation in BINARY_OPERATIONS and opcode != Opcode.EMBED:
                expected["b"].append(_lanes(memory_words[instruction["b"] // LANES + beat],
                                            BITS))
    top = Module()
    top.submodules.reader = reader = ElementwiseReader(PARAMS)
    banks = [work // LANES, WORDS - work // LANES]
    memory = BankedMemory(top, "vector", BITS * LANES, banks, [[0], [0, 1]],
                          granularity=BITS, init=memory_words)
    top.submodules.embeddings = table = Memory(shape=unsigned(16 * LANES),
                                               depth=len(embedding_words), init=embedding_words)
    row = table.read_port()
    top.d.comb += [
        reader.token.eq(token),
        *reader.read_ports(memory.read[0], memory.read[1], row),
    ]
    seen = {}

    async def feed(ctx):
        await send_all(ctx, reader.instruction, instructions)

    async def consume(ctx):
        # The unit takes ``b`` with ``a`` for a binary operation only; here each on its own.
        seen.update(await record_streams(ctx, rng, reader, {
            "command": lambda command: (command.operation, command.length, command.shift),
            "destination": lambda destination: (destination.word, destination.length,
                                                destination.to_memory),
            "a": list, "b": list,
        }, {name: len(values) for name, values in expected.items()}, stalled=("a", "b"),
            limit=20_000))

    simulator = Simulator(top)
    simulator.add_clock(1e-8)
    simulator.add_testbench(feed, background=True)
    simulator.add_testbench(consume)
    simulator.run()

    assert seen["command"] == expected["command"]
    assert seen["destination"] == expected["destination"]
    assert seen["a"] == expected["a"]
    assert seen["b"] == expected["b"]
    assert seen["reads"] == len(expected["a"])
