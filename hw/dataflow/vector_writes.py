"""The write side of the dataflow core's vector memory (issue 15, ``docs/dataflow.md``).

Three units write the vector memory: the matrix pipe (its packer's words, already addressed),
the element-wise unit and the norm unit (their results, in command order, without an address).
The memory has one write port (``docs/dataflow.md``, "The vector memory's write port": a second
one would double the work bank's copies for 61 cycles a demo token), so:

- :class:`ResultWriter` gives a unit's result beats their addresses: each command's first word
  and length come in on ``destination`` when the unit takes the command, wait in a small FIFO
  while the unit works, and its beats go out as writes of that word and the ones after it, the
  lanes past the length masked (the norm unit's beats carry no mask); a destination
  marked ``to_memory = 0`` (the norm unit's QUANT) sends its beats on to ``passed`` instead
  (the activation writer); a beat leaves one of the two only when neither holds an earlier
  one, so the unit's beats are written in order, at most one a cycle;
- :class:`WriteArbiter` takes one write a cycle from its sources, round robin (a source that
  keeps asking waits at most ``sources - 1`` cycles), into registers that drive the memory's
  write port, and says which source wrote with a pulse in the cycle the port writes: the
  scoreboard's ``write``.

:func:`tern_fpga.sim.golden.vector_writes.arbitrated_memory` is the golden model of both
together: the memory after every source's writes in order, which is what any interleaving
gives when no two sources write one word (the scoreboard's write-after-write rule).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.dataflow.matrix_pipe import write_layout
from tern_fpga.hw.row_unit import operand_layout, result_layout

__all__ = ["ResultWriter", "WriteArbiter", "destination_layout"]


def destination_layout(params: AcceleratorParameters) -> data.StructLayout:
    """A command's results: ``word`` (the vector word of its first element), ``length`` (its
    elements) and ``to_memory`` (0: its beats go on to ``passed``, not to the memory)."""
    return data.StructLayout({
        "word": range(params.vector_memory_words // params.vector_lanes),
        "length": range(1, params.max_features + 1),
        "to_memory": 1,
    })


class ResultWriter(wiring.Component):
    """A unit's result beats as addressed vector-memory writes, one a cycle.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
        Gives ``V``, the vector width and the memory's depth.
    commands : int
        How many commands' destinations the FIFO holds: at least the commands the unit may
        have taken whose last result has not come out (``destination.ready`` falls when it is
        full, and the core must not give the unit a command then).

    Members
    -------
    destination : ``In(stream.Signature(destination_layout(params)))``
        One a command, in the order the unit takes them.
    result : ``In(stream.Signature(row_unit.operand_layout(params)))``
        ``V`` lanes a beat, ``ceil(length / V)`` beats a command (the element-wise unit's
        ``data``, the norm unit's result).
    write : ``Out(stream.Signature(matrix_pipe.write_layout(params)))``
        To a :class:`WriteArbiter`: word ``destination.word + i`` for beat ``i``, the lanes
        past the length masked.
    passed : ``Out(stream.Signature(row_unit.result_layout(params)))``
        The beats of destinations with ``to_memory = 0``, with their mask and ``last``.
    """

    def __init__(self, params: AcceleratorParameters, *, commands: int = 16):
        if commands < 1:
            raise ValueError(f"the destination FIFO needs at least 1 entry, not {commands}")
        self._params, self._commands = params, commands
        super().__init__({
            "destination": In(stream.Signature(destination_layout(params))),
            "result": In(stream.Signature(operand_layout(params))),
            "write": Out(stream.Signature(write_layout(params))),
            "passed": Out(stream.Signature(result_layout(params))),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self._params.vector_lanes
        layout = destination_layout(self._params)
        # Each entry also holds its first beat's ``last`` and mask, found as it is pushed; a
        # later beat's are registers, found as the beat before it is taken.
        queued = data.StructLayout({"destination": layout, "single": 1, "first_mask": lanes})
        m.submodules.destinations = queue = fifo.SyncFIFOBuffered(
            width=queued.size, depth=self._commands)
        pushed = data.View(queued, queue.w_data)
        length = self.destination.payload.length
        m.d.comb += [pushed.destination.eq(self.destination.payload),
                     pushed.single.eq(length <= lanes),
                     pushed.first_mask.eq(Cat(length > lane for lane in range(lanes))),
                     queue.w_en.eq(self.destination.valid),
                     self.destination.ready.eq(queue.w_rdy)]
        head = data.View(queued, queue.r_data)
        current = head.destination
        offset = Signal.like(current.word, name="offset")    # the beat's word past the first
        started = Signal(name="started")                      # past the command's first beat
        left = Signal(range(self._params.max_features + 1), name="left")
        later_last = Signal(name="later_last")
        later_mask = Signal(lanes, name="later_mask")
        elements = Mux(started, left, current.length)         # from this beat on
        after = elements - lanes                              # from the next beat on
        last = Mux(started, later_last, head.single)
        mask = Mux(started, later_mask, head.first_mask)

        # One output register a stream; a beat moves in when both are empty or leaving, so
        # that a unit's beats leave one a cycle and in order whichever way they go (the
        # scoreboard counts them with one pulse a cycle).
        to_memory = current.to_memory
        write_free = ~self.write.valid | self.write.ready
        passed_free = ~self.passed.valid | self.passed.ready
        take = self.result.valid & queue.r_rdy & write_free & passed_free
        m.d.comb += [self.result.ready.eq(take), queue.r_en.eq(take & last)]
        with m.If(take):
            m.d.sync += [offset.eq(Mux(last, 0, offset + 1)), started.eq(~last),
                         left.eq(after), later_last.eq(after <= lanes),
                         later_mask.eq(Cat(after > lane for lane in range(lanes)))]

        with m.If(self.write.ready):
            m.d.sync += self.write.valid.eq(0)
        with m.If(take & to_memory):
            m.d.sync += [self.write.valid.eq(1),
                         self.write.payload.address.eq(current.word + offset),
                         self.write.payload.data.eq(self.result.payload),
                         self.write.payload.mask.eq(mask)]
        with m.If(self.passed.ready):
            m.d.sync += self.passed.valid.eq(0)
        with m.If(take & ~to_memory):
            m.d.sync += [self.passed.valid.eq(1),
                         self.passed.payload.data.eq(self.result.payload),
                         self.passed.payload.mask.eq(mask),
                         self.passed.payload.last.eq(last)]
        return m


class WriteArbiter(wiring.Component):
    """``sources`` write streams into one memory write port, one write a cycle, round robin.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
    sources : int
        The writers (the core's: the matrix pipe, the element-wise and the norm unit's
        :class:`ResultWriter`).

    Members
    -------
    source : list of ``In(stream.Signature(matrix_pipe.write_layout(params)))``
        ``source[i]``; a stream's writes reach the memory in its order.
    write_addr, write_data, write_en : ``Out``
        The memory's write port (:class:`tern_fpga.hw.memory_banks.BankedMemory`'s
        ``write`` with a ``vector_bits`` granularity: ``write_en`` one bit a lane), registered.
    written : ``Out(sources)``
        Bit ``i``: the port writes a word of ``source[i]`` in this cycle (a read of it
        presented in a later cycle returns it).
    """

    def __init__(self, params: AcceleratorParameters, *, sources: int = 3):
        if sources < 1:
            raise ValueError(f"an arbiter needs at least one source, not {sources}")
        self._params, self._sources = params, sources
        lanes = params.vector_lanes
        super().__init__({
            "source": In(stream.Signature(write_layout(params))).array(sources),
            "write_addr": Out(range(params.vector_memory_words // lanes)),
            "write_data": Out(params.vector_bits * lanes),
            "write_en": Out(lanes),
            "written": Out(sources),
        })

    def elaborate(self, platform):
        m = Module()
        count = self._sources
        asking = Cat(source.valid for source in self.source)
        # ``after``: one-hot, the source granted last (so the one after it comes first).
        after = Signal(count, init=1 << (count - 1), name="after")
        grant = Signal(count, name="grant")
        m.d.comb += grant.eq(_round_robin(asking, after, count))
        with m.If(asking.any()):
            m.d.sync += after.eq(grant)
        m.d.comb += [source.ready.eq(grant[index]) for index, source in enumerate(self.source)]

        chosen = self.source[0].payload.as_value()
        for index in range(1, count):
            chosen = Mux(grant[index], self.source[index].payload.as_value(), chosen)
        chosen = data.View(write_layout(self._params), chosen)
        m.d.sync += [self.write_addr.eq(chosen.address),
                     self.write_data.eq(chosen.data.as_value()),
                     self.write_en.eq(Mux(asking.any(), chosen.mask, 0)),
                     self.written.eq(grant)]
        return m


def _round_robin(asking, after, count):
    """One-hot: the first source asking in the order after the one-hot ``after`` (cyclic)."""
    options = []
    for last in range(count):
        order = [(last + step) % count for step in range(1, count + 1)]
        choice = Const(0, count)
        for index in reversed(order):
            choice = Mux(asking[index], Const(1 << index, count), choice)
        options.append((after[last], choice))
    result = Const(0, count)
    for selected, choice in options:
        result = result | Mux(selected, choice, 0)
    return result
