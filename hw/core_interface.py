"""The interface between the host link's protocol engine and the accelerator core.

The protocol engine (:class:`tern_fpga.hw.protocol_engine.ProtocolEngine`) drives it; the core (the
sequencer that runs the program) implements the flipped signature. Everything the host can do
to the core goes through these ports::

    engine                                         core
    memory_request  --(space, address, write_data, write)-->   one 32-bit word at a time
    memory_response <--(read_data)-------------------------    one per read, in order
    run             --(entry, token)------------------------>   run the program once
    done            <--(token)------------------------------    the run's ARGMAX token
    cycles, instructions, busy  <--------------------------    counters, read at any time
    memory_status   <--------------------------------------    the weight memory's fault code

Contract
--------
Memory requests are taken in order. A read gets exactly one ``memory_response`` beat, in the
order of the reads; a write gets none, and a read after a write sees the written word. Wider
memories are addressed as consecutive little-endian 32-bit words (a 128-bit instruction is four
words, lowest bits first; a ``P * 2``-bit weight word ``P / 16`` words, or half a word for
``P = 8``; an int64 constant two); int16 embeddings are packed two a word, element ``2k`` in
bits 15..0. The core does that packing and unpacking; sizes in words are
:func:`tern_fpga.contracts.protocol.space_words`, and the engine never sends an address outside
them. In the ``TABLES`` space the sigmoid table starts at word 0 and the rsqrt table at
``2 << sigmoid_table_bits`` (:func:`tern_fpga.contracts.protocol.table_offsets`). The core must take
memory requests whenever it is not running; the engine sends none while ``busy`` is high.

A ``run`` beat starts one execution of the program at ``entry`` with the token register set to
``token``; when the program halts, the core sends one ``done`` beat carrying the token register
(the argmax written by the program's ``TMV`` with the ``ARGMAX`` flag). The engine sends the next
``run`` only after that ``done``. ``cycles`` counts cycles spent running (48 bits),
``instructions`` instructions executed (32 bits), both since reset and wrapping; ``busy`` is high
from the ``run`` transfer until the ``done`` transfer. ``memory_status`` is 0 while the weight
memory works and a fault code otherwise (1: external memory not initialised, see
:mod:`tern_fpga.hw.weight_memory`); the engine reports it in STATUS.

``address`` is :func:`address_bits` wide, the 24 bits of the ISA's
address fields or more when a space needs it (the ``large`` preset's weight memory is 2**28
words), so that the interface reaches every word of every preset.
"""

from __future__ import annotations

from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.contracts.protocol import MemorySpace, space_words

__all__ = [
    "CYCLE_COUNTER_BITS",
    "ENTRY_BITS",
    "INSTRUCTION_COUNTER_BITS",
    "MEMORY_STATUS_BITS",
    "TOKEN_BITS",
    "CoreInterface",
    "MemorySpace",
    "address_bits",
    "memory_request_layout",
    "run_layout",
]

TOKEN_BITS = 16
ENTRY_BITS = 24  # the ISA's address width
CYCLE_COUNTER_BITS = 48
INSTRUCTION_COUNTER_BITS = 32
MEMORY_STATUS_BITS = 4


def address_bits(params: AcceleratorParameters) -> int:
    """Width of a memory request's word address: 24, or more if a space needs it."""
    largest = max(space_words(params).values())
    return max(24, (largest - 1).bit_length())


def memory_request_layout(params: AcceleratorParameters) -> data.StructLayout:
    """One memory access: ``space`` (a :class:`MemorySpace`), ``address`` in 32-bit words
    within the space, ``write_data``, and ``write`` (1 writes, 0 reads)."""
    return data.StructLayout({
        "space": unsigned(3),
        "address": unsigned(address_bits(params)),
        "write_data": unsigned(32),
        "write": unsigned(1),
    })


run_layout = data.StructLayout({
    "entry": unsigned(ENTRY_BITS),
    "token": unsigned(TOKEN_BITS),
})


class CoreInterface(wiring.Signature):
    """The engine's view of the core; the core implements ``CoreInterface(params).flip()``.

    Parameters
    ----------
    params : AcceleratorParameters

    Members
    -------
    memory_request : ``Out(stream.Signature(memory_request_layout(params)))``
    memory_response : ``In(stream.Signature(32))``
        ``read_data`` of each read, in order.
    run : ``Out(stream.Signature(run_layout))``
    done : ``In(stream.Signature(16))``
        The token of each finished run.
    cycles : ``In(48)``
    instructions : ``In(32)``
    busy : ``In(1)``
    memory_status : ``In(4)``
    """

    def __init__(self, params: AcceleratorParameters):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        self._params = params
        super().__init__({
            "memory_request": Out(stream.Signature(memory_request_layout(params))),
            "memory_response": In(stream.Signature(32)),
            "run": Out(stream.Signature(run_layout)),
            "done": In(stream.Signature(TOKEN_BITS)),
            "cycles": In(CYCLE_COUNTER_BITS),
            "instructions": In(INSTRUCTION_COUNTER_BITS),
            "busy": In(1),
            "memory_status": In(MEMORY_STATUS_BITS),
        })

    @property
    def params(self) -> AcceleratorParameters:
        return self._params

    def __eq__(self, other):
        return isinstance(other, CoreInterface) and self._params == other._params

    def __hash__(self):
        return hash(self._params)

    def __repr__(self):
        return f"CoreInterface({self._params.name!r})"
