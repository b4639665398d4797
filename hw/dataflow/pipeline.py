"""Pieces that the dataflow units' pipelines share: a register, a tag delayed a stage, the
credit-guarded output FIFO that lets a pipeline run without a stall signal, and the command
register and beat counter of a unit that takes ``V`` elements a beat."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Shape, Signal
from amaranth.lib import data, fifo

from tern_fpga.hw.memory_banks import MemoryPort

__all__ = ["OPERAND_BEATS", "CommandBeats", "CreditedOutput", "InstructionQueue", "bypass",
           "delay", "operand_fifo", "read_ports", "register", "shared_read_port"]

#: Operand beats a reader's FIFO holds (a read in flight counts against it).
OPERAND_BEATS = 4


def register(m, value, name, *, shape=None, reset_less=True):
    """``value`` registered every cycle (as ``shape``, by default its own)."""
    result = Signal(value.shape() if shape is None else shape, name=name,
                    reset_less=reset_less)
    m.d.sync += result.eq(value)
    return result


def read_ports(component, names, ports) -> list:
    """The statements that join ``component``'s ``<name>_addr``, ``<name>_en`` (outputs) and
    ``<name>_data`` (input) to each memory read port of ``ports`` (``addr``, ``en``, ``data``,
    as Amaranth's ``Memory`` read ports and :class:`~tern_fpga.hw.memory_banks.MemoryPort`
    have them), name by name."""
    statements = []
    for name, port in zip(names, ports, strict=True):
        statements += [port.addr.eq(getattr(component, f"{name}_addr")),
                       port.en.eq(getattr(component, f"{name}_en")),
                       getattr(component, f"{name}_data").eq(port.data)]
    return statements


def shared_read_port(m, port, first: str, second: str) -> tuple[MemoryPort, MemoryPort]:
    """Two logical read ports on one memory read ``port``: the ``first`` has it in a cycle
    where its ``en`` is high (it must not read while the second may), the ``second``
    otherwise; both see its ``data``."""
    depth, width = 1 << len(port.addr), len(port.data)
    ports = MemoryPort(first, depth, width), MemoryPort(second, depth, width)
    m.d.comb += [port.addr.eq(Mux(ports[0].en, ports[0].addr, ports[1].addr)),
                 port.en.eq(ports[0].en | ports[1].en),
                 ports[0].data.eq(port.data), ports[1].data.eq(port.data)]
    return ports


def bypass(m, queue, put, data, take):
    """``queue`` (a :class:`~amaranth.lib.fifo.SyncFIFO`) with a bypass: an entry ``data`` put
    (``put``) while the queue is empty is offered in the same cycle and stored only if it is not
    taken (``take``) then. Returns the read side's ``(valid, payload)``."""
    empty = ~queue.r_rdy
    m.d.comb += [queue.w_en.eq(put & ~(empty & take)), queue.w_data.eq(data),
                 queue.r_en.eq(take & queue.r_rdy)]
    return queue.r_rdy | put, Mux(empty, data, queue.r_data)


def operand_fifo(m, name: str, width: int, push, data, port):
    """A FIFO of :data:`OPERAND_BEATS` operand beats between a memory's read ``data`` (taken
    when ``push``: the cycle after the read's enable) and the ``Out`` stream ``port``, with a
    :func:`bypass`: a unit that waits for its operands gets them the cycle the memory gives
    them."""
    m.submodules[name] = queue = fifo.SyncFIFO(width=width, depth=OPERAND_BEATS)
    valid, payload = bypass(m, queue, push, data, port.ready)
    m.d.comb += [port.valid.eq(valid), port.payload.eq(payload)]
    return queue


class InstructionQueue:
    """A FIFO of ``depth`` instructions (``layout``) behind the ``In`` stream ``port``, so that
    the scoreboard may issue a unit's next instructions while the unit works on one: the queue's
    head is :attr:`payload` (valid while :attr:`valid`), and :meth:`take` pops it. ``entry``:
    what is queued of each (a ``layout`` value; by default ``port``'s payload)."""

    def __init__(self, m, port, layout, depth: int, *, name: str = "instructions",
                 entry=None):
        if depth < 1:
            raise ValueError(f"an instruction queue needs at least 1 entry, not {depth}")
        m.submodules[name] = self._fifo = queue = fifo.SyncFIFOBuffered(
            width=Shape.cast(layout).width, depth=depth)
        m.d.comb += [queue.w_data.eq(port.payload if entry is None else entry),
                     queue.w_en.eq(port.valid), port.ready.eq(queue.w_rdy)]
        self.payload = data.View(layout, queue.r_data)
        self.valid = queue.r_rdy

    def take(self, m, take):
        """Pop the head when ``take`` (while :attr:`valid`)."""
        m.d.comb += self._fifo.r_en.eq(take)


def delay(m, tag, suffix):
    """A dict of tag signals registered once more (``valid`` with a reset, the rest without)."""
    return {name: register(m, value, f"{name}_{suffix}", reset_less=name != "valid")
            for name, value in tag.items()}


class CreditedOutput:
    """An output FIFO of ``depth`` results in front of the ``Out`` stream ``port``, and its
    credits: a pipeline admits a beat that will make a result only while ``available``, so the
    FIFO always has room and the pipeline needs no stall. Write a result with ``w_data`` and
    ``w_en``; call :meth:`admit` once with the signal that spends a credit. ``idle``: every
    credit is back (no result in the pipeline or the FIFO). ``name``: the FIFO's submodule name
    (a unit with two outputs gives each its own)."""

    def __init__(self, m, port, depth: int, *, name: str = "fifo"):
        # SyncFIFOBuffered's depth counts its output register, and a write into an empty FIFO
        # reaches that register a cycle later: with a memory of one entry, a second write in
        # the next cycle would find it full and be lost although a credit allowed it.
        if depth < 3:
            raise ValueError(f"a credited output needs a FIFO of 3 or more results, not {depth}")
        self._port = port
        self.credits = Signal(range(depth + 1), init=depth, name=f"{name}_credits")
        m.submodules[name] = results = fifo.SyncFIFO(
            width=Shape.cast(port.payload.shape()).width, depth=depth)
        self.w_data, self.w_en = results.w_data, results.w_en
        m.d.comb += [port.payload.eq(results.r_data), port.valid.eq(results.r_rdy),
                     results.r_en.eq(port.ready)]
        self.available = self.credits != 0
        self.idle = self.credits == depth

    def admit(self, m, admitted):
        returned = self._port.valid & self._port.ready
        m.d.sync += self.credits.eq(self.credits - admitted + returned)


class CommandBeats:
    """The command of a unit that takes ``ceil(length / V)`` beats of ``V`` elements for each
    command on the ``In`` stream ``command`` (whose payload has ``length`` and ``fields``).

    ``fields``: the command's fields, registered when it is taken (by name). ``active``: a
    command is in progress. ``at_first``, ``at_last``: the next beat is its first, its last
    (registers, so that the take of the next command, which depends on them, is short).
    ``mask``: the next beat's lanes that hold elements. Call :meth:`step` once with the signal
    that takes a beat; the next command is taken with the current one's last beat.
    """

    def __init__(self, m, command, lanes: int, max_length: int, fields=()):
        self._command, self._lanes = command, lanes
        self.active = Signal()
        # Beats after the next one.
        self._remaining = Signal(range(-(-max_length // lanes)))
        self._last_mask = Signal(lanes)
        self.fields = {name: Signal.like(command.payload[name], name=f"command_{name}")
                       for name in fields}
        self.at_first = Signal()
        self.at_last = Signal()
        self.mask = Mux(self.at_last, self._last_mask, (1 << lanes) - 1)

    def step(self, m, fire):
        command, lanes = self._command, self._lanes
        lane_bits = lanes.bit_length() - 1
        m.d.comb += command.ready.eq(~self.active | (fire & self.at_last))
        with m.If(fire):
            m.d.sync += [self._remaining.eq(self._remaining - 1), self.at_first.eq(0),
                         self.at_last.eq(self._remaining == 1)]
            with m.If(self.at_last):
                m.d.sync += self.active.eq(0)
        # After the counter's update, so that a command taken with the last beat wins.
        with m.If(command.valid & command.ready):
            length = command.payload.length
            final_lane = (length - 1)[:lane_bits]
            remaining = (length - 1) >> lane_bits
            m.d.sync += [
                self.active.eq(1), self._remaining.eq(remaining), self.at_first.eq(1),
                self.at_last.eq(remaining == 0),
                self._last_mask.eq(Cat(Const(1, 1),
                                       *(final_lane >= lane for lane in range(1, lanes)))),
                *(field.eq(command.payload[name]) for name, field in self.fields.items()),
            ]
