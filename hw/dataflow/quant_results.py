"""Where a QUANT's results go in the dataflow core (issue 15, ``docs/dataflow.md``): its int8
values into an activation buffer, its output scale into a scale register, and what the matrix
side must know of both when a TMV starts.

:class:`QuantResults` joins the norm side's outputs for QUANT:

- ``command`` (the norm reader's activation-writer command, one a QUANT as it is taken) drives an
  :class:`~tern_fpga.hw.dataflow.activation_writer.ActivationWriter`, whose write port is the
  activation memory's;
- ``values`` (the norm unit's QUANT beats, passed on by its result writer) go into the writer, one
  a cycle. The core counts a beat as the norm unit's ``write`` for the scoreboard as it is taken
  (its write is on the buffer's port the cycle after, before any TMV may read it), so a QUANT's
  last write means that its buffer is filled, which is what a TMV's start waits for. Its output
  scale may come later (a QUANT's second pass waits for the reciprocal only, the scale for the
  longer rsqrt and products): the TMV does not wait for it to start, only its scale does
  (``scale_ready``, which the matrix reader watches);
- ``scale`` (the norm unit's output scales, in QUANT order) go into ``scales[r]``, ``r`` from
  ``scale_register`` (the norm reader's, one a QUANT as it is taken, queued here: the scale comes
  some 50 cycles later and the reader should not wait for it), each only once its QUANT has
  begun its values (below);
- a QUANT's buffer's ``layouts`` entry (its ``segments_log2`` and ``length``) is set with its last
  beat: a TMV reads it when it starts, after that QUANT's last write and before any later QUANT
  that fills the same buffer may write (the scoreboard's rule), so the matrix side sees the
  layout of the values it reads.

The golden model's meaning is :meth:`~tern_fpga.sim.golden.model.GoldenModel.execute`'s for
QUANT (``activations[:n]``, ``scales[dst]``), with the buffers alternating.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.isa import SCALE_REGISTERS
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.dataflow import activation_writer
from tern_fpga.hw.dataflow.activation_writer import ActivationWriter
from tern_fpga.hw.dataflow.matrix_pipe import activation_words
from tern_fpga.hw.row_unit import result_layout
from tern_fpga.hw.scale_layout import scale_layout

__all__ = ["QuantResults", "buffer_layout"]

#: QUANTs whose scale register the unit holds before their scale comes.
SCALE_REGISTERS_QUEUED = 4


def buffer_layout(params: AcceleratorParameters, max_segments: int) -> data.StructLayout:
    """What a filled activation buffer holds: its ``segments_log2`` (the layout its TMVs
    read), ``length`` (elements: its TMVs' ``in_features``) and ``beats`` (its words,
    ``ceil(length / (P / k))``: a group's words in those TMVs)."""
    command = activation_writer.command_layout(params, max_segments)
    return data.StructLayout({"segments_log2": command["segments_log2"].shape,
                              "length": command["length"].shape,
                              "beats": range(activation_words(params, max_segments) + 1)})


class QuantResults(wiring.Component):
    """A QUANT's values into its activation buffer, its scale into its register.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
    max_segments : int
        ``S`` of the matrix pipe (as the activation writer's).

    Members
    -------
    command : ``In(stream.Signature(activation_writer.command_layout(params, S)))``
    values : ``In(stream.Signature(row_unit.result_layout(params)))``
        The QUANT's int8 values in the low bits of each lane, ``last`` on a command's last beat.
    scale : ``In(stream.Signature(scale_layout(params)))``
    scale_register : ``In(stream.Signature(range(SCALE_REGISTERS)))``
    write_addr, write_data, write_en : ``Out``
        The activation memory's write port (the writer's: ``8 * P`` bits, a byte enable each).
    scales : ``Out(data.ArrayLayout(scale_layout(params), SCALE_REGISTERS))``
        The scale registers.
    scale_ready : ``Out(SCALE_REGISTERS)``
        A bit a register: no QUANT that has begun its values still has its scale to come (the
        register holds the latest such QUANT's scale).
    layouts : ``Out(data.ArrayLayout(buffer_layout(params, S), 2))``
        Each buffer's layout, as its last QUANT left it.
    busy : ``Out(1)``
    """

    def __init__(self, params: AcceleratorParameters, *, max_segments: int):
        self._params, self._max_segments = params, max_segments
        self._writer = ActivationWriter(params, max_segments=max_segments)
        writer = self._writer.signature.members
        super().__init__({
            "command": In(stream.Signature(
                activation_writer.command_layout(params, max_segments))),
            "values": In(stream.Signature(result_layout(params))),
            "scale": In(stream.Signature(scale_layout(params))),
            "scale_register": In(stream.Signature(range(SCALE_REGISTERS))),
            "write_addr": Out(writer["write_addr"].shape),
            "write_data": Out(writer["write_data"].shape),
            "write_en": Out(writer["write_en"].shape),
            "scales": Out(data.ArrayLayout(scale_layout(params), SCALE_REGISTERS)),
            "scale_ready": Out(SCALE_REGISTERS),
            "layouts": Out(data.ArrayLayout(buffer_layout(params, max_segments), 2)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        params = self._params
        m.submodules.writer = writer = self._writer
        wiring.connect(m, wiring.flipped(self.command), writer.command)
        m.d.comb += [self.write_addr.eq(writer.write_addr), self.write_data.eq(writer.write_data),
                     self.write_en.eq(writer.write_en)]

        # The scale registers of the QUANTs taken, in order: `waiting` until the QUANT's first
        # value beat, then `begun` until its scale is written. A scale is written only once its
        # QUANT has begun its values: a QUANT's second pass waits for every older TMV that
        # reads its register to be released (the scoreboard's rule), and the matrix reader
        # releases a TMV only once it has its scale, so no scale is overwritten before the
        # TMVs that read it have it.
        register_bits = self.scale_register.payload.shape().width
        m.submodules.waiting = waiting = fifo.SyncFIFOBuffered(
            width=register_bits, depth=SCALE_REGISTERS_QUEUED)
        m.submodules.begun = begun = fifo.SyncFIFOBuffered(
            width=register_bits, depth=SCALE_REGISTERS_QUEUED)
        m.d.comb += [waiting.w_data.eq(self.scale_register.payload),
                     waiting.w_en.eq(self.scale_register.valid),
                     self.scale_register.ready.eq(waiting.w_rdy),
                     self.scale.ready.eq(begun.r_rdy),
                     begun.r_en.eq(self.scale.valid)]
        scale_in = self.scale.valid & begun.r_rdy
        with m.If(scale_in):
            m.d.sync += self.scales[begun.r_data].eq(self.scale.payload)

        # The values; a command's first beat moves its register from `waiting` to `begun`.
        first = Signal(init=1)
        beat = self.values.payload
        allowed = ~first | (waiting.r_rdy & begun.w_rdy)
        m.d.comb += [writer.values.valid.eq(self.values.valid & allowed),
                     self.values.ready.eq(writer.values.ready & allowed),
                     *(writer.values.payload[lane].eq(beat.data[lane][:8])
                       for lane in range(params.vector_lanes))]
        taken = self.values.valid & self.values.ready
        last_taken = taken & beat.last
        begin = taken & first
        m.d.comb += [waiting.r_en.eq(begin), begun.w_en.eq(begin),
                     begun.w_data.eq(waiting.r_data)]
        with m.If(taken):
            m.d.sync += first.eq(beat.last)

        # A register's QUANTs begun whose scale is not written yet: none means that it holds
        # the scale of its latest QUANT begun.
        for register in range(SCALE_REGISTERS):
            pending = Signal(range(SCALE_REGISTERS_QUEUED + 1), name=f"pending{register}")
            m.d.sync += pending.eq(pending + (begin & (waiting.r_data == register))
                                   - (scale_in & (begun.r_data == register)))
            m.d.comb += self.scale_ready[register].eq(pending == 0)

        # The layout of the command in progress goes to its buffer with its last beat.
        words = activation_words(params, self._max_segments)
        filling = Signal(range(2))
        layout = Signal(buffer_layout(params, self._max_segments))
        given = self.command.payload
        lanes_log2 = params.ternary_lanes.bit_length() - 1
        with m.If(self.command.valid & self.command.ready):
            m.d.sync += [filling.eq(given.start >= words),
                         layout.segments_log2.eq(given.segments_log2),
                         layout.length.eq(given.length)]
            with m.Switch(given.segments_log2):
                for log2 in range(self._max_segments.bit_length()):
                    width_log2 = lanes_log2 - log2              # a segment's lanes, log2
                    with m.Case(log2):
                        m.d.sync += layout.beats.eq(
                            (given.length + (1 << width_log2) - 1) >> width_log2)
        with m.If(last_taken):
            m.d.sync += self.layouts[filling].eq(layout)
        m.d.comb += self.busy.eq(writer.busy | self.values.valid | waiting.r_rdy
                                 | begun.r_rdy)
        return m
