"""The iCE40UP5K port's unified memory (``docs/boards.md``, the iCEBreaker plan's step 1): the
weights, the embeddings and the constants bank (the norm weights) in one memory of
:data:`SPRAM_WORDS` 64-bit words, which Yosys maps to the UP5K's four ``SB_SPRAM256KA`` side
by side and nothing else.

:func:`memory_map` places the three regions; it uses no Amaranth, so the host driver and the
exporter can use it once it moves to the contracts. :class:`UnifiedMemory` holds the memory and
puts a fixed-priority mux in front of its one port, highest first:

1. ``host``: the host's 32-bit writes, which come only while the core is idle;
2. ``weights``: the TMV weight reader;
3. ``embeddings``: the EMBED reader;
4. ``constants``: NORM's operand ``b`` (the constants bank; QUANT reads none).

The core runs one of TMV, EMBED and NORM at a time on this memory, so in a correct run no two
clients ask in the same cycle. If two do, ``conflict`` is high in that cycle, the highest one is
served and the others are dropped: a dropped read leaves ``data`` at the last word read, a
dropped write is not made. The tests assert that ``conflict`` stays low.

A SPRAM has one address for reading and writing and no initial contents, so the read and write
ports share one address, the read port is not transparent and is disabled while a write happens,
and the zero ``$meminit_v2`` cell that Amaranth emits for the memory must be deleted before
synthesis (:data:`DELETE_ZERO_INIT`). ``ram_style = "huge"`` asks for SPRAM even without
``synth_ice40 -spram``.
"""

from __future__ import annotations

import dataclasses
import math

from amaranth.hdl import Cat, Module, Mux, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters

__all__ = ["DELETE_ZERO_INIT", "SPRAM_WORDS", "WORD_BITS", "ReadPortSignature", "Region",
           "UnifiedMemory", "host_write_layout", "memory_map"]

#: Words and bits a word of the four ``SB_SPRAM256KA`` side by side (each 16 K x 16 bits).
SPRAM_WORDS = 16384
WORD_BITS = 64
#: The Yosys command, for ``script_after_read``, that deletes the memory's zero initial contents
#: (its ``$meminit_v2`` cell: Amaranth names the memory ``unified_spram``, and the pattern also
#: matches the name after ``flatten``); without it ``synth_ice40 -spram`` stops with "no valid
#: mapping found". ``%i`` intersects the two sets; without it ``delete`` would remove their union,
#: the memory's read and write ports too.
DELETE_ZERO_INIT = "delete t:$meminit_v2 r:MEMID=*unified_spram %i"


@dataclasses.dataclass(frozen=True)
class Region:
    """``words`` 64-bit words of the unified memory from ``start`` on."""

    start: int
    words: int

    @property
    def stop(self) -> int:
        return self.start + self.words


def _words(elements: int, bits: int) -> int:
    """64-bit words that hold ``elements`` elements of ``bits`` bits, packed as whole words."""
    per_word, words_each = max(1, WORD_BITS // bits), math.ceil(bits / WORD_BITS)
    return math.ceil(elements / per_word) * words_each


def memory_map(params: AcceleratorParameters) -> dict[str, Region]:
    """The regions ``weights``, ``embeddings`` and ``constants`` of the unified memory, in that
    order from word 0: ``weight_memory_words`` weight words, ``embedding_memory_words``
    embedding elements and the constants bank's ``vector_memory_words - work_words`` vector
    elements (micro: 9,216 + 4,096 + 1,792 = 15,104 words). Elements narrower than 64 bits are
    packed, element ``i`` of a region in its word ``i // (64 // bits)`` from bit
    ``(i % (64 // bits)) * bits`` on; a wider one takes ``ceil(bits / 64)`` words.

    Raises
    ------
    ValueError
        If the three do not fit :data:`SPRAM_WORDS` words; the message gives each size.
    """
    sizes = {"weights": _words(params.weight_memory_words, params.weight_word_bits),
             "embeddings": _words(params.embedding_memory_words, params.embedding_bits),
             "constants": _words(params.vector_memory_words - params.work_words,
                                 params.vector_bits)}
    if sum(sizes.values()) > SPRAM_WORDS:
        listed = " + ".join(f"{words:,} ({name})" for name, words in sizes.items())
        raise ValueError(
            f"preset {params.name!r} needs {listed} = {sum(sizes.values()):,} words of 64 bits, "
            f"more than the {SPRAM_WORDS:,} of the four SPRAMs; make weight_memory_words, "
            f"embedding_memory_words or the constants bank (vector_memory_words - "
            f"vector_work_words) smaller")
    regions, start = {}, 0
    for name, words in sizes.items():
        regions[name] = Region(start, words)
        start += words
    return regions


def host_write_layout() -> data.StructLayout:
    """A host write: ``address`` in 32-bit words of the whole memory (the low half of a 64-bit
    word first), ``data``."""
    return data.StructLayout({"address": range(2 * SPRAM_WORDS), "data": 32})


class ReadPortSignature(wiring.Signature):
    """A read port as its reader sees it: ``addr`` and ``en`` out, ``data`` in, a 64-bit word
    the cycle after ``en``, held until the memory's next read."""

    def __init__(self, words: int):
        super().__init__({"addr": Out(range(max(words, 2))), "en": Out(1),
                          "data": In(WORD_BITS)})


class UnifiedMemory(wiring.Component):
    """The unified SPRAM memory with its fixed-priority mux (see the module's description).

    Parameters
    ----------
    params : AcceleratorParameters
        Sizes the regions (:func:`memory_map`).

    Members
    -------
    host : ``In(stream.Signature(host_write_layout()))``
        The host's writes, always taken (``ready`` is high).
    weights, embeddings, constants : ``In(ReadPortSignature(region.words))``
        The readers; ``addr`` counts 64-bit words from the start of the reader's region.
    conflict : ``Out(1)``
        High in a cycle where more than one client asks: an error in the core.

    Raises
    ------
    ValueError
        If ``params`` does not fit (:func:`memory_map`).
    """

    def __init__(self, params: AcceleratorParameters):
        self._regions = memory_map(params)
        super().__init__({
            "host": In(stream.Signature(host_write_layout())),
            **{name: In(ReadPortSignature(region.words))
               for name, region in self._regions.items()},
            "conflict": Out(1),
        })

    @property
    def regions(self) -> dict[str, Region]:
        return self._regions

    def elaborate(self, platform):
        m = Module()
        m.submodules.unified_spram = memory = Memory(
            shape=unsigned(WORD_BITS), depth=SPRAM_WORDS, init=[], attrs={"ram_style": "huge"})
        write = memory.write_port(granularity=16)
        read = memory.read_port()  # not transparent: the SPRAM holds its output on a write
        readers = [getattr(self, name) for name in self._regions]
        asking = [self.host.valid, *(reader.en for reader in readers)]
        addresses = [self.host.payload.address >> 1,
                     *(reader.addr + region.start
                       for reader, region in zip(readers, self._regions.values()))]
        address = 0
        for client_asks, client_address in reversed(list(zip(asking, addresses))):
            address = Mux(client_asks, client_address, address)  # the first client wins
        half = self.host.payload.address[0]
        m.d.comb += [
            write.addr.eq(address), read.addr.eq(address),  # one port: one address
            write.data.eq(Cat(self.host.payload.data, self.host.payload.data)),
            write.en.eq(Mux(self.host.valid, Mux(half, 0b1100, 0b0011), 0)),
            read.en.eq(~self.host.valid & Cat(*asking[1:]).any()),
            *[reader.data.eq(read.data) for reader in readers], self.host.ready.eq(1),
            self.conflict.eq(sum(asking) > 1),
        ]
        return m
