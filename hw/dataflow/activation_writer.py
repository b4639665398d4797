"""The activation writer: a QUANT's int8 results into an activation buffer in the segmented layout
that the TMVs reading it take (issue 15, ``docs/dataflow.md``).

A TMV with ``k`` rows a word reads activation beats that hold ``x[c*w .. c*w + w - 1]`` in each
of its ``k`` segments (``w = P / k``; :func:`tern_fpga.contracts.segmented_layout.
segmented_activation_words`). The writer puts each beat of ``V`` quantised elements into every
segment of its word at once: the beat's bytes repeat across the ``8 * P``-bit write data, and
the byte enables select the beat's ``V`` lanes in each segment. One beat a cycle, no stall:
the buffer's write port always takes a write.

Lanes past the command's ``length`` in its last beat are not written, so a buffer holds, past
the last QUANT's length, whatever it held before (undefined, as ``docs/isa.md`` has it; the
weights there are zero).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.dataflow.matrix_pipe import activation_words
from tern_fpga.hw.dataflow.pipeline import CommandBeats

__all__ = ["ActivationWriter", "command_layout", "values_layout"]


def command_layout(params: AcceleratorParameters, max_segments: int) -> data.StructLayout:
    """One QUANT's writes: ``start`` (the buffer's first word), ``segments_log2`` (``log2 k`` of
    the TMVs that read it) and ``length`` (elements, 1 to ``max_features``)."""
    return data.StructLayout({
        "start": range(2 * activation_words(params, max_segments)),
        "segments_log2": range(max_segments.bit_length()),
        "length": range(1, params.max_features + 1),
    })


def values_layout(params: AcceleratorParameters) -> data.ArrayLayout:
    """Payload of ``values``: ``V`` int8 activations, element ``i * V + j`` in lane ``j`` of
    beat ``i``."""
    return data.ArrayLayout(signed(8), params.vector_lanes)


class ActivationWriter(wiring.Component):
    """Quantised activations into a segmented activation buffer, one beat of ``V`` a cycle.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
        Gives ``P``, ``V`` and ``max_features``.
    max_segments : int
        ``S``, as the matrix unit's: the most segments a word may have.

    Members
    -------
    command : ``In(stream.Signature(command_layout(params, max_segments)))``
    values : ``In(stream.Signature(values_layout(params)))``
        ``ceil(length / V)`` beats a command.
    write_addr, write_data, write_en : ``Out``
        The buffer's write port (``8 * P`` bits, one enable a byte), registered.
    busy : ``Out(1)``
        High while a command is in progress or its last write is on the port.

    Raises
    ------
    ValueError
        If ``max_segments`` is not a power of two, or a segment (``P / max_segments`` lanes)
        is narrower than ``V`` or not a multiple of it.
    """

    def __init__(self, params: AcceleratorParameters, *, max_segments: int):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        lanes, ternary = params.vector_lanes, params.ternary_lanes
        if max_segments < 1 or max_segments & (max_segments - 1):
            raise ValueError(f"max_segments must be a power of two, not {max_segments!r}")
        width = ternary // max_segments
        if width < lanes or width % lanes:
            raise ValueError(f"a segment of P/S = {ternary}/{max_segments} lanes must hold whole "
                             f"beats of V={lanes}; use at most S={ternary // lanes}")
        self._params = params
        self._max_segments = max_segments
        super().__init__({
            "command": In(stream.Signature(command_layout(params, max_segments))),
            "values": In(stream.Signature(values_layout(params))),
            "write_addr": Out(range(2 * activation_words(params, max_segments))),
            "write_data": Out(8 * ternary),
            "write_en": Out(ternary),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        params = self._params
        lanes, ternary = params.vector_lanes, params.ternary_lanes
        chunks = ternary // lanes                   # beats of V lanes in a whole word
        command = self.command.payload
        beats = CommandBeats(m, self.command, lanes, params.max_features)
        address = Signal.like(self.write_addr)
        chunk = Signal(range(chunks))               # the beat's place within its segment
        last_chunk = Signal(range(chunks))          # a segment's beats less one: also a mask

        fire = beats.active & self.values.valid
        m.d.comb += self.values.ready.eq(beats.active)
        with m.If(fire):
            wrap = chunk == last_chunk
            m.d.sync += [chunk.eq(Mux(wrap, 0, chunk + 1)), address.eq(address + wrap)]
        beats.step(m, fire)
        # After the counters' update, so that a command taken with the last beat wins.
        with m.If(self.command.valid & self.command.ready):
            m.d.sync += [address.eq(command.start), chunk.eq(0),
                         last_chunk.eq((chunks >> command.segments_log2) - 1)]

        # The write: chunk J of the word takes the beat when J's place in its segment is the
        # beat's (J modulo the segment's chunks, a power of two: J & last_chunk).
        enables = Cat(Mux((index & last_chunk) == chunk, beats.mask, 0)
                      for index in range(chunks))
        m.d.sync += [
            self.write_addr.eq(address),
            self.write_data.eq(self.values.payload.as_value().replicate(chunks)),
            self.write_en.eq(Mux(fire, enables, 0)),
        ]
        m.d.comb += self.busy.eq(beats.active | self.write_en.any())
        return m
