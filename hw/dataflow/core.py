"""The dataflow core (issue 15, ``docs/dataflow.md``): the vector slice
(:mod:`tern_fpga.hw.dataflow.vector_slice`) with its matrix side.

The scoreboard's TMVs go through :class:`~tern_fpga.hw.dataflow.matrix_reader.MatrixReader`
(the buffer's layout, the scale register) into
:class:`~tern_fpga.hw.dataflow.matrix_pipe.MatrixPipe`, which reads a block-RAM weight memory in
the segmented layout (:func:`tern_fpga.contracts.segmented_layout.segment_program`) and the
activation memory (two buffers), writes through the arbiter's source 0 and pulses the
scoreboard's ``release`` (through the matrix reader, once the TMV has its scale); the norm
unit's QUANT results go into
:class:`~tern_fpga.hw.dataflow.quant_results.QuantResults` (the activation writer and the scale
registers). :class:`~tern_fpga.hw.dataflow.sequencer.Sequencer` holds the program and issues a
run's instructions into the scoreboard. :class:`CoreComponent` is the core with the host's
access (:class:`~tern_fpga.hw.dataflow.host_access.HostAccess`) behind the protocol engine's
:class:`~tern_fpga.hw.core_interface.CoreInterface`. What is not here yet: the weight memory's
DRAM backend. Running programs on it in Amaranth's simulator: :mod:`tern_fpga.sim.rtl.dataflow_core`.
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from tern_fpga.contracts.isa import encode
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.contracts.weight_layout import weight_word_to_int
from tern_fpga.hw.core_interface import CoreInterface
from tern_fpga.hw.dataflow.host_access import HostAccess, connect_window, core_windows
from tern_fpga.hw.dataflow.matrix_pipe import MatrixPipe, activation_words
from tern_fpga.hw.dataflow.matrix_reader import MatrixReader
from tern_fpga.hw.dataflow.quant_results import QuantResults
from tern_fpga.hw.dataflow.scoreboard import Scoreboard
from tern_fpga.hw.dataflow.sequencer import Sequencer, program_values
from tern_fpga.hw.dataflow.vector_slice import vector_slice

__all__ = ["CoreComponent", "DataflowCore", "dataflow_core"]


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
    ``target`` is the multipliers' (:func:`~tern_fpga.hw.dataflow.vector_slice.vector_slice`).
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
