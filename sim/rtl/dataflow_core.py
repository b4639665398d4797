"""The dataflow core (issue 15, ``docs/dataflow.md``): the vector slice
(:mod:`tern_fpga.sim.rtl.vector_slice`) with its matrix side, for Amaranth's simulator.

The scoreboard's TMVs go through :class:`~tern_fpga.hw.dataflow.matrix_reader.MatrixReader`
(the buffer's layout, the scale register) into
:class:`~tern_fpga.hw.dataflow.matrix_pipe.MatrixPipe`, which reads a block-RAM weight memory in
the segmented layout (:func:`tern_fpga.contracts.segmented_layout.segment_program`) and the
activation memory (two buffers), writes through the arbiter's source 0 and pulses the
scoreboard's ``release``; the norm unit's QUANT results go into
:class:`~tern_fpga.hw.dataflow.quant_results.QuantResults` (the activation writer and the scale
registers). What is not here yet: the weight memory's DRAM backend, the host link, the program
memory and its sequencer (the testbench feeds the instructions).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from amaranth.hdl import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.contracts.segmented_layout import segment_program
from tern_fpga.contracts.weight_layout import weight_word_to_int
from tern_fpga.hw.dataflow.matrix_pipe import MatrixPipe, activation_words
from tern_fpga.hw.dataflow.matrix_reader import MatrixReader
from tern_fpga.hw.dataflow.quant_results import QuantResults
from tern_fpga.hw.dataflow.scoreboard import Scoreboard
from tern_fpga.sim.golden.model import GoldenModel
from tern_fpga.sim.golden.run_plan import step_instructions
from tern_fpga.sim.rtl.cocotb_support import unpack_lanes
from tern_fpga.sim.rtl.vector_slice import vector_slice

__all__ = ["CoreRun", "DataflowCore", "dataflow_core", "run_program", "step_after_prompt"]


@dataclasses.dataclass
class DataflowCore:
    """The core's top module and what a testbench drives or watches: ``scoreboard`` (its
    ``instruction`` stream and ``idle``), ``read`` (a vector-memory read port, for reading it
    back), ``matrix_reader`` (``token``, ``set_token``), ``pipe`` and ``quant`` (``scales``)."""

    top: Module
    scoreboard: Scoreboard
    read: object
    matrix_reader: MatrixReader
    pipe: MatrixPipe
    quant: QuantResults

    @property
    def busy(self):
        """High while anything but the scoreboard still works (the scoreboard's ``idle`` says
        that every instruction has written its last result)."""
        return self.pipe.busy | self.quant.busy


def dataflow_core(params: AcceleratorParameters, *, vector, embeddings, constants, weights,
                  slots: int = 6, max_segments: int = 4) -> DataflowCore:
    """The core with the vector, embedding and constants memories as :func:`vector_slice`'s
    and the weight memory holding ``weights`` (segmented words, ``[words, ceil(2P / 64)]``
    uint64, as :func:`~tern_fpga.contracts.segmented_layout.segment_program` returns them).
    The token register starts at 0; the testbench sets it through ``matrix_reader.set_token``.
    """
    matrix_reader = MatrixReader(params, max_segments=max_segments)
    lanes = params.ternary_lanes
    vector_side = vector_slice(params, vector=vector, embeddings=embeddings,
                               constants=constants, token=matrix_reader.token, slots=slots,
                               max_segments=max_segments)
    top, scoreboard = vector_side.top, vector_side.scoreboard
    top.submodules.matrix_reader = matrix_reader
    top.submodules.pipe = pipe = MatrixPipe(params, max_segments=max_segments)
    top.submodules.quant = quant = QuantResults(params, max_segments=max_segments)
    top.submodules.weights = weight_memory = Memory(
        shape=unsigned(2 * lanes), depth=max(1, len(weights)),
        init=[weight_word_to_int(word) for word in weights])
    top.submodules.activations = activation_memory = Memory(
        shape=unsigned(8 * lanes), depth=2 * activation_words(params, max_segments), init=[])
    weight_read = weight_memory.read_port()
    activation_read = activation_memory.read_port()
    activation_write = activation_memory.write_port(granularity=8)

    port = scoreboard.matrix
    top.d.comb += [
        matrix_reader.instruction.valid.eq(port.command.valid),
        matrix_reader.instruction.payload.eq(port.command.payload),
        port.command.ready.eq(matrix_reader.instruction.ready),
        matrix_reader.buffer.eq(port.buffer),
        matrix_reader.go.eq(port.go), port.read.eq(matrix_reader.read),
        port.write.eq(vector_side.arbiter.written[0]), port.release.eq(pipe.released),
        matrix_reader.scales.eq(quant.scales), matrix_reader.layouts.eq(quant.layouts),
        weight_read.addr.eq(pipe.matrix_addr), weight_read.en.eq(pipe.matrix_en),
        pipe.matrix_data.eq(weight_read.data), pipe.matrix_available.eq(1),
        pipe.prefetch.ready.eq(1),
        activation_read.addr.eq(pipe.activation_addr), activation_read.en.eq(pipe.activation_en),
        pipe.activation_data.eq(activation_read.data),
        activation_write.addr.eq(quant.write_addr), activation_write.data.eq(quant.write_data),
        activation_write.en.eq(quant.write_en),
    ]
    for source, sink in ((matrix_reader.command, pipe.command), (pipe.done, matrix_reader.done),
                         (pipe.write, vector_side.arbiter.source[0]),
                         (vector_side.activation, quant.command),
                         (vector_side.quant_values, quant.values),
                         (vector_side.quant_scale, quant.scale),
                         (vector_side.scale_register, quant.scale_register)):
        wiring.connect(top, source, sink)
    return DataflowCore(top, scoreboard, vector_side.read, matrix_reader, pipe, quant)


@dataclasses.dataclass
class CoreRun:
    """What a program left: ``memory`` (the vector memory, an element a value), ``token``
    (the token register) and ``cycles`` (from the first instruction offered until the core is
    idle: every result written)."""

    memory: np.ndarray
    token: int
    cycles: int


def run_program(golden, program, *, max_segments: int, slots: int = 6,
                limit: int = 100_000) -> CoreRun:
    """``program`` through the core from ``golden``'s state (a
    :class:`~tern_fpga.sim.golden.model.GoldenModel` before it runs ``program``: its vector
    memory, embeddings, constants and token; its weights, in the plain layout, go into the
    segmented one with :func:`~tern_fpga.contracts.segmented_layout.segment_program`), one
    instruction offered a cycle as the scoreboard takes them.

    Raises
    ------
    RuntimeError
        If the core is not idle after ``limit`` cycles (a deadlock).
    """
    params = golden.params
    lanes, words = params.vector_lanes, params.vector_memory_words // params.vector_lanes

    def matrix(instruction):
        rows, beats = instruction.length, instruction.a
        return golden.weights[instruction.imm:instruction.imm + rows * beats].reshape(rows, -1)

    segmented, weights = segment_program(program, matrix, params, max_segments)
    design = dataflow_core(params, vector=golden.memory.copy(), embeddings=golden.embeddings,
                           constants=golden.constants, weights=weights, slots=slots,
                           max_segments=max_segments)
    scoreboard, reader = design.scoreboard, design.matrix_reader
    results = {}

    async def run(ctx):
        ctx.set(reader.set_token.payload, golden.token)
        ctx.set(reader.set_token.valid, 1)
        await ctx.tick()
        ctx.set(reader.set_token.valid, 0)
        cycles = 0
        for instruction in segmented:
            ctx.set(scoreboard.instruction.payload, {
                "opcode": instruction.opcode, "dst": instruction.dst, "a": instruction.a,
                "b": instruction.b, "length": instruction.length, "imm": instruction.imm,
                "flags": int(instruction.flags)})
            ctx.set(scoreboard.instruction.valid, 1)
            while cycles < limit:
                cycles += 1
                _, _, ready = await ctx.tick().sample(scoreboard.instruction.ready)
                if ready:
                    break
        ctx.set(scoreboard.instruction.valid, 0)
        while cycles < limit and not (ctx.get(scoreboard.idle) and not ctx.get(design.busy)):
            await ctx.tick()
            cycles += 1
        results["cycles"] = cycles
        if cycles >= limit:
            return
        memory = []
        for address in range(words):
            ctx.set(design.read.addr, address)
            ctx.set(design.read.en, 1)
            await ctx.tick()
            memory += unpack_lanes(ctx.get(design.read.data), params.vector_bits, lanes)
        results["memory"] = np.array(memory, dtype=np.int64)
        results["token"] = ctx.get(reader.token)

    simulator = Simulator(design.top)
    simulator.add_clock(1e-8)
    simulator.add_testbench(run)
    simulator.run()
    if results["cycles"] >= limit:
        raise RuntimeError(f"the core is not idle after {limit} cycles: a deadlock")
    return CoreRun(results["memory"], int(results["token"]), results["cycles"])


def step_after_prompt(compiled, prompt, *, max_segments: int) -> tuple[CoreRun, GoldenModel]:
    """A compiled model's decode step through the core, on the last token of ``prompt`` from the
    state the tokens before it left (the golden model steps them), and the golden model after
    the same step, for comparing: the whole vector memory and the token register."""
    golden = GoldenModel(compiled.params, compiled.sections())
    for token in prompt[:-1]:
        golden.step(token)
    golden.token, golden.token_written = prompt[-1], False      # a new run from here
    program = step_instructions(compiled)
    run = run_program(golden, program, max_segments=max_segments)
    for instruction in program:
        golden.execute(instruction)
    return run, golden
