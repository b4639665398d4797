"""The norm unit's operand side in the dataflow core (issue 15, ``docs/dataflow.md``): the
scoreboard's NORM and QUANT instructions turned into
:class:`~tern_fpga.hw.dataflow.norm_unit.NormUnit` commands, both passes' operand beats read
from the vector memory as the scoreboard allows, and where the results go.

:class:`NormReader` queues up to ``queue`` instructions and reads one at a time. When it takes one it reads its three constants
(``constants[imm .. imm + 2]``: the epsilon term, the scale's mantissa and exponent; one a
cycle, as the committed core does) and then offers the unit its command; at once it offers:

- the result writer the destination (NORM: word ``dst / V`` of the vector memory; QUANT:
  ``to_memory = 0``, its beats go on to the activation writer);
- for QUANT, the activation writer its command: the buffer (the two alternate, the first QUANT
  filling buffer 1, as the golden model and the scoreboard count them), the length, and the
  segments of the TMVs that will read it, looked up from the length
  (:func:`tern_fpga.contracts.segmented_layout.segments_for_inputs`: a QUANT's length is its
  TMVs' ``in_features``), and the scale register that its output scale goes to.

Each cycle that ``go`` is high and the operand FIFO will have room it reads a beat, ``x`` at
word ``a / V + i`` on port ``x`` and the weight at ``b / V + i`` on port ``weight``, and
pulses ``read``: the first pass's beats, then the second's (the scoreboard holds ``go`` low
between them until the second pass may start). It takes the next instruction once all of
these have been taken and its last beat is read.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.isa import SCALE_REGISTERS, Opcode
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.contracts.segmented_layout import segments_for_inputs
from tern_fpga.hw.dataflow import activation_writer
from tern_fpga.hw.dataflow.matrix_pipe import activation_words
from tern_fpga.hw.dataflow.pipeline import (
    OPERAND_BEATS,
    InstructionQueue,
    operand_fifo,
    read_ports,
)
from tern_fpga.hw.dataflow.scoreboard import instruction_layout
from tern_fpga.hw.dataflow.vector_writes import destination_layout
from tern_fpga.hw.norm_quantizer import Operation, command_layout, operand_layout

__all__ = ["NormReader"]


class NormReader(wiring.Component):
    """NORM and QUANT instructions in; the norm unit's commands and operands, and where its
    results go, out; one beat a cycle.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
    max_segments : int
        ``S`` of the matrix unit: the most segments a TMV's words may have.
    queue : int
        Instructions it holds beside the one it reads (:class:`~.pipeline.InstructionQueue`).

    Members
    -------
    instruction : ``In(stream.Signature(scoreboard.instruction_layout(params)))``
    go : ``In(1)``; read : ``Out(1)``
        The scoreboard's permission for the next beat, and the pulse of a beat read.
    x_addr, x_en : ``Out``; x_data : ``In(V * vector_bits)``
        The vector memory's read port for ``a``; ``weight_*`` the same for ``b``.
    constant_addr, constant_en : ``Out``; constant_data : ``In(64)``
        The constants memory's read port.
    command : ``Out(stream.Signature(norm_quantizer.command_layout(params)))``
    operands : ``Out(stream.Signature(norm_quantizer.operand_layout(params)))``
    destination : ``Out(stream.Signature(vector_writes.destination_layout(params)))``
    activation : ``Out(stream.Signature(activation_writer.command_layout(params, S)))``
        A QUANT's activation writes.
    scale_register : ``Out(stream.Signature(range(SCALE_REGISTERS)))``
        A QUANT's scale register, for its output scale.
    """

    def __init__(self, params: AcceleratorParameters, *, max_segments: int = 4,
                 queue: int = 4):
        self._params, self._max_segments, self._queue = params, max_segments, queue
        lanes = params.vector_lanes
        words = params.vector_memory_words // lanes
        super().__init__({
            "instruction": In(stream.Signature(instruction_layout(params))),
            "go": In(1),
            "read": Out(1),
            "x_addr": Out(range(words)), "x_en": Out(1),
            "x_data": In(lanes * params.vector_bits),
            "weight_addr": Out(range(words)), "weight_en": Out(1),
            "weight_data": In(lanes * params.vector_bits),
            "constant_addr": Out(range(params.program_words)), "constant_en": Out(1),
            "constant_data": In(64),
            "command": Out(stream.Signature(command_layout(params))),
            "operands": Out(stream.Signature(operand_layout(params))),
            "destination": Out(stream.Signature(destination_layout(params))),
            "activation": Out(stream.Signature(
                activation_writer.command_layout(params, max_segments))),
            "scale_register": Out(stream.Signature(range(SCALE_REGISTERS))),
        })

    def read_ports(self, x, weight, constants) -> list:
        """The statements that join the reader to its three memory read ports."""
        return read_ports(self, ("x", "weight", "constant"), (x, weight, constants))

    def elaborate(self, platform):
        m = Module()
        p = self._params
        lanes = p.vector_lanes
        shift = lanes.bit_length() - 1
        queue = InstructionQueue(m, self.instruction, instruction_layout(p), self._queue)
        given = queue.payload

        loaded = Signal(name="loaded")
        second = Signal(name="second_pass")
        x_base = Signal.like(self.x_addr, name="x_base")
        weight_base = Signal.like(self.weight_addr, name="weight_base")
        beat = Signal(range(p.max_features // lanes + 1), name="beat")
        beats = Signal(range(p.max_features // lanes + 1), name="beats")
        buffer = Signal(name="buffer")          # the buffer the last QUANT filled

        in_flight = Signal(name="in_flight")          # a read whose data comes this cycle
        beat_data = data.View(operand_layout(p), Signal(2 * lanes * p.vector_bits))
        m.d.comb += [beat_data.x.eq(self.x_data), beat_data.weight.eq(self.weight_data)]
        operands = operand_fifo(m, "operand_fifo", 2 * lanes * p.vector_bits, in_flight,
                                beat_data.as_value(), self.operands)
        room = operands.level + in_flight < OPERAND_BEATS
        fire = loaded & self.go & room
        last_beat = beat + 1 == beats
        m.d.comb += self.read.eq(fire)
        with m.If(fire):
            m.d.sync += beat.eq(Mux(last_beat, 0, beat + 1))
            with m.If(last_beat):
                m.d.sync += second.eq(~second)
                with m.If(second):
                    m.d.sync += loaded.eq(0)

        # A stream register empties as it is taken (before the sets below, which win).
        streams = (self.command, self.destination, self.activation, self.scale_register)
        for port in streams:
            with m.If(port.ready):
                m.d.sync += port.valid.eq(0)

        # The constants, one a cycle after the take; then the unit's command.
        fetch = Signal(range(4), name="fetch")        # 1..3: constant fetch-1 in flight
        constant_base = Signal.like(self.constant_addr, name="constant_base")
        with m.If(fetch != 0):
            m.d.sync += fetch.eq(Mux(fetch == 3, 0, fetch + 1))
        m.d.comb += [self.constant_addr.eq(Mux(fetch == 0, given.imm, constant_base + fetch)),
                     self.constant_en.eq(1)]
        payload = self.command.payload
        with m.Switch(fetch):
            with m.Case(1):
                m.d.sync += payload.epsilon_term.eq(self.constant_data)
            with m.Case(2):
                m.d.sync += payload.constant.mantissa.eq(self.constant_data)
            with m.Case(3):
                m.d.sync += [payload.constant.exponent.eq(self.constant_data),
                             self.command.valid.eq(1)]

        announced = (fetch == 0) & ~Cat(port.valid for port in streams).any()
        take = queue.valid & (~loaded | (fire & last_beat & second)) & announced
        queue.take(m, take)

        quant = given.opcode == Opcode.QUANT
        whole_beats = (given.length + lanes - 1) >> shift
        # log2 of the segments by whole beats (entry 0 unused: a length is at least 1).
        table = Array(Const(segments_for_inputs(max(1, min(count * lanes, p.max_features)), p,
                                                self._max_segments).bit_length() - 1,
                            range(self._max_segments.bit_length()))
                      for count in range(p.max_features // lanes + 1))
        with m.If(take):
            m.d.sync += [
                loaded.eq(1), second.eq(0), beat.eq(0), beats.eq(whole_beats),
                x_base.eq(given.a >> shift), weight_base.eq(given.b >> shift),
                fetch.eq(1), constant_base.eq(given.imm),
                payload.operation.eq(Mux(quant, Operation.QUANT, Operation.NORM)),
                payload.length.eq(given.length),
                self.destination.valid.eq(1),
                self.destination.payload.word.eq(given.dst >> shift),
                self.destination.payload.length.eq(given.length),
                self.destination.payload.to_memory.eq(~quant),
            ]
            with m.If(quant):
                m.d.sync += [
                    buffer.eq(~buffer),
                    self.activation.valid.eq(1),
                    self.activation.payload.start.eq(
                        Mux(buffer, 0, activation_words(p, self._max_segments))),
                    self.activation.payload.segments_log2.eq(table[whole_beats]),
                    self.activation.payload.length.eq(given.length),
                    self.scale_register.valid.eq(1),
                    self.scale_register.payload.eq(given.dst),
                ]

        # The reads; their data a cycle later into the FIFO.
        m.d.comb += [self.x_addr.eq(x_base + beat), self.x_en.eq(fire),
                     self.weight_addr.eq(weight_base + beat), self.weight_en.eq(fire)]
        m.d.sync += in_flight.eq(fire)
        return m

