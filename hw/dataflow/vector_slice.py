"""The vector slice of the dataflow core (issue 15, ``docs/dataflow.md``): everything but the
matrix side, which :mod:`tern_fpga.hw.dataflow.core` adds.

``Scoreboard`` issues to two readers (:class:`~tern_fpga.hw.dataflow.elementwise_reader.
ElementwiseReader`, :class:`~tern_fpga.hw.dataflow.norm_reader.NormReader`) in front of their
units (:class:`~tern_fpga.hw.dataflow.elementwise.ElementwiseUnit`,
:class:`~tern_fpga.hw.dataflow.norm_unit.NormUnit`); each unit's results go through its
:class:`~tern_fpga.hw.dataflow.vector_writes.ResultWriter` to the one write port
(:class:`~tern_fpga.hw.dataflow.vector_writes.WriteArbiter`, source 0 left to the matrix
pipe) of a :class:`~tern_fpga.hw.memory_banks.BankedMemory` with the core's work and
constants banks and a read port a reader's operand. The QUANT beats that the norm unit's
writer passes on stand for the activation buffer's writes: they leave on
:attr:`VectorSlice.quant_values` and count as the norm unit's writes as they leave (the
activation writer's registered write lands the cycle after, before any TMV reads them); a
QUANT's output scale leaves on :attr:`VectorSlice.quant_scale`, its register on
:attr:`VectorSlice.scale_register`.
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import Module, Mux, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from tern_fpga.contracts.lanes import pack_lanes
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.dataflow.elementwise import ElementwiseUnit
from tern_fpga.hw.dataflow.elementwise_reader import ElementwiseReader
from tern_fpga.hw.dataflow.host_access import connect_window
from tern_fpga.hw.dataflow.norm_reader import NormReader
from tern_fpga.hw.dataflow.norm_unit import NormUnit
from tern_fpga.hw.dataflow.pipeline import shared_read_port
from tern_fpga.hw.dataflow.scoreboard import Scoreboard
from tern_fpga.hw.dataflow.vector_writes import ResultWriter, WriteArbiter
from tern_fpga.hw.memory_banks import BankedMemory

__all__ = ["VectorSlice", "vector_slice"]


@dataclasses.dataclass
class VectorSlice:
    """The slice's top module and what a testbench drives or watches: ``scoreboard`` (its
    ``instruction`` stream and ``idle``), ``arbiter`` (``source[0]``, the matrix pipe's), a
    vector-memory read port ``read`` for reading it back, and the streams ``quant_values``
    (``row_unit.result_layout``), ``quant_scale`` and ``scale_register``, which the
    testbench must take."""

    top: Module
    scoreboard: Scoreboard
    arbiter: WriteArbiter
    read: object
    quant_values: object
    quant_scale: object
    scale_register: object
    activation: object


def _words(values, lanes: int, bits: int) -> list[int]:
    return [pack_lanes(values[index:index + lanes], bits)
            for index in range(0, len(values), lanes)]


def vector_slice(params: AcceleratorParameters, *, vector, embeddings, constants, token,
                 slots: int = 6, max_segments: int = 4, target=None,
                 host=None) -> VectorSlice:
    """The slice with the vector memory holding ``vector`` (one value an element), the
    embedding memory ``embeddings`` (rows of a whole number of words), the constants memory
    ``constants`` and the token register ``token`` (an int, or the core's register);
    ``target`` is the units' multipliers' (``None``: fabric, ``"ecp5"``: ``MULT18X18D``).

    ``host``: a :class:`~tern_fpga.hw.dataflow.host_access.HostAccess` whose ``vector``,
    ``embedding`` and ``constants`` windows then reach those memories (writes on the vector
    memory's port ahead of the arbiter's, which is idle then; reads on the readers' ports), and
    the slice's ``read`` is ``None``; without it the memories are as their contents say and
    ``read`` is a vector-memory read port for the testbench."""
    lanes, bits = params.vector_lanes, params.vector_bits
    top = Module()
    top.submodules.scoreboard = scoreboard = Scoreboard(params, slots=slots)
    top.submodules.elementwise_reader = ew_reader = ElementwiseReader(params)
    top.submodules.elementwise = ew_unit = ElementwiseUnit(params, target=target)
    top.submodules.elementwise_writer = ew_writer = ResultWriter(params, commands=16)
    top.submodules.norm_reader = norm_reader = NormReader(params, max_segments=max_segments)
    top.submodules.norm = norm_unit = NormUnit(params, target=target)
    top.submodules.norm_writer = norm_writer = ResultWriter(params, commands=8)
    top.submodules.arbiter = arbiter = WriteArbiter(params, sources=3)
    work = params.vector_work_words // lanes
    words = params.vector_memory_words // lanes
    memory = BankedMemory(top, "vector", bits * lanes, [work, words - work],
                          [[0], [0, 1], [0], [0, 1]], granularity=bits,
                          init=_words(list(vector), lanes, bits))
    # The host reads through the element-wise reader's second port (it reads only while the
    # core is idle, CoreInterface's rule): a port of its own would cost a copy of each bank.
    host_read, operand_b = shared_read_port(top, memory.read[1], "vector_host_read",
                                             "vector_operand_b")
    rows = [value for row in embeddings for value in row]
    embedding_depth = max(1, len(rows) // lanes)
    constant_depth = len(constants)
    if host is not None:                        # every word the host may address
        embedding_depth = max(embedding_depth, params.embedding_memory_words // lanes)
        constant_depth = max(constant_depth, params.program_words)
    top.submodules.embeddings = embedding_memory = Memory(
        shape=unsigned(lanes * params.embedding_bits), depth=embedding_depth,
        init=_words(rows, lanes, params.embedding_bits))
    top.submodules.constants = constant_memory = Memory(
        shape=unsigned(64), depth=constant_depth,
        init=[int(c) % (1 << 64) for c in constants])
    embedding_read, constant_read = embedding_memory.read_port(), constant_memory.read_port()
    vector_write = (memory.write.addr, memory.write.data, memory.write.en)
    arbiter_write = (arbiter.write_addr, arbiter.write_data, arbiter.write_en)
    if host is None:
        top.d.comb += [port.eq(value) for port, value in zip(vector_write, arbiter_write)]
    else:
        window = host.vector
        writing = window.write_en.any()
        top.d.comb += [port.eq(Mux(writing, value, other)) for port, value, other in zip(
            vector_write, (window.addr, window.write_data, window.write_en), arbiter_write)]
        top.d.comb += [host_read.addr.eq(window.addr), host_read.en.eq(window.read_en),
                       window.read_data.eq(host_read.data)]
        host_read = None
        embedding_read = connect_window(top, host.embedding, embedding_memory, embedding_read,
                                        "embedding")
        constant_read = connect_window(top, host.constants, constant_memory, constant_read,
                                       "constant")

    for reader, port in ((ew_reader, scoreboard.elementwise), (norm_reader, scoreboard.norm)):
        top.d.comb += [reader.instruction.valid.eq(port.command.valid),
                       reader.instruction.payload.eq(port.command.payload),
                       port.command.ready.eq(reader.instruction.ready),
                       reader.go.eq(port.go), port.read.eq(reader.read)]
    # A passed QUANT beat counts as written as it leaves: the activation writer's registered
    # write lands at the end of the next cycle, and a TMV, the only reader of the buffer, starts
    # two cycles after the pulse at the soonest (the scoreboard's ``go``) and reads later still.
    quant_written = norm_writer.passed.valid & norm_writer.passed.ready
    top.d.comb += [
        scoreboard.elementwise.write.eq(arbiter.written[1]),
        scoreboard.norm.write.eq(arbiter.written[2] | quant_written),
        ew_reader.token.eq(token),
        *ew_reader.read_ports(memory.read[0], operand_b, embedding_read),
        *norm_reader.read_ports(memory.read[2], memory.read[3], constant_read),
    ]
    for source, sink in ((ew_reader.command, ew_unit.command), (ew_reader.a, ew_unit.a),
                         (ew_reader.b, ew_unit.b),
                         (ew_reader.destination, ew_writer.destination),
                         (norm_reader.command, norm_unit.command),
                         (norm_reader.operands, norm_unit.operands),
                         (norm_reader.destination, norm_writer.destination),
                         (norm_unit.result, norm_writer.result),
                         (ew_writer.write, arbiter.source[1]),
                         (norm_writer.write, arbiter.source[2])):
        wiring.connect(top, source, sink)
    top.d.comb += [ew_writer.result.valid.eq(ew_unit.result.valid),
                   ew_writer.result.payload.eq(ew_unit.result.payload.data),
                   ew_unit.result.ready.eq(ew_writer.result.ready)]
    return VectorSlice(top, scoreboard, arbiter, host_read, norm_writer.passed,
                       norm_unit.scale, norm_reader.scale_register, norm_reader.activation)

