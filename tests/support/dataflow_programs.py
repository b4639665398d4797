"""Random programs for the dataflow core's tests (the vector slice, the whole core), over the
compiler's kind of regions (``docs/isa.md``: every two vector ranges are the same words or share
none), on ``micro``-sized vectors (``sim/rtl/dataflow_core.run_program`` runs one through the
core)."""

from __future__ import annotations

import dataclasses

import numpy as np

from tern_fpga.contracts.isa import Flag, Instruction, Opcode
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.contracts.weight_layout import pack_weight_image
from tern_fpga.sim.golden.model import GoldenModel
from tern_fpga.sim.golden.run_plan import step_instructions

D = 64                 # the model's width: NORM's and QUANT's long length, EMBED's row
SHORT = 16             # a QUANT's short length (a TMV then reads several rows a word)
ELEMENTWISE = [Opcode.ZERO, Opcode.EMBED, Opcode.SIGMOID, Opcode.SILU, Opcode.ONE_MINUS,
               Opcode.MUL, Opcode.ADD, Opcode.SUB]


@dataclasses.dataclass
class Regions:
    """First elements of the program's regions: ``big`` of ``D`` elements, ``medium`` of
    ``SHORT``, ``small`` of two vector words."""

    big: list
    medium: list
    small: list
    lanes: int

    @classmethod
    def of(cls, params: AcceleratorParameters) -> Regions:
        lanes = params.vector_lanes
        medium = [8 * D + index * SHORT for index in range(4)]
        return cls(big=[index * D for index in range(8)], medium=medium,
                   small=[medium[-1] + SHORT + index * 2 * lanes for index in range(6)],
                   lanes=lanes)

    def elements(self, first: int) -> int:
        """Elements of the region that starts at ``first``."""
        return D if first in self.big else SHORT if first in self.medium else 2 * self.lanes


def compiled_norms(compiled) -> list:
    """A compiled model's step's NORMs and QUANTs of length ``D`` (their weights and constants
    are what :func:`random_program` reuses)."""
    return [instruction for instruction in step_instructions(compiled)
            if instruction.opcode in (Opcode.NORM, Opcode.QUANT) and instruction.length == D]


def _length(rng, elements: int, lanes: int) -> int:
    """A length that covers the same words as a region of ``elements``."""
    words = elements // lanes
    return rng.choice([elements, rng.randrange((words - 1) * lanes + 1, elements + 1)])


def random_program(rng, params: AcceleratorParameters, count: int, norms, *,
                   tmv: float = 0.0):
    """``count`` instructions: NORM and QUANT (the opcode, ``b`` and ``imm`` of one of
    ``norms``, :func:`compiled_norms`; a QUANT may take ``SHORT``), element-wise
    work, and with probability ``tmv`` a TMV of the latest QUANT's activations (after the
    first QUANT; its scale register one that a QUANT wrote; ARGMAX and NO_WRITE at times, no
    EMBED after the first ARGMAX). Returns the program and each TMV's matrix (by ``imm``,
    the plain layout's word: ``length x a * P`` ternary, zero past the QUANT's length)."""
    lanes, regions = params.vector_lanes, Regions.of(params)
    program, matrices, words = [], {}, 0
    quant_length, scale_registers, argmax_seen = None, [], False
    for _ in range(count):
        kind = rng.random()
        for _ in range(rng.randint(1, 3) if kind < tmv and quant_length is not None else 0):
            # One to three TMVs of the same activations, as a layer's gates.
            dst = rng.choice([*regions.big, *regions.medium, *regions.small])
            rows = _length(rng, regions.elements(dst), lanes)
            beats = -(-quant_length // params.ternary_lanes) + rng.randrange(2)
            matrix = np.zeros((rows, beats * params.ternary_lanes), dtype=np.int8)
            matrix[:, :quant_length] = np.random.default_rng(rng.getrandbits(32)).integers(
                -1, 2, (rows, quant_length))
            flags = Flag(0)
            if rng.random() < 0.2:
                flags |= Flag.ARGMAX
                argmax_seen = True
            if rng.random() < 0.1:
                flags |= Flag.NO_WRITE
            program.append(Instruction(Opcode.TMV, dst=dst, a=beats,
                                       b=rng.choice(scale_registers), length=rows, imm=words,
                                       flags=flags))
            matrices[words] = matrix
            words += rows * beats
        if kind < tmv and quant_length is not None:
            continue
        if kind < 0.3 + tmv:
            norm = rng.choice(norms)
            if norm.opcode == Opcode.QUANT:
                short = rng.random() < 0.3
                length = SHORT if short else D
                a = rng.choice(regions.medium if short else regions.big)
                dst = rng.randrange(4)
                quant_length = length
                scale_registers.append(dst)
            else:
                length, a = D, rng.choice(regions.big)
                dst = rng.choice([a, *regions.big])
            program.append(Instruction(norm.opcode, dst=dst, a=a, b=norm.b, length=length,
                                       imm=norm.imm))
            continue
        opcode = rng.choice([op for op in ELEMENTWISE if op != Opcode.EMBED or not argmax_seen])
        if opcode == Opcode.EMBED:
            program.append(Instruction(opcode, dst=rng.choice(regions.big), length=D,
                                       imm=rng.randrange(0, params.vector_bits
                                                         - params.embedding_bits + 1)))
            continue
        choices = rng.choice([regions.big, regions.big, regions.medium, regions.small])
        a, b = rng.choice(choices), rng.choice(choices)
        dst = rng.choice([a, b, rng.choice(choices)])
        program.append(Instruction(opcode, dst=dst, a=a, b=b,
                                   length=_length(rng, regions.elements(a), lanes)))
    return program, matrices


def golden_for_program(rng, compiled, matrices, *, rows: int) -> GoldenModel:
    """A golden model to run a :func:`random_program` on: ``compiled``'s sections with the
    program's ``matrices`` as its weights (in the plain layout at their ``imm``; no batched
    run, which would stack the compiled step's matrices at load), the work bank random at
    three magnitudes, ``rows`` random embedding rows and a random token among them."""
    params = compiled.params
    sections = dict(compiled.sections())
    sections["weights"] = pack_weight_image([matrices[imm] for imm in sorted(matrices)], params)
    golden = GoldenModel(params, sections, batched=False)
    work = params.vector_work_words
    golden.memory[:work] = [rng.randrange(-2**31, 2**31) >> rng.choice([8, 12, 14])
                            for _ in range(work)]
    golden.embeddings = np.array([[rng.randrange(-2**15, 2**15) for _ in range(D)]
                                  for _ in range(rows)], dtype=np.int64)
    golden.token = rng.randrange(rows)
    return golden
