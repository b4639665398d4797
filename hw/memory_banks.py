"""One logical memory built from several :class:`~amaranth.lib.memory.Memory` banks.

Block RAM comes in fixed shapes (the ECP5's DP16KD is 16 Kbit: 16384 x 1 up to 512 x 36), so a
memory whose depth is not one of them wastes a whole row of blocks on its last few words, and a
memory read through more ports than a block has is copied whole. :class:`BankedMemory` cuts a
memory into address ranges (banks), each its own ``Memory``, and gives every logical read
port only the banks it needs:

- the weight memory: ``8448 = 8192 + 256`` words, so the 256-word tail takes 8 blocks in the
  512 x 36 shape instead of a ninth 1024-word row of 15 or 16;
- the vector memory: a *work* bank that both operand ports read (copied, since the result
  writer also needs a port) and a *constants* bank (the norm weights) that only operand ``b``
  reads, so it is stored once.

A read port's data comes from the bank its address was in one cycle earlier (the bank index is
registered with the same enable as the read), so a banked read behaves like one ``Memory``
read port without transparency. A read port that does not reach a bank returns that bank's
neighbour's data for it: the golden model refuses programs that would do so.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib.memory import Memory

__all__ = ["BankedMemory", "MemoryPort", "tail_banks"]


class MemoryPort:
    """The signals of one logical port, shaped like a ``Memory`` port's: ``addr``, ``en`` and
    ``data`` (``en`` is one bit a ``granularity``-bit chunk on a write port)."""

    def __init__(self, name: str, depth: int, width: int, en_width: int = 1):
        self.addr = Signal(range(max(depth, 2)), name=f"{name}_addr")
        self.en = Signal(en_width, name=f"{name}_en")
        self.data = Signal(width, name=f"{name}_data")


def tail_banks(depth: int, row: int = 1024) -> list[int]:
    """Bank depths for ``depth`` words: whole rows of ``row`` words, then the tail (if any)
    in a bank of its own."""
    head = depth - depth % row
    return [bank for bank in (head, depth - head) if bank]


class BankedMemory:
    """A ``width``-bit memory of ``sum(banks)`` words, elaborated into ``m`` as
    ``<name>_bank<i>`` submodules.

    Parameters
    ----------
    m : Module
        The module the banks become submodules of.
    name : str
        Prefix of the banks' names.
    width : int
        Bits a word.
    banks : list of int
        Depth of each bank, in address order.
    read_banks : list of list of int
        For each logical read port, the banks it reads.
    granularity : int or None
        Write granularity in bits (``None``: whole words).
    init : sequence of int
        Initial contents, in address order.

    Members
    -------
    read : list of MemoryPort
        The logical read ports.
    write : MemoryPort
        The one logical write port (``en`` has one bit per ``granularity`` chunk).
    """

    def __init__(self, m: Module, name: str, width: int, banks: list[int],
                 read_banks: list[list[int]], granularity: int | None = None,
                 init=(), attrs=None):
        if not banks or any(depth <= 0 for depth in banks):
            raise ValueError(f"bank depths must be positive, not {banks!r}")
        self.depth = sum(banks)
        self.banks = banks
        starts = [sum(banks[:index]) for index in range(len(banks))]
        init = list(init)
        chunks = 1 if granularity is None else width // granularity
        self.write = MemoryPort(f"{name}_write", self.depth, width, chunks)
        self.read = [MemoryPort(f"{name}_read{index}", self.depth, width)
                     for index in range(len(read_banks))]
        memories = []
        for index, (start, depth) in enumerate(zip(starts, banks)):
            memory = Memory(shape=unsigned(width), depth=depth,
                            init=init[start:start + depth], attrs=attrs)
            m.submodules[f"{name}_bank{index}"] = memory
            memories.append(memory)
            port = memory.write_port() if granularity is None else \
                memory.write_port(granularity=granularity)
            inside = self.write.addr < start + depth
            if start:  # (a comparison with 0 is constant, and Verilator's lint says so)
                inside &= self.write.addr >= start
            m.d.comb += [port.addr.eq(self.write.addr - start), port.data.eq(self.write.data),
                         port.en.eq(Mux(inside, self.write.en, 0))]

        def bank_of(address):
            index = 0
            for bank, start in enumerate(starts[1:], 1):
                index = Mux(address >= start, bank, index)
            return index

        for read, reached in zip(self.read, read_banks):
            selected = Signal(range(max(len(banks), 2)), name=f"{read.addr.name}_bank")
            with m.If(read.en):
                m.d.sync += selected.eq(bank_of(read.addr))
            data = None
            for bank in reached:
                port = memories[bank].read_port()
                m.d.comb += [port.addr.eq(read.addr - starts[bank]), port.en.eq(read.en)]
                data = port.data if data is None else Mux(selected == bank, port.data, data)
            m.d.comb += read.data.eq(data)
