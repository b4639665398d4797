"""The host's reads and writes of the dataflow core's memories (issue 15, ``docs/dataflow.md``):
:class:`~tern_fpga.hw.core_interface.CoreInterface`'s ``memory_request`` and
``memory_response`` on the program, weight, vector, embedding and constants memories, and the
tables.

Every memory is reached through a :func:`window_signature`: a memory word address, a write of
32-bit slices of a word (the data replicated, an enable a slice of ``granularity`` bits, as an
Amaranth write port with that granularity takes it) and a read (the word one cycle after
``read_en``, as a block-RAM read port gives it). The host's address in 32-bit words (the
protocol's, :func:`tern_fpga.contracts.protocol.space_words`) is the memory word
``address // (width / 32)`` and the slice ``address % (width / 32)``, least significant first:
an instruction is four words, a weight word ``P / 16``, a vector word ``V`` elements, an
embedding word ``V / 2`` (two int16 a word, element ``2k`` in bits 15..0), a constant two.

The core takes memory requests only while it is idle (CoreInterface's rule): the windows share
the units' read ports and the vector memory's write port, which are free then.

The ``TABLES`` space (the sigmoid and rsqrt tables) is not a memory of this core: its units hold
the tables that the parameters give (:func:`tern_fpga.contracts.numerics.sigmoid_table`,
:func:`~tern_fpga.contracts.numerics.rsqrt_table`) as ROMs. A read answers those words from a
ROM here; a write is taken and changes nothing (an export of these parameters holds the same
tables, which the host checks by reading them back).
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.contracts.protocol import MemorySpace, space_words

# The TABLES space's words, as the committed core answers them (hw/core.py is part of the
# bitstreams' build id, so its helper keeps its name).
from tern_fpga.hw.core import _table_words as table_words
from tern_fpga.hw.core_interface import memory_request_layout
from tern_fpga.hw.dataflow.pipeline import shared_read_port

__all__ = ["WINDOW_SPACES", "HostAccess", "Window", "connect_window", "core_windows",
           "table_words", "window_signature"]

#: The spaces that are memories of the core, each reached through a window.
WINDOW_SPACES = (MemorySpace.PROGRAM, MemorySpace.WEIGHTS, MemorySpace.VECTOR,
                 MemorySpace.EMBEDDING, MemorySpace.CONSTANTS)


@dataclasses.dataclass(frozen=True)
class Window:
    """The shape of one memory as the host reaches it: ``depth`` words of ``width`` bits,
    written in slices of ``granularity`` bits (at most 32, dividing it)."""

    depth: int
    width: int
    granularity: int = 32

    def __post_init__(self):
        slices = self.width // 32
        if self.width % 32 or 32 % self.granularity or slices & (slices - 1):
            raise ValueError(f"a window of {self.width}-bit words written {self.granularity} "
                             f"bits at a time cannot take 32-bit host words; the width must be "
                             f"a power of two times 32 and the granularity divide 32")

    @property
    def slices(self) -> int:
        """32-bit host words a memory word (a power of two)."""
        return self.width // 32

    @property
    def slice_bits(self) -> int:
        """The host address's bits that choose the slice."""
        return (self.slices - 1).bit_length()


def window_signature(window: Window) -> wiring.Signature:
    """The host's port on one memory (the host's side: ``Out`` to the memory)."""
    return wiring.Signature({
        "addr": Out(range(max(window.depth, 2))),
        "write_data": Out(window.width),
        "write_en": Out(window.width // window.granularity),
        "read_en": Out(1),
        "read_data": In(window.width),
    })


def connect_window(m, window, memory: Memory, read_port, name: str):
    """The host's ``window`` (a :func:`window_signature` port) on ``memory``: a write port of
    its own (the window's granularity) and reads on ``read_port`` (the unit's, which the host
    uses only while the core is idle). Returns the unit's read port in its place (a
    :class:`~tern_fpga.hw.memory_banks.MemoryPort`: ``addr``, ``en``, ``data``)."""
    write = memory.write_port(granularity=len(window.write_data) // len(window.write_en))
    host_read, unit_read = shared_read_port(m, read_port, f"{name}_host_read",
                                            f"{name}_unit_read")
    m.d.comb += [write.addr.eq(window.addr), write.data.eq(window.write_data),
                 write.en.eq(window.write_en),
                 host_read.addr.eq(window.addr), host_read.en.eq(window.read_en),
                 window.read_data.eq(host_read.data)]
    return unit_read


def core_windows(params: AcceleratorParameters, *, weight_words: int | None = None) -> dict:
    """The dataflow core's memories as windows, by space: the program (128-bit instructions),
    the weights (``2 P`` bits a word; ``weight_words`` of them, by default the preset's),
    the vector memory (``V`` elements), the embeddings (``V`` int16) and the constants
    (int64, ``program_words`` of them).

    Raises
    ------
    ValueError
        If a memory's word is not a whole number of 32-bit host words (``P < 16`` or
        ``V = 1``: those presets' memories need a packing window, which this core lacks).
    """
    lanes = params.vector_lanes
    if params.ternary_lanes < 16 or lanes < 2:
        raise ValueError(f"P = {params.ternary_lanes}, V = {lanes}: the dataflow core's host "
                         f"windows need P >= 16 and V >= 2 (whole 32-bit words a memory word)")
    return {
        MemorySpace.PROGRAM: Window(params.program_words, 128),
        MemorySpace.WEIGHTS: Window(weight_words or params.weight_memory_words,
                                    params.weight_word_bits),
        MemorySpace.VECTOR: Window(params.vector_memory_words // lanes,
                                   params.vector_bits * lanes, params.vector_bits),
        MemorySpace.EMBEDDING: Window(params.embedding_memory_words // lanes,
                                      params.embedding_bits * lanes, params.embedding_bits),
        MemorySpace.CONSTANTS: Window(params.program_words, 64),
    }


class HostAccess(wiring.Component):
    """Memory requests in, responses out, one request at a time; a window a memory.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
    windows : dict
        :class:`Window` by :class:`~tern_fpga.contracts.protocol.MemorySpace`, one for each
        of :data:`WINDOW_SPACES` (:func:`core_windows`).

    Members
    -------
    request : ``In(stream.Signature(core_interface.memory_request_layout(params)))``
    response : ``Out(stream.Signature(32))``
        One beat a read, in order; three cycles after the read is taken at the soonest.
    program, weights, vector, embedding, constants : ``Out(window_signature(window))``
    """

    def __init__(self, params: AcceleratorParameters, windows: dict):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        missing = [space.name for space in WINDOW_SPACES if space not in windows]
        if missing:
            raise ValueError(f"no window for {', '.join(missing)}: give one for each of "
                             f"{', '.join(space.name for space in WINDOW_SPACES)}")
        self._params, self._windows = params, dict(windows)
        super().__init__({
            "request": In(stream.Signature(memory_request_layout(params))),
            "response": Out(stream.Signature(32)),
            **{space.name.lower(): Out(window_signature(windows[space]))
               for space in WINDOW_SPACES},
        })

    def elaborate(self, platform):
        m = Module()
        params = self._params
        request = self.request.payload
        tables = table_words(params)
        m.submodules.tables = table_memory = Memory(
            shape=32, depth=space_words(params)[MemorySpace.TABLES], init=tables)
        table_read = table_memory.read_port()

        # A read: the memory's read in the cycle it is taken, its word the next cycle, each
        # window's slice into a register of its own the cycle after, the space's register into
        # the response register the cycle after that (one mux a stage: from a block RAM's
        # output through the slice and the space muxes in one cycle was the micro core's
        # critical path, docs/dataflow.md); no request is taken until the response is.
        reading = Signal()                      # the memory's word is at its read port
        choosing = Signal()                     # each window's slice is in its register
        responding = Signal()
        space = Signal.like(request.space)
        slice_index = Signal(max(max(w.slice_bits for w in self._windows.values()), 1))
        take = self.request.valid & ~reading & ~choosing & ~responding
        m.d.comb += [self.request.ready.eq(take),
                     table_read.addr.eq(request.address),
                     table_read.en.eq(take & (request.space == MemorySpace.TABLES)
                                      & ~request.write)]
        slices = {MemorySpace.TABLES: Signal(32, name="tables_slice")}
        for name, window in self._windows.items():
            port = getattr(self, name.name.lower())
            enables = 32 // window.granularity  # write enables a host word
            part = request.address[:window.slice_bits]
            selected = take & (request.space == name)
            m.d.comb += [port.addr.eq(request.address >> window.slice_bits),
                         port.write_data.eq(request.write_data.replicate(window.slices)),
                         port.read_en.eq(selected & ~request.write)]
            with m.If(selected & request.write):
                m.d.comb += port.write_en.eq(((1 << enables) - 1) << (part * enables))
            slices[name] = Signal(32, name=f"{name.name.lower()}_slice")
            with m.If(reading):
                m.d.sync += slices[name].eq(
                    port.read_data.word_select(slice_index[:window.slice_bits], 32)
                    if window.slices > 1 else port.read_data)
        with m.If(take & ~request.write):
            m.d.sync += [reading.eq(1), space.eq(request.space),
                         slice_index.eq(request.address)]
        with m.If(reading):
            m.d.sync += [reading.eq(0), choosing.eq(1),
                         slices[MemorySpace.TABLES].eq(table_read.data)]
        with m.If(choosing):
            m.d.sync += [choosing.eq(0), responding.eq(1)]
            with m.Switch(space):
                for name, word in slices.items():
                    with m.Case(name):
                        m.d.sync += self.response.payload.eq(word)
        m.d.comb += self.response.valid.eq(responding)
        with m.If(self.response.valid & self.response.ready):
            m.d.sync += responding.eq(0)
        return m
