"""The dataflow core (issue 15, ``docs/dataflow.md``): the vector slice
(:mod:`tern_fpga.sim.rtl.vector_slice`) with its matrix side, for Amaranth's simulator.

The scoreboard's TMVs go through :class:`~tern_fpga.hw.dataflow.matrix_reader.MatrixReader`
(the buffer's layout, the scale register) into
:class:`~tern_fpga.hw.dataflow.matrix_pipe.MatrixPipe`, which reads a block-RAM weight memory in
the segmented layout (:func:`tern_fpga.contracts.segmented_layout.segment_program`) and the
activation memory (two buffers), writes through the arbiter's source 0 and pulses the
scoreboard's ``release`` (through the matrix reader, once the TMV has its scale); the norm
unit's QUANT results go into
:class:`~tern_fpga.hw.dataflow.quant_results.QuantResults` (the activation writer and the scale
registers). :class:`~tern_fpga.hw.dataflow.sequencer.Sequencer` holds the program and issues a
run's instructions into the scoreboard. What is not here yet: the weight memory's DRAM
backend and the host link (the host's writes into the other memories).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from amaranth.hdl import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from tern_fpga.contracts.isa import Instruction, Opcode, encode
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.contracts.segmented_layout import plain_matrix, segment_program
from tern_fpga.contracts.weight_layout import weight_word_to_int
from tern_fpga.hw.core_interface import CoreInterface
from tern_fpga.hw.dataflow.host_access import HostAccess, connect_window, core_windows
from tern_fpga.hw.dataflow.matrix_pipe import MatrixPipe, activation_words
from tern_fpga.hw.dataflow.matrix_reader import MatrixReader
from tern_fpga.hw.dataflow.quant_results import QuantResults
from tern_fpga.hw.dataflow.scoreboard import Scoreboard
from tern_fpga.hw.dataflow.sequencer import Sequencer, program_values
from tern_fpga.sim.golden.model import GoldenModel
from tern_fpga.sim.golden.run_plan import step_instructions
from tern_fpga.sim.rtl.cocotb_support import unpack_lanes
from tern_fpga.sim.rtl.vector_slice import vector_slice

__all__ = ["CoreComponent", "CoreRun", "DataflowCore", "core_contents", "dataflow_core",
           "golden_before_step", "run_program", "step_after_prompt"]


@dataclasses.dataclass
class DataflowCore:
    """The core's top module and what a testbench drives or watches: ``sequencer`` (its
    ``run`` and ``done`` streams, its program memory's write port and counters), ``scoreboard``,
    ``read`` (a vector-memory read port, for reading it back), ``matrix_reader`` (``token``),
    ``pipe`` and ``quant`` (``scales``); with the host's access, ``host`` (its ``request`` and
    ``response`` streams) and no ``read``."""

    top: Module
    sequencer: Sequencer
    scoreboard: Scoreboard
    read: object
    matrix_reader: MatrixReader
    pipe: MatrixPipe
    quant: QuantResults
    host: HostAccess | None = None


def dataflow_core(params: AcceleratorParameters, *, vector, embeddings, constants, weights,
                  program=(), slots: int = 6, max_segments: int = 4,
                  target=None, host: bool = False) -> DataflowCore:
    """The core with the vector, embedding and constants memories as :func:`vector_slice`'s,
    the weight memory holding ``weights`` (segmented words, ``[words, ceil(2P / 64)]``
    uint64, as :func:`~tern_fpga.contracts.segmented_layout.segment_program` returns them) and
    the program memory ``program`` (instructions in the segmented layout's form, each run
    ending with a HALT). A ``run`` beat into ``sequencer`` sets the token register and runs
    the program from its entry until the core is idle after the HALT.
    ``target`` is the multipliers' (:func:`~tern_fpga.sim.rtl.vector_slice.vector_slice`).
    ``host``: the host's reads and writes of every memory through a
    :class:`~tern_fpga.hw.dataflow.host_access.HostAccess` (the weight memory's words as many
    as ``weights``, the others the preset's).
    """
    matrix_reader = MatrixReader(params, max_segments=max_segments)
    lanes = params.ternary_lanes
    access = None
    if host:
        access = HostAccess(params, core_windows(params, weight_words=max(1, len(weights))))
    vector_side = vector_slice(params, vector=vector, embeddings=embeddings,
                               constants=constants, token=matrix_reader.token, slots=slots,
                               max_segments=max_segments, target=target, host=access)
    top, scoreboard = vector_side.top, vector_side.scoreboard
    top.submodules.sequencer = sequencer = Sequencer(
        params, init=program_values(encode(list(program))))
    top.submodules.matrix_reader = matrix_reader
    top.submodules.pipe = pipe = MatrixPipe(params, max_segments=max_segments)
    top.submodules.quant = quant = QuantResults(params, max_segments=max_segments)
    top.submodules.weights = weight_memory = Memory(
        shape=unsigned(2 * lanes), depth=max(1, len(weights)),
        init=[weight_word_to_int(word) for word in weights])
    top.submodules.activations = activation_memory = Memory(
        shape=unsigned(8 * lanes), depth=2 * activation_words(params, max_segments), init=[])
    weight_read = weight_memory.read_port()
    if access is not None:
        top.submodules.host = access
        weight_read = connect_window(top, access.weights, weight_memory, weight_read, "weight")
        wiring.connect(top, access.program, sequencer.host)
    activation_read = activation_memory.read_port()
    activation_write = activation_memory.write_port(granularity=8)

    port = scoreboard.matrix
    top.d.comb += [
        matrix_reader.instruction.valid.eq(port.command.valid),
        matrix_reader.instruction.payload.eq(port.command.payload),
        port.command.ready.eq(matrix_reader.instruction.ready),
        matrix_reader.buffer.eq(port.buffer),
        matrix_reader.go.eq(port.go), port.read.eq(matrix_reader.read),
        port.write.eq(vector_side.arbiter.written[0]),
        matrix_reader.released.eq(pipe.released), port.release.eq(matrix_reader.release),
        matrix_reader.scales.eq(quant.scales), matrix_reader.scale_ready.eq(quant.scale_ready),
        matrix_reader.layouts.eq(quant.layouts),
        weight_read.addr.eq(pipe.matrix_addr), weight_read.en.eq(pipe.matrix_en),
        pipe.matrix_data.eq(weight_read.data), pipe.matrix_available.eq(1),
        pipe.prefetch.ready.eq(1),
        activation_read.addr.eq(pipe.activation_addr), activation_read.en.eq(pipe.activation_en),
        pipe.activation_data.eq(activation_read.data),
        activation_write.addr.eq(quant.write_addr), activation_write.data.eq(quant.write_data),
        activation_write.en.eq(quant.write_en),
    ]
    top.d.comb += [sequencer.token.eq(matrix_reader.token),
                   sequencer.idle.eq(scoreboard.idle & ~pipe.busy & ~quant.busy)]
    for source, sink in ((sequencer.instruction, scoreboard.instruction),
                         (sequencer.set_token, matrix_reader.set_token),
                         (matrix_reader.command, pipe.command),
                         (matrix_reader.scale, pipe.scale), (pipe.done, matrix_reader.done),
                         (pipe.write, vector_side.arbiter.source[0]),
                         (vector_side.activation, quant.command),
                         (vector_side.quant_values, quant.values),
                         (vector_side.quant_scale, quant.scale),
                         (vector_side.scale_register, quant.scale_register)):
        wiring.connect(top, source, sink)
    return DataflowCore(top, sequencer, scoreboard, vector_side.read, matrix_reader, pipe, quant,
                        access)


class CoreComponent(wiring.Component):
    """The core of :func:`dataflow_core` with the host's access, as a component with the
    flipped :class:`~tern_fpga.hw.core_interface.CoreInterface` (what the protocol engine
    drives): ``memory_request`` and ``memory_response`` through its
    :class:`~tern_fpga.hw.dataflow.host_access.HostAccess`, ``run``, ``done``, ``cycles``,
    ``instructions`` and ``busy`` the sequencer's, ``memory_status`` 0 (its memories are block
    RAM). Its memories start as :func:`dataflow_core`'s arguments say (for synthesis: its
    Fmax and size with real contents; for a test, what the host does not load)."""

    def __init__(self, params: AcceleratorParameters, **contents):
        self._design = dataflow_core(params, **contents, host=True)
        super().__init__(CoreInterface(params).flip())

    @property
    def design(self) -> DataflowCore:
        return self._design

    def elaborate(self, platform):
        design = self._design
        m = Module()
        m.submodules.core = design.top
        sequencer, host = design.sequencer, design.host
        wiring.connect(m, wiring.flipped(self.memory_request), host.request)
        wiring.connect(m, host.response, wiring.flipped(self.memory_response))
        wiring.connect(m, wiring.flipped(self.run), sequencer.run)
        m.d.comb += [self.done.valid.eq(sequencer.done.valid),
                     self.done.payload.eq(sequencer.done.payload),
                     sequencer.done.ready.eq(self.done.ready),
                     self.cycles.eq(sequencer.cycles), self.instructions.eq(sequencer.instructions),
                     self.busy.eq(sequencer.busy), self.memory_status.eq(0)]
        return m


@dataclasses.dataclass
class CoreRun:
    """What a program left: ``memory`` (the vector memory, an element a value), ``token``
    (the token register) and ``cycles`` (the sequencer's count: from the ``run`` beat until
    the ``done`` beat, every result written)."""

    memory: np.ndarray
    token: int
    cycles: int


def core_contents(golden, program, max_segments: int) -> dict:
    """:func:`dataflow_core`'s memories for running ``program`` (a run's instructions, no
    HALT) from ``golden``'s state: its vector memory, embeddings and constants, its weights in
    the segmented layout (:func:`~tern_fpga.contracts.segmented_layout.segment_program`) and
    the segmented program with a HALT."""

    segmented, weights = segment_program(
        program, lambda instruction: plain_matrix(golden.weights, instruction), golden.params,
        max_segments)
    return {"vector": golden.memory.copy(), "embeddings": golden.embeddings,
            "constants": golden.constants, "weights": weights,
            "program": [*segmented, Instruction(opcode=Opcode.HALT)]}


def run_program(golden, program, *, max_segments: int, slots: int = 6,
                limit: int = 100_000) -> CoreRun:
    """``program`` (a run's instructions, no HALT) through the core from ``golden``'s state
    (a :class:`~tern_fpga.sim.golden.model.GoldenModel` before it runs ``program``: its vector
    memory, embeddings, constants and token; its weights, in the plain layout, go into the
    segmented one with :func:`~tern_fpga.contracts.segmented_layout.segment_program`): the
    program and a HALT in the program memory, one ``run`` beat from entry 0 with the golden
    model's token, until ``done``. ``cycles`` is the sequencer's count, from the ``run`` beat to
    the ``done`` beat.

    Raises
    ------
    RuntimeError
        If no ``done`` comes within ``limit`` cycles (a deadlock).
    """
    params = golden.params
    lanes, words = params.vector_lanes, params.vector_memory_words // params.vector_lanes
    design = dataflow_core(params, **core_contents(golden, program, max_segments), slots=slots,
                           max_segments=max_segments)
    sequencer = design.sequencer
    results = {}

    async def run(ctx):
        ctx.set(sequencer.run.payload, {"entry": 0, "token": golden.token})
        ctx.set(sequencer.run.valid, 1)
        await ctx.tick().until(sequencer.run.ready)
        ctx.set(sequencer.run.valid, 0)
        ctx.set(sequencer.done.ready, 1)
        for _ in range(limit):
            _, _, done, token = await ctx.tick().sample(sequencer.done.valid,
                                                        sequencer.done.payload)
            if done:
                break
        else:
            return
        ctx.set(sequencer.done.ready, 0)
        results["cycles"], results["token"] = ctx.get(sequencer.cycles), token
        memory = []
        for address in range(words):
            ctx.set(design.read.addr, address)
            ctx.set(design.read.en, 1)
            await ctx.tick()
            memory += unpack_lanes(ctx.get(design.read.data), params.vector_bits, lanes)
        results["memory"] = np.array(memory, dtype=np.int64)

    simulator = Simulator(design.top)
    simulator.add_clock(1e-8)
    simulator.add_testbench(run)
    simulator.run()
    if "cycles" not in results:
        raise RuntimeError(f"the core sent no done within {limit} cycles: a deadlock")
    return CoreRun(results["memory"], int(results["token"]), results["cycles"])


def golden_before_step(compiled, prompt) -> GoldenModel:
    """The golden model of a compiled model with the tokens of ``prompt`` but the last
    stepped, and the last in its token register: the state a decode step on it starts from."""
    golden = GoldenModel(compiled.params, compiled.sections())
    for token in prompt[:-1]:
        golden.step(token)
    golden.token, golden.token_written = prompt[-1], False      # a new run from here
    return golden


def step_after_prompt(compiled, prompt, *, max_segments: int) -> tuple[CoreRun, GoldenModel]:
    """A compiled model's decode step through the core, on the last token of ``prompt`` from the
    state the tokens before it left (:func:`golden_before_step`), and the golden model after
    the same step, for comparing: the whole vector memory and the token register."""
    golden = golden_before_step(compiled, prompt)
    program = step_instructions(compiled)
    run = run_program(golden, program, max_segments=max_segments)
    for instruction in program:
        golden.execute(instruction)
    return run, golden
