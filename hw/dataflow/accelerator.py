"""The dataflow core (issue 15) behind the host link: what the instruction-at-a-time core's
:class:`~tern_fpga.hw.board.Accelerator` is to it, with the same ports, so that a board's top
level (:class:`~tern_fpga.hw.dataflow.board.DataflowBoardTop`) and the virtual board
(:class:`~tern_fpga.sim.rtl.virtual_board.VirtualBoard`) run it and the host's own driver
talks to it over the UART.

Its memories start empty (zeros); the host loads an export in the dataflow core's layout
(:func:`tern_fpga.contracts.segmented_layout.segmented_export`: the weights segmented, the
TMVs' ``imm`` rewritten), then runs it as any board.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.board import simulation_baud
from tern_fpga.hw.dataflow.core import CoreComponent
from tern_fpga.hw.host_link import HostLink

__all__ = ["DataflowAccelerator"]


class DataflowAccelerator(wiring.Component):
    """The host link and the dataflow core (:class:`~tern_fpga.hw.dataflow.core.CoreComponent`,
    its memories zero), with :class:`~tern_fpga.hw.board.Accelerator`'s ports.

    Parameters
    ----------
    params : AcceleratorParameters
    max_segments : int
        ``S``: rows a weight word at most (the layout the host must load).
    baud : int, optional
        UART rate; the virtual board's (:func:`~tern_fpga.hw.board.simulation_baud`) by
        default.
    build_id, board_id : int
        What IDENTIFY reports (:class:`~tern_fpga.hw.protocol_engine.ProtocolEngine`).
    target : str or None
        The units' multipliers (:func:`~tern_fpga.hw.dataflow.products.partial_product`):
        ``None`` (a ``*`` between fabric registers, what the virtual board simulates) or
        ``"ecp5"`` (``MULT18X18D`` cells, what a board's bitstream has; the units' tests run
        both forms in Verilator and compare them).

    Members
    -------
    uart_rx : ``In(1, init=1)``; uart_tx : ``Out(1, init=1)``
    idle : ``Out(1)``
        Nothing in progress (the virtual board skips idle time).
    leds : ``Out(4)``
        :class:`~tern_fpga.hw.board.Accelerator`'s: 0 alive (blinks about twice a second),
        1 the core busy, 2 link activity, 3 idle.
    """

    def __init__(self, params: AcceleratorParameters, *, max_segments: int,
                 baud: int | None = None, build_id: int = 0, board_id: int = 0,
                 target: str | None = None):
        self._params, self._max_segments = params, max_segments
        self._baud = simulation_baud(params) if baud is None else baud
        self._link = HostLink(params, baud=self._baud, build_id=build_id, board_id=board_id)
        chunks = -(-2 * params.ternary_lanes // 64)
        self._core = CoreComponent(
            params, vector=np.zeros(params.vector_memory_words, dtype=np.int64), embeddings=[],
            constants=[], weights=np.zeros((params.weight_memory_words, chunks), np.uint64),
            max_segments=max_segments, target=target)
        super().__init__({"uart_rx": In(1, init=1), "uart_tx": Out(1, init=1),
                          "idle": Out(1), "leds": Out(4)})

    @property
    def params(self) -> AcceleratorParameters:
        return self._params

    @property
    def baud(self) -> int:
        return self._baud

    @property
    def max_segments(self) -> int:
        return self._max_segments

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = self._link
        m.submodules.core = core = self._core
        wiring.connect(m, link.core, core)
        m.d.comb += [link.uart_rx.eq(self.uart_rx), self.uart_tx.eq(link.uart_tx),
                     self.idle.eq(link.idle)]
        heartbeat = Signal(range(max(self._params.clock_hz // 4, 2)))
        alive = Signal()
        m.d.sync += heartbeat.eq(heartbeat + 1)
        with m.If(heartbeat == self._params.clock_hz // 4 - 1):
            m.d.sync += [heartbeat.eq(0), alive.eq(~alive)]
        m.d.comb += self.leds.eq(Cat(alive, core.busy, ~self.uart_rx | ~self.uart_tx, link.idle))
        return m
