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
- ``activation_start``: the buffer's first word, ``no_write`` from the flags.

:class:`MatrixReader` queues up to ``queue`` TMVs. When the head's ``go`` is high it *starts* it
(the scoreboard's ``read``): reads the buffer's layout (final then: the scoreboard starts a TMV
only after every older QUANT's last write) into the command register, so the matrix pipe has
the command the cycle after ``go``.

Its scale, register ``b``, goes to the pipe's ``scale`` stream on its own, in start order,
once :class:`~.quant_results.QuantResults` says that the register holds its latest QUANT's
scale (``scale_ready``): a QUANT's output scale comes some cycles after its last values, and
the pipe needs it only when the TMV's first row sums reach its scaler, so the reads start
without it. That scale is the golden model's (``scales[b]`` in program order) because every
older QUANT has begun its values when the TMV starts, and no younger QUANT that writes ``b``
may begin before the TMV is released (the scoreboard's rule for a QUANT's second pass): so the
reader passes the pipe's ``released`` pulse of a TMV on as ``release`` only once it has sent
that TMV's scale.

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
    released : ``In(1)``; release : ``Out(1)``
        The pipe's pulse of a TMV's last activation read, and the scoreboard's: the same, once
        the TMV's scale is sent.
    scales : ``In(data.ArrayLayout(scale_layout(params), SCALE_REGISTERS))``
    scale_ready : ``In(SCALE_REGISTERS)``
        :class:`~.quant_results.QuantResults`' registers and which of them are final.
    layouts : ``In(data.ArrayLayout(quant_results.buffer_layout(params, S), 2))``
    command : ``Out(stream.Signature(matrix_pipe.command_layout(params, S)))``
    scale : ``Out(stream.Signature(scale_layout(params)))``
        The started TMVs' scales, in order.
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
            "released": In(1),
            "release": Out(1),
            "scales": In(data.ArrayLayout(scale_layout(params), SCALE_REGISTERS)),
            "scale_ready": In(SCALE_REGISTERS),
            "layouts": In(data.ArrayLayout(buffer_layout(params, max_segments), 2)),
            "command": Out(stream.Signature(matrix_pipe.command_layout(params, max_segments))),
            "scale": Out(stream.Signature(scale_layout(params))),
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

        # The start: the command register from the head and its buffer's layout; its scale
        # register into the queue of scales to send.
        m.submodules.argmax_flags = flags = fifo.SyncFIFOBuffered(width=1, depth=_ARGMAX_FLAGS)
        m.submodules.scale_registers = registers = fifo.SyncFIFOBuffered(
            width=(SCALE_REGISTERS - 1).bit_length(), depth=_ARGMAX_FLAGS)
        start = (queue.valid & self.go & (~self.command.valid | self.command.ready)
                 & flags.w_rdy & registers.w_rdy)
        queue.take(m, start)
        m.d.comb += [self.read.eq(start), flags.w_en.eq(start),
                     flags.w_data.eq((head.flags & Flag.ARGMAX) != 0),
                     registers.w_en.eq(start), registers.w_data.eq(head.b)]
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
                fields.dst.eq(head.dst),
                fields.no_write.eq((head.flags & Flag.NO_WRITE) != 0),
            ]

        # The scales, each once its register is final; releases only of TMVs whose scale is
        # sent (`owed`: the pipe's pulses not passed on; `sent`: scales sent, TMVs not released).
        register = registers.r_data
        send = (registers.r_rdy & self.scale_ready.bit_select(register, 1)
                & (~self.scale.valid | self.scale.ready))
        m.d.comb += registers.r_en.eq(send)
        with m.If(self.scale.ready):
            m.d.sync += self.scale.valid.eq(0)
        with m.If(send):
            m.d.sync += [self.scale.valid.eq(1), self.scale.payload.eq(self.scales[register])]
        owed = Signal(range(_ARGMAX_FLAGS + 1))
        sent = Signal(range(_ARGMAX_FLAGS + 1))
        m.d.comb += self.release.eq(((owed != 0) | self.released) & (sent != 0))
        m.d.sync += [owed.eq(owed + self.released - self.release),
                     sent.eq(sent + send - self.release)]

        # Done beats in order: those of ARGMAX TMVs set the token register.
        m.d.comb += [self.done.ready.eq(1), flags.r_en.eq(self.done.valid),
                     self.set_token.ready.eq(1)]
        with m.If(self.done.valid & flags.r_data):
            m.d.sync += self.token.eq(self.done.payload.token)
        with m.If(self.set_token.valid):
            m.d.sync += self.token.eq(self.set_token.payload)
        return m
