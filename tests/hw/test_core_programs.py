"""The core on random programs (not the compiler's): bit-exact with the golden model running the
same program, and in the cycles the cycle model counts.

The whole-model test (``test_core.py``) runs the compiler's programs, which never let a QUANT
read the TMV before it, never issue NO_WRITE, and always quantise a whole input. These random
programs do: QUANTs of two lengths, a TMV's result read by the next instruction through operand
``a`` or ``b``, NO_WRITE and ARGMAX TMVs back to back, scale registers 0-3, and the row and norm
instructions between them (EMBEDs only before the first ARGMAX: ``docs/isa.md``). The core runs
in Amaranth's own simulator (a few seconds a program at the micro preset), loaded through its
host memory interface as the protocol engine loads it.
"""

import math
import random
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.sim import Simulator

from tern_fpga.contracts import numerics
from tern_fpga.contracts.isa import SCALE_REGISTERS, Flag, Instruction, Opcode, encode
from tern_fpga.contracts.params import preset
from tern_fpga.contracts.protocol import MemorySpace, to_words
from tern_fpga.contracts.weight_layout import pack_weight_image
from tern_fpga.explore.cycle_model import cycles_per_token
from tern_fpga.hw.core import Core
from tern_fpga.hw.core_interface import memory_request_layout
from tern_fpga.sim.golden.model import GoldenModel

PARAMS = preset("micro")
FEATURES = 2 * PARAMS.ternary_lanes        # a TMV reads one or two weight words a row
WORK = 512                                 # vector elements the programs compute in
NORM_WEIGHTS = 1024                        # one norm weight vector (operand b)
ROWS = 128                                 # of each matrix: TMVs long enough that a
                                           # QUANT refilling their buffer would show
EMBEDDINGS = ROWS                          # an ARGMAX picks the embedding row


def _norm_constants(length: int) -> list[int]:
    """eps term, scale mantissa and exponent as the compiler would give a NORM or QUANT."""
    fraction = PARAMS.sum_of_squares_frac_bits
    scale = numerics.scale_from_float(math.sqrt(length) * 2.0 ** (fraction / 2) * 0.01, PARAMS)
    return [max(round(1e-5 * length * 2.0 ** fraction), 1), scale.mantissa, scale.exponent]


class _Program:
    """A random program over WORK elements, a norm weight vector and two matrices (FEATURES
    columns, the second zero past column FEATURES // 2 for TMVs after a short QUANT)."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.instructions: list[Instruction] = []
        self.constants: list[int] = []
        self.quantised = 0           # the last QUANT's length
        self.last_written = None     # (dst, length) of the last TMV that wrote
        self.argmax = False          # an ARGMAX TMV ran: no EMBED after it (docs/isa.md)

    def address(self, length: int) -> int:
        if self.last_written and self.rng.random() < 0.3:     # read the last TMV's result
            start, written = self.last_written
            return start + 2 * self.rng.randrange(max(written - length, 0) // 2 + 1)
        return 2 * self.rng.randrange((WORK - length) // 2)

    def destination(self, length: int, *sources: int) -> int:
        """``dst`` equal to a source or clear of all of them (the ISA has no partial overlap)."""
        candidates = [s for s in sources if self.rng.random() < 0.3]
        while True:
            dst = candidates.pop() if candidates else 2 * self.rng.randrange((WORK - length) // 2)
            if all(dst == s or dst + length <= s or s + length <= dst for s in sources):
                return dst

    def quant(self):
        length = self.rng.choice([FEATURES // 2, FEATURES])
        a = self.address(length)
        b = self.rng.choice([NORM_WEIGHTS, self.address(length)])
        self.instructions.append(Instruction(
            Opcode.QUANT, dst=self.rng.randrange(SCALE_REGISTERS), a=a, b=b, length=length,
            imm=len(self.constants)))
        self.constants += _norm_constants(length)
        self.quantised = length

    def tmv(self):
        rows = 2 * self.rng.randrange(1, ROWS // 2 + 1)
        beats = self.rng.choice([1, 2]) if self.quantised == FEATURES else 1
        if self.quantised < FEATURES and self.rng.random() < 0.5:
            beats = 2                # the second matrix: zero weights past the short QUANT
        flags = self.rng.choice([0, 0, Flag.ARGMAX, Flag.NO_WRITE, Flag.ARGMAX | Flag.NO_WRITE])
        # One-word rows: the narrow matrix; two-word rows: the full one, or after a short QUANT
        # the one with zero weights past it.
        word = 2 * ROWS if beats == 1 else 0 if self.quantised == FEATURES else 3 * ROWS
        dst = self.destination(rows)
        self.instructions.append(Instruction(Opcode.TMV, dst=dst, a=beats,
                                             b=self.rng.randrange(SCALE_REGISTERS), length=rows,
                                             imm=word, flags=int(flags)))
        if not flags & Flag.NO_WRITE:
            self.last_written = (dst, rows)
        self.argmax |= bool(flags & Flag.ARGMAX)

    def other(self):
        length = 2 * self.rng.randrange(1, FEATURES // 2 + 1)
        kind = self.rng.choice([Opcode.ADD, Opcode.NORM, Opcode.ZERO, Opcode.SIGMOID,
                                Opcode.EMBED])
        if kind == Opcode.EMBED and self.argmax:
            kind = Opcode.ZERO
        a, b = self.address(length), self.address(length)
        if kind == Opcode.ADD:
            ins = Instruction(kind, dst=self.destination(length, a, b), a=a, b=b, length=length)
        elif kind == Opcode.NORM:
            ins = Instruction(kind, dst=self.destination(length, a), a=a, b=NORM_WEIGHTS,
                              length=length, imm=len(self.constants))
            self.constants += _norm_constants(length)
        elif kind == Opcode.SIGMOID:
            ins = Instruction(kind, dst=self.destination(length, a), a=a, length=length)
        elif kind == Opcode.ZERO:
            ins = Instruction(kind, dst=self.destination(length), length=length)
        else:
            ins = Instruction(kind, dst=self.destination(FEATURES), length=FEATURES,
                              imm=self.rng.randrange(3))
        self.instructions.append(ins)

    def generate(self, count: int) -> list[Instruction]:
        self.quant()
        for _ in range(count):
            step = self.rng.choice([self.quant, self.tmv, self.tmv, self.other])
            step()
            if step == self.tmv and self.rng.random() < 0.5:   # a QUANT beside it, or not
                self.quant()
                if self.rng.random() < 0.4:                     # and one that must wait
                    self.quant()
        return self.instructions + [Instruction(Opcode.HALT)]


def _sections(seed: int, program: list[Instruction], constants: list[int]) -> dict:
    rng = np.random.default_rng(seed)
    vector = np.zeros(NORM_WEIGHTS + FEATURES, np.int64)
    vector[:WORK] = rng.integers(-(1 << 17), 1 << 17, WORK)
    vector[NORM_WEIGHTS:] = rng.integers(1 << 15, 1 << 17, FEATURES)
    half = rng.integers(-1, 2, (ROWS, FEATURES)).astype(np.int8)
    half[:, FEATURES // 2:] = 0
    matrices = [rng.integers(-1, 2, (ROWS, FEATURES)).astype(np.int8),        # word 0
                rng.integers(-1, 2, (ROWS, FEATURES // 2)).astype(np.int8),   # ROWS * 2
                half]                                                         # ROWS * 3
    return {"program": encode(program), "entry_points": np.array([len(program) - 1, 0]),
            "weights": pack_weight_image(matrices, PARAMS),
            "vector_init": vector.astype(np.int32), "constants": np.array(constants, np.int64),
            "embeddings": rng.integers(-1000, 1000, (EMBEDDINGS, FEATURES)).astype(np.int16)}


def _run_core(sections: dict, runs: int) -> dict:
    """Load the memories through the host interface, run the program ``runs`` times."""
    core = Core(PARAMS)
    layout = memory_request_layout(PARAMS)
    result = {"tokens": [], "cycles": []}

    async def testbench(ctx):
        async def access(space, address, value=0, write=True):
            ctx.set(core.memory_request.payload, layout.const(
                {"space": space, "address": address, "write_data": int(value), "write": write}))
            ctx.set(core.memory_request.valid, 1)
            while True:
                taken = ctx.get(core.memory_request.ready)
                await ctx.tick()
                if taken:
                    break
            ctx.set(core.memory_request.valid, 0)
            if not write:
                ctx.set(core.memory_response.ready, 1)
                while not ctx.get(core.memory_response.valid):
                    await ctx.tick()
                value = ctx.get(core.memory_response.payload)
                await ctx.tick()
                ctx.set(core.memory_response.ready, 0)
                return value

        for space, name in ((MemorySpace.PROGRAM, "program"),
                            (MemorySpace.CONSTANTS, "constants"),
                            (MemorySpace.VECTOR, "vector_init"), (MemorySpace.WEIGHTS, "weights"),
                            (MemorySpace.EMBEDDING, "embeddings")):
            for address, word in enumerate(to_words(sections[name]).tolist()):
                await access(space, address, word)
        for _ in range(runs):
            start = ctx.get(core.cycles)
            ctx.set(core.run.payload, {"entry": 0, "token": 3})
            ctx.set(core.run.valid, 1)
            await ctx.tick()
            ctx.set(core.run.valid, 0)
            while not ctx.get(core.done.valid):
                await ctx.tick()
            result["tokens"].append(ctx.get(core.done.payload))
            result["cycles"].append(ctx.get(core.cycles) - start)
            ctx.set(core.done.ready, 1)
            await ctx.tick()
            ctx.set(core.done.ready, 0)
        words = [await access(MemorySpace.VECTOR, address, write=False) for address in range(WORK)]
        result["vector"] = np.array(words, np.uint32).view(np.int32)

    simulator = Simulator(core)
    simulator.add_clock(1e-8)
    simulator.add_testbench(testbench)
    simulator.run()
    return result


@pytest.mark.parametrize("seed", range(10))
def test_random_program_is_bit_exact_and_modelled(seed):
    generator = _Program(seed)
    program = generator.generate(8)
    sections = _sections(seed, program, generator.constants or [0, 0, 0])
    golden = GoldenModel(PARAMS, sections)   # its reset entry is the HALT: nothing runs
    tokens = []
    for _ in range(2):                       # twice: the second run starts from the first's state
        golden.token = 3
        golden.run(0)
        tokens.append(golden.token)
    got = _run_core(sections, runs=2)
    text = "\n".join(ins.text() for ins in program)
    assert got["tokens"] == tokens, text
    np.testing.assert_array_equal(got["vector"], golden.memory[:WORK], err_msg=text)
    compiled = SimpleNamespace(params=PARAMS, program=program, entry_points={"step": 0})
    assert got["cycles"] == [cycles_per_token(compiled)] * 2, text
