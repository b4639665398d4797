"""The protocol engine's :class:`Runner`: runs the program ``count`` times (feed or generate),
keeps the tokens in a ring buffer that the host can read back, and offers each token for a
notification frame."""

# No ``from __future__ import annotations``: Amaranth reads the signature annotations.
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.protocol import (
    RunMode,
)
from tern_fpga.hw.core_interface import TOKEN_BITS, run_layout

__all__ = ["Runner"]


class Runner(wiring.Component):
    """Runs the program ``count`` times and keeps the tokens in a ring buffer.

    In feed mode step ``i`` takes the token at ring slot ``i`` (loaded beforehand through the
    ``load_*`` port); in generate mode step 0 takes ``token`` and step ``i`` the output of step
    ``i - 1``. Step ``i`` writes its output to slot ``i mod history`` and offers it on
    ``notify``; the next step starts only when ``notify`` is free again, so that every token
    is offered.

    Parameters
    ----------
    history : int
        Ring buffer slots, a power of two.

    Members
    -------
    start : ``In(1)``
        Start a run with ``entry``, ``token``, ``count`` (at least 1) and ``mode``.
    stop : ``In(1)``
        End the current run at the next token boundary: the step under way finishes (its
        token is kept and offered) and no further step starts. Ignored when not running.
    run : ``Out(stream.Signature(run_layout))``, done : ``In(stream.Signature(16))``
        To the core.
    notify : ``Out(stream.Signature({"index": 16, "token": 16}))``
    running : ``Out(1)``
    produced : ``Out(16)``
        Steps finished in the current (or last) run.
    token_done : ``Out(1)``
        One cycle pulse per finished step.
    history_address : ``In(range(history))``, history_data : ``Out(16)``
        A read port of the ring, one cycle latency.
    load_address : ``In(range(history))``, load_data : ``In(16)``, load_enable : ``In(1)``
        A write port of the ring, for feed tokens; ignored while running.
    """

    def __init__(self, history: int):
        if not (isinstance(history, int) and history >= 2 and history & (history - 1) == 0):
            raise ValueError(f"the token history must be a power of two of at least 2, "
                             f"not {history!r}")
        self._history = history
        super().__init__({
            "start": In(1),
            "stop": In(1),
            "entry": In(24),
            "token": In(TOKEN_BITS),
            "count": In(16),
            "mode": In(1),
            "run": Out(stream.Signature(run_layout)),
            "done": In(stream.Signature(TOKEN_BITS)),
            "notify": Out(stream.Signature(data.StructLayout({"index": 16, "token": 16}))),
            "running": Out(1),
            "produced": Out(16),
            "token_done": Out(1),
            "history_address": In(range(history)),
            "history_data": Out(TOKEN_BITS),
            "load_address": In(range(history)),
            "load_data": In(TOKEN_BITS),
            "load_enable": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self._history
        m.submodules.ring = ring = Memory(shape=TOKEN_BITS, depth=depth, init=[])
        write, reader, own_read = ring.write_port(), ring.read_port(), ring.read_port()
        m.d.comb += [reader.addr.eq(self.history_address), self.history_data.eq(reader.data)]

        entry, count = Signal(24), Signal(16)
        generate, previous = Signal(), Signal(TOKEN_BITS)
        stopping = Signal()     # a stop arrived during this run
        slot = self.produced[:(depth - 1).bit_length()]
        m.d.comb += [
            own_read.addr.eq(slot),
            self.run.payload.entry.eq(entry),
            self.run.payload.token.eq(Mux(generate, previous, own_read.data)),
            write.addr.eq(Mux(self.running, slot, self.load_address)),
            write.data.eq(Mux(self.running, self.done.payload, self.load_data)),
            write.en.eq(Mux(self.running, self.token_done, self.load_enable)),
        ]
        with m.If(self.notify.ready):
            m.d.sync += self.notify.valid.eq(0)
        with m.If(self.stop & self.running):
            m.d.sync += stopping.eq(1)
        another_step = (self.produced != count) & ~stopping

        with m.FSM():
            with m.State("idle"), m.If(self.start):
                m.d.sync += [entry.eq(self.entry), count.eq(self.count),
                             generate.eq(self.mode == RunMode.GENERATE),
                             previous.eq(self.token), self.produced.eq(0), stopping.eq(0)]
                m.next = "fetch"
            with m.State("fetch"):
                # The feed token of this step is read from the ring in this cycle. A stop that
                # arrived as the last step ended ends the run here, before the step starts.
                m.d.comb += self.running.eq(1)
                m.next = "issue"
                with m.If(stopping):
                    m.next = "idle"
            with m.State("issue"):
                m.d.comb += [self.running.eq(1), self.run.valid.eq(1)]
                with m.If(self.run.ready):
                    m.next = "wait"
            with m.State("wait"):
                m.d.comb += [self.running.eq(1), self.done.ready.eq(~self.notify.valid)]
                with m.If(self.done.valid & self.done.ready):
                    m.d.comb += self.token_done.eq(1)
                    m.d.sync += [
                        self.notify.valid.eq(1),
                        self.notify.payload.index.eq(self.produced),
                        self.notify.payload.token.eq(self.done.payload),
                        previous.eq(self.done.payload),
                        self.produced.eq(self.produced + 1),
                    ]
                    m.next = "step_done"
            with m.State("step_done"):
                m.d.comb += self.running.eq(another_step)
                m.next = "idle"
                with m.If(another_step):
                    m.next = "fetch"
        return m
