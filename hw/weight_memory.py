"""The weight memory behind the core: the interface, and its block-RAM backend.

The core reads the weight memory in two ways, and :class:`WeightMemorySignature` carries both:

``matrix``
    A TMV's weight words, one per ``en``, in address order from the word that ``prefetch``
    named. The core drives ``addr`` and ``en``; ``data`` holds the word one cycle after ``en``
    (like a block-RAM read port without transparency) until the next ``en``. ``available``
    says that ``en`` may be raised this cycle: a backend that streams from external memory
    lowers it while its read-ahead buffer is empty. The core raises ``en`` only while
    ``available`` is high and only for the words that it announced.
``prefetch``
    One transfer when a TMV starts: ``start`` (its first word) and ``words`` (how many it will
    read, in order). A backend with read-ahead starts fetching here; block RAM ignores it.
``host``, ``host_response``
    The host's 32-bit accesses (``address`` in 32-bit words within the weight space, as
    :mod:`tern_fpga.hw.core_interface` defines them), while the core is idle: every read gets
    one response, in order; a write gets none, and a read after a write sees the written word.

``embedding_request``, ``embedding_data`` (only in ``WeightMemorySignature(params,
embeddings=True)``: a backend that also holds the embeddings)
    One request when an EMBED starts: ``start`` (its first int16 element) and ``elements``
    (how many, a whole number of ``V``-element words); the backend answers with the elements
    as a stream of ``V``-element words (int16 each, element ``k`` in bits ``16k + 15 .. 16k``),
    in order. The host's accesses then also reach the embeddings: ``embeddings`` set in a host
    request addresses the EMBEDDING space (32-bit words, two elements each) instead of the
    weights.

``status``, from the backend: 0 while the memory is usable, else a backend-defined fault code
that IDENTIFY/STATUS report (an external memory that failed its initialisation).

:class:`BlockRAMWeights` is the backend of the on-chip designs: the weight words in block RAM
(:class:`~tern_fpga.hw.memory_banks.BankedMemory`, a depth that is not whole rows keeps its tail
in a bank of its own) with one read port shared by ``matrix`` and ``host``. Its words are written
whole (no lane enables, so block RAM packs them tighter): a host write reads the word, then
writes it back with one 32-bit lane replaced, taking two cycles. ``available`` is always high, so
the core's cycle count is the same as with the memory inside it.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.core_interface import MEMORY_STATUS_BITS, address_bits
from tern_fpga.hw.memory_banks import BankedMemory, tail_banks

__all__ = ["EMBEDDING_ELEMENT_BITS", "BlockRAMWeights", "WeightMemorySignature",
           "embedding_request_layout", "host_request_layout", "prefetch_layout",
           "weight_word_bits"]

STATUS_BITS = MEMORY_STATUS_BITS
EMBEDDING_ELEMENT_BITS = 16


def weight_word_bits(params: AcceleratorParameters) -> int:
    """Bits of one weight word: ``P`` 2-bit codes."""
    return 2 * params.ternary_lanes


def prefetch_layout(params: AcceleratorParameters) -> data.StructLayout:
    """``start`` (first word of a TMV) and ``words`` (how many it reads, at least 1)."""
    words = params.weight_memory_words
    return data.StructLayout({"start": range(words), "words": range(1, words + 1)})


def host_request_layout(params: AcceleratorParameters) -> data.StructLayout:
    """A host access: ``address`` in 32-bit words, ``write_data``, ``write``, and
    ``embeddings`` (the EMBEDDING space rather than the weights; only for a backend that holds
    the embeddings)."""
    return data.StructLayout({"address": address_bits(params), "write_data": 32, "write": 1,
                              "embeddings": 1})


def embedding_request_layout(params: AcceleratorParameters) -> data.StructLayout:
    """``start`` (first int16 element of an EMBED's row) and ``elements`` (how many)."""
    elements = params.embedding_memory_words
    return data.StructLayout({"start": range(elements), "elements": range(1, elements + 1)})


class WeightMemorySignature(wiring.Signature):
    """The weight memory as the core sees it (``Out``: driven by the core); a backend has the
    flipped signature. See the module's description for the members' meaning."""

    def __init__(self, params: AcceleratorParameters, *, embeddings: bool = False):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        self.params = params
        self.embeddings = bool(embeddings)
        words = params.weight_memory_words
        members = {
            "matrix_addr": Out(range(words)),
            "matrix_en": Out(1),
            "matrix_data": In(weight_word_bits(params)),
            "matrix_available": In(1),
            "prefetch": Out(stream.Signature(prefetch_layout(params))),
            "host": Out(stream.Signature(host_request_layout(params))),
            "host_response": In(stream.Signature(32)),
            "status": In(STATUS_BITS),
        }
        if self.embeddings:
            members["embedding_request"] = Out(stream.Signature(embedding_request_layout(params)))
            members["embedding_data"] = In(stream.Signature(
                EMBEDDING_ELEMENT_BITS * params.vector_lanes))
        super().__init__(members)

    def __eq__(self, other):
        return (isinstance(other, WeightMemorySignature) and other.params == self.params
                and other.embeddings == self.embeddings)

    def __hash__(self):
        return hash((self.params, self.embeddings))

    def __repr__(self):
        return (f"WeightMemorySignature({self.params.name!r}"
                f"{', embeddings=True' if self.embeddings else ''})")


class BlockRAMWeights(wiring.Component):
    """The weight memory in block RAM (see the module's description).

    Parameters
    ----------
    params : AcceleratorParameters
        ``weight_memory_words`` words of ``2 * ternary_lanes`` bits.
    """

    def __init__(self, params: AcceleratorParameters):
        self._params = params
        super().__init__(WeightMemorySignature(params).flip())

    def elaborate(self, platform):
        m = Module()
        p = self._params
        width = weight_word_bits(p)
        lanes = width // 32
        banks = tail_banks(p.weight_memory_words)
        memory = BankedMemory(m, "weights", width, banks, read_banks=[list(range(len(banks)))])
        read, write = memory.read[0], memory.write
        m.d.comb += [self.matrix_available.eq(1), self.prefetch.ready.eq(1),
                     self.matrix_data.eq(read.data), self.status.eq(0)]

        request = self.host.payload
        word = request.address // lanes if lanes > 1 else request.address
        lane_bits = max((lanes - 1).bit_length(), 1)
        response_pending = Signal()
        response_lane = Signal(lane_bits)
        merge_pending = Signal()       # the word was read for a host write: write it back now

        def lane_of(value, lane):
            return value.word_select(lane, 32) if lanes > 1 else value

        m.d.comb += [self.host_response.valid.eq(response_pending),
                     self.host_response.payload.eq(lane_of(read.data, response_lane))]
        with m.If(self.host_response.ready):
            m.d.sync += response_pending.eq(0)

        host_read = Signal()
        with m.If(self.host.valid & ~response_pending):
            with m.If(request.write):
                m.d.sync += merge_pending.eq(~merge_pending)
                with m.If(merge_pending):
                    lane = request.address[:lane_bits] if lanes > 1 else 0
                    m.d.comb += [
                        self.host.ready.eq(1),
                        write.addr.eq(word),
                        write.data.eq(Cat(Mux(lane == index, request.write_data,
                                              lane_of(read.data, index))
                                          for index in range(lanes))),
                        write.en.eq(1)]
                with m.Else():
                    m.d.comb += host_read.eq(1)
            with m.Else():
                m.d.comb += [self.host.ready.eq(1), host_read.eq(1)]
                m.d.sync += [response_pending.eq(1),
                             response_lane.eq(request.address[:lane_bits] if lanes > 1 else 0)]
        m.d.comb += [read.addr.eq(Mux(host_read, word, self.matrix_addr)),
                     read.en.eq(host_read | self.matrix_en)]
        return m
