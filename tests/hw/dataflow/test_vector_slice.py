"""The vector slice of the dataflow core (hw/dataflow/vector_slice.py: the scoreboard, both readers,
``ElementwiseUnit`` and ``NormUnit``, their result writers, the write arbiter and a real
``BankedMemory``) in Amaranth's simulator, on random programs of ZERO, EMBED, every row
operation, NORM and QUANT (their weights and constants a compiled model's) over the compiler's
kind of regions (``support.dataflow_programs``), while the arbiter's third source (the matrix
pipe's) keeps the one write port busy with words of its own. The vector memory afterwards must equal the golden model's
(``GoldenModel.execute`` in program order, and those words) element for element, and each
QUANT's values and output scale the golden model's: every hazard the scoreboard resolves is on
real values here."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from tern_fpga.contracts.isa import Opcode
from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.dataflow.vector_slice import vector_slice
from tern_fpga.quant.compiler import compile_model
from tern_fpga.sim.golden.model import GoldenModel
from tern_fpga.sim.golden.vector_writes import arbitrated_memory
from tern_fpga.sim.rtl.cocotb_support import unpack_lanes

from support.dataflow_programs import D, compiled_norms, random_program
from support.memory_ports import read_back
from support.random_model import random_model

PARAMS = PRESETS["micro"]
LANES = PARAMS.vector_lanes
WORDS = PARAMS.vector_memory_words // LANES
BITS = PARAMS.vector_bits
ROWS = 6


def _values(word: int) -> list[int]:
    return unpack_lanes(word, BITS, LANES)


@pytest.mark.parametrize("seed", range(2))
def test_random_programs_leave_the_golden_models_memory(seed):
    rng = random.Random(f"vector-slice{seed}")
    compiled = compile_model(random_model(3, layers=1), PARAMS)
    program, _ = random_program(rng, PARAMS, 36, compiled_norms(compiled))
    golden = GoldenModel(PARAMS, compiled.sections())
    work = PARAMS.vector_work_words
    # Activations of the magnitudes a model's have (Q16.16), some larger.
    golden.memory[:work] = [rng.randrange(-2**31, 2**31) >> rng.choice([8, 12, 14])
                            for _ in range(work)]
    golden.embeddings = np.array([[rng.randrange(-2**15, 2**15) for _ in range(D)]
                                  for _ in range(ROWS)], dtype=np.int64)
    golden.token = token = rng.randrange(ROWS)
    design = vector_slice(PARAMS, vector=golden.memory.copy(), embeddings=golden.embeddings,
                          constants=golden.constants, token=token, slots=6)
    quants = [golden.execute(instruction) for instruction in program]
    quants = [(list(values), scale) for instruction, (values, scale) in zip(program, quants)
              if instruction.opcode == Opcode.QUANT]
    # The matrix pipe's source keeps the write port busy with words past the regions.
    others = [(word, [rng.randrange(-2**31, 2**31) for _ in range(LANES)],
               rng.randrange(1, 1 << LANES)) for word in rng.choices(range(500, 550), k=300)]
    golden.memory = arbitrated_memory(golden.memory.reshape(WORDS, LANES), [others]).reshape(-1)
    memory, cycles, values, scales, finished = [], [], [], [], []

    async def instructions(ctx):
        count = 0
        for instruction in program:
            ctx.set(design.scoreboard.instruction.payload, {
                "opcode": instruction.opcode, "dst": instruction.dst, "a": instruction.a,
                "b": instruction.b, "length": instruction.length, "imm": instruction.imm,
                "flags": int(instruction.flags)})
            ctx.set(design.scoreboard.instruction.valid, 1)
            await ctx.tick().until(design.scoreboard.instruction.ready)
            count += 1
        ctx.set(design.scoreboard.instruction.valid, 0)
        await ctx.tick()
        for _ in range(20_000):
            if ctx.get(design.scoreboard.idle):
                break
            await ctx.tick()
            count += 1
        cycles.append(count)
        while not finished:
            await ctx.tick()
        await ctx.tick()
        for word in await read_back(ctx, design.read, WORDS, _values):
            memory.extend(word)

    async def matrix_writes(ctx):
        port = design.arbiter.source[0]
        for address, data, mask in others:
            while rng.random() < 0.1:
                await ctx.tick()
            ctx.set(port.payload, {"address": address, "data": data, "mask": mask})
            ctx.set(port.valid, 1)
            await ctx.tick().until(port.ready)
            ctx.set(port.valid, 0)
        finished.append(True)

    async def quant_outputs(ctx):
        for stream in (design.quant_values, design.quant_scale, design.scale_register,
                       design.activation):
            ctx.set(stream.ready, 1)
        current = []
        async for _, _, valid, beat, scale_valid, scale in ctx.tick().sample(
                design.quant_values.valid, design.quant_values.payload,
                design.quant_scale.valid, design.quant_scale.payload):
            if valid:
                current += [value for lane, value in enumerate(beat.data)
                            if beat.mask >> lane & 1]
                if beat.last:
                    values.append(current)
                    current = []
            if scale_valid:
                scales.append((scale.mantissa, scale.exponent))

    simulator = Simulator(design.top)
    simulator.add_clock(1e-8)
    simulator.add_testbench(instructions)
    simulator.add_testbench(matrix_writes, background=True)
    simulator.add_process(quant_outputs)
    simulator.run()
    assert cycles[0] < 20_000 + len(program), "the program did not finish: a deadlock"
    differing = np.flatnonzero(np.array(memory) != golden.memory)
    assert differing.size == 0, (
        f"{differing.size} elements differ from the golden model's, the first at "
        f"{differing[0]}: {memory[differing[0]]} against {golden.memory[differing[0]]}")
    assert values == [quant_values for quant_values, _ in quants]
    assert scales == [(scale.mantissa, scale.exponent) for _, scale in quants]
    assert sum(opcode == Opcode.QUANT for opcode in (i.opcode for i in program)) >= 3
