"""``NormReader`` (hw/dataflow/norm_reader.py) alone in Amaranth's simulator, before a real
``BankedMemory`` and a constants memory: random NORMs and QUANTs, ``go`` random, every stream
it drives consumed with random and long stalls. Each instruction's command (its constants read
from the memory), destination, activation command (buffers alternating, the segments of its
length) and scale register, and both passes' operand beats, in order, none lost; one ``read``
a beat."""

import random

import pytest
from amaranth.hdl import Module, unsigned
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from tern_fpga.contracts.isa import SCALE_REGISTERS, Opcode
from tern_fpga.contracts.params import PRESETS
from tern_fpga.contracts.segmented_layout import segments_for_inputs
from tern_fpga.hw.dataflow.matrix_pipe import activation_words
from tern_fpga.hw.dataflow.norm_reader import NormReader
from tern_fpga.hw.memory_banks import BankedMemory
from tern_fpga.hw.norm_quantizer import Operation
from tern_fpga.sim.rtl.cocotb_support import unpack_lanes

from support.streams import record_streams, send_all

PARAMS = PRESETS["demo"].replace(ternary_lanes=512)
LANES = PARAMS.vector_lanes
WORDS = PARAMS.vector_memory_words // LANES
BITS = PARAMS.vector_bits
SEGMENTS = 4


def _lanes(word: int) -> list[int]:
    return unpack_lanes(word, BITS, LANES)


@pytest.mark.parametrize("seed", range(2))
def test_reads_both_passes_and_announces_each_instruction(seed):
    rng = random.Random(f"norm-reader{seed}")
    memory_words = [rng.getrandbits(BITS * LANES) for _ in range(WORDS)]
    # Each constant fits every field it may land in (imm is random): an 8-bit signed exponent.
    constants = [rng.randrange(-128, 128) for _ in range(PARAMS.program_words)]
    work = PARAMS.vector_work_words // LANES
    instructions = []
    for _ in range(16):
        length = rng.choice([128, 512, rng.randrange(1, 300), rng.randrange(300, 1025)])
        opcode = rng.choice([Opcode.NORM, Opcode.QUANT])
        instructions.append({
            "opcode": opcode,             # QUANT's dst: a scale register
            "dst": rng.randrange(SCALE_REGISTERS) if opcode == Opcode.QUANT
            else LANES * rng.randrange(work - 130), "a": LANES * rng.randrange(work - 130),
            "b": LANES * rng.randrange(WORDS - 130), "length": length,
            "imm": rng.randrange(PARAMS.program_words - 3), "flags": 0})
    expected = {"command": [], "destination": [], "activation": [], "scale_register": [],
                "operands": []}
    buffer = 0
    for instruction in instructions:
        quant = instruction["opcode"] == Opcode.QUANT
        imm, length = instruction["imm"], instruction["length"]
        expected["command"].append((
            Operation.QUANT if quant else Operation.NORM, length,
            constants[imm] % (1 << 62), constants[imm + 1] % (1 << 16), constants[imm + 2]))
        expected["destination"].append((instruction["dst"] // LANES, length,
                                        int(not quant)))
        if quant:
            buffer ^= 1
            expected["activation"].append((
                buffer * activation_words(PARAMS, SEGMENTS),
                segments_for_inputs(length, PARAMS, SEGMENTS).bit_length() - 1, length))
            expected["scale_register"].append(instruction["dst"])
        for _ in range(2):
            for beat in range(-(-length // LANES)):
                expected["operands"].append((
                    _lanes(memory_words[instruction["a"] // LANES + beat]),
                    _lanes(memory_words[instruction["b"] // LANES + beat])))

    top = Module()
    top.submodules.reader = reader = NormReader(PARAMS, max_segments=SEGMENTS)
    memory = BankedMemory(top, "vector", BITS * LANES, [work, WORDS - work], [[0], [0, 1]],
                          granularity=BITS, init=memory_words)
    top.submodules.constants = table = Memory(shape=unsigned(64), depth=len(constants),
                                              init=[c & ((1 << 64) - 1) for c in constants])
    top.d.comb += reader.read_ports(memory.read[0], memory.read[1], table.read_port())
    seen = {}

    async def feed(ctx):
        await send_all(ctx, reader.instruction, instructions)

    async def consume(ctx):
        seen.update(await record_streams(ctx, rng, reader, {
            "command": lambda payload: (payload.operation, payload.length, payload.epsilon_term,
                                        payload.constant.mantissa, payload.constant.exponent),
            "destination": lambda payload: (payload.word, payload.length, payload.to_memory),
            "activation": lambda payload: (payload.start, payload.segments_log2,
                                           payload.length),
            "scale_register": lambda payload: payload,
            "operands": lambda payload: (list(payload.x), list(payload.weight)),
        }, {name: len(values) for name, values in expected.items()}, stalled=("operands",),
            limit=40_000))

    simulator = Simulator(top)
    simulator.add_clock(1e-8)
    simulator.add_testbench(feed, background=True)
    simulator.add_testbench(consume)
    simulator.run()
    for key, values in expected.items():
        assert seen[key] == values, key
    assert seen["reads"] == len(expected["operands"])
