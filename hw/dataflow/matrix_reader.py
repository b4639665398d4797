"""The matrix pipe's issue side in the dataflow core (issue 15, ``docs/dataflow.md``): the
scoreboard's TMVs turned into :class:`~tern_fpga.hw.dataflow.matrix_pipe.MatrixPipe` commands,
and the token register that a TMV with ARGMAX writes.

A TMV (``docs/isa.md``: ``length`` rows at weight word ``imm``, scale register ``b``, ``dst``)
reads the activation buffer that the scoreboard names with it (``buffer``) in the layout its
last QUANT wrote (:class:`~tern_fpga.hw.dataflow.quant_results.QuantResults`' ``layouts``:
``k = 2 ** segments_log2`` rows a word, ``in_features`` = that QUANT's length), and its weights
are in the segmented layout with that ``k``
(:func:`tern_fpga.contracts.segmented_layout.segment_program` gives ``imm`` as the first word
of that layout). So its command is:

- ``beats = ceil(in_features / (P / k))`` activation words a group (``layouts`` holds it),
  ``rows = length``,
- ``words = ceil(rows / k) * beats`` (``ceil(rows / k)`` for every ``k`` is found as the TMV
  enters the queue),
- ``activation_start``: the buffer's first word, ``scale``: register ``b``, ``no_write`` from
  the flags.

:class:`MatrixReader` queues up to ``queue`` TMVs. When the head's ``go`` is high it *starts* it
(the scoreboard's ``read``): reads the buffer's layout and the scale register (both final
then: the scoreboard starts a TMV only after every older QUANT's last write, which
:class:`~.quant_results.QuantResults` gives only once the scale is in) into the command
register, so the matrix pipe has the command the cycle after ``go``.
The matrix pipe's ``done`` beats come back in order; those of TMVs with ARGMAX set ``token``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.isa import SCALE_REGISTERS, Flag
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.dataflow import matrix_pipe
from tern_fpga.hw.dataflow.matrix_pipe import activation_words
from tern_fpga.hw.dataflow.pipeline import InstructionQueue
from tern_fpga.hw.dataflow.quant_results import buffer_layout
from tern_fpga.hw.dataflow.scoreboard import instruction_layout
from tern_fpga.hw.scale_layout import scale_layout

__all__ = ["MatrixReader"]

#: Commands the matrix pipe may hold whose ``done`` has not come: its queue, its reader and its
#: commands in flight (``matrix_pipe.QUEUE_DEPTH + 1 + matrix_pipe.IN_FLIGHT``), and the one in
#: the command register.
_ARGMAX_FLAGS = matrix_pipe.QUEUE_DEPTH + matrix_pipe.IN_FLIGHT + 2


class MatrixReader(wiring.Component):
    """TMV instructions in; matrix-pipe commands out; the token register.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
    max_segments : int
        ``S`` of the matrix pipe.
    queue : int
        Instructions it holds beside the one being started.

    Members
    -------
    instruction : ``In(stream.Signature(scoreboard.instruction_layout(params)))``
    buffer : ``In(1)``
        With ``instruction``: the activation buffer it reads (the scoreboard's ``buffer``).
    go : ``In(1)``; read : ``Out(1)``
        The scoreboard's permission to start the next TMV, and the pulse of its start.
    scales : ``In(data.ArrayLayout(scale_layout(params), SCALE_REGISTERS))``
    layouts : ``In(data.ArrayLayout(quant_results.buffer_layout(params, S), 2))``
    command : ``Out(stream.Signature(matrix_pipe.command_layout(params, S)))``
    done : ``In(stream.Signature(matrix_pipe.done_layout(params, S)))``
        Always taken.
    set_token : ``In(stream.Signature(range(params.embedding_memory_words)))``
        The host's write of the token register (before a step), always taken.
    token : ``Out(range(params.embedding_memory_words))``
        The token register: EMBED's row.
    """

    def __init__(self, params: AcceleratorParameters, *, max_segments: int, queue: int = 4):
        self._params, self._max_segments, self._queue = params, max_segments, queue
        tokens = range(params.embedding_memory_words)
        super().__init__({
            "instruction": In(stream.Signature(instruction_layout(params))),
            "buffer": In(1),
            "go": In(1),
            "read": Out(1),
            "scales": In(data.ArrayLayout(scale_layout(params), SCALE_REGISTERS)),
            "layouts": In(data.ArrayLayout(buffer_layout(params, max_segments), 2)),
            "command": Out(stream.Signature(matrix_pipe.command_layout(params, max_segments))),
            "done": In(stream.Signature(matrix_pipe.done_layout(params, max_segments))),
            "set_token": In(stream.Signature(tokens)),
            "token": Out(tokens),
        })

    def elaborate(self, platform):
        m = Module()
        p, segments = self._params, self._max_segments
        choices = segments.bit_length()                 # k = 1, 2, .. S: log2 k = 0 .. choices-1
        groups_shape = range(p.weight_memory_words + 1)
        # A queued TMV with its groups at every k (ceil(rows / k)), found as it enters, so that
        # its start needs only a choice and a product.
        entry = data.StructLayout({"instruction": instruction_layout(p), "buffer": 1,
                                   "groups": data.ArrayLayout(groups_shape, choices)})
        queued = Signal(entry, name="queued")
        rows = self.instruction.payload.length
        m.d.comb += [queued.instruction.eq(self.instruction.payload),
                     queued.buffer.eq(self.buffer),
                     *(queued.groups[log2].eq((rows + (1 << log2) - 1) >> log2)
                       for log2 in range(choices))]
        queue = InstructionQueue(m, self.instruction, entry, self._queue, entry=queued)
        head = queue.payload.instruction

        # The start: the command register from the head, its buffer's layout and its scale.
        m.submodules.argmax_flags = flags = fifo.SyncFIFOBuffered(width=1, depth=_ARGMAX_FLAGS)
        start = queue.valid & self.go & (~self.command.valid | self.command.ready) & flags.w_rdy
        queue.take(m, start)
        m.d.comb += [self.read.eq(start), flags.w_en.eq(start),
                     flags.w_data.eq((head.flags & Flag.ARGMAX) != 0)]
        buffer = queue.payload.buffer
        layout = self.layouts[buffer]
        fields = self.command.payload
        with m.If(self.command.ready):
            m.d.sync += self.command.valid.eq(0)
        with m.If(start):
            m.d.sync += [
                self.command.valid.eq(1),
                fields.weight_start.eq(head.imm), fields.rows.eq(head.length),
                fields.segments_log2.eq(layout.segments_log2), fields.beats.eq(layout.beats),
                fields.words.eq(queue.payload.groups[layout.segments_log2] * layout.beats),
                fields.activation_start.eq(Mux(buffer, activation_words(p, segments), 0)),
                fields.dst.eq(head.dst), fields.scale.eq(self.scales[head.b]),
                fields.no_write.eq((head.flags & Flag.NO_WRITE) != 0),
            ]

        # Done beats in order: those of ARGMAX TMVs set the token register.
        m.d.comb += [self.done.ready.eq(1), flags.r_en.eq(self.done.valid),
                     self.set_token.ready.eq(1)]
        with m.If(self.done.valid & flags.r_data):
            m.d.sync += self.token.eq(self.done.payload.token)
        with m.If(self.set_token.valid):
            m.d.sync += self.token.eq(self.set_token.payload)
        return m
