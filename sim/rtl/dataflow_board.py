"""The dataflow core (issue 15) behind the host link, for the virtual board: what the
instruction-at-a-time core's :class:`~tern_fpga.hw.board.Accelerator` is to it, with the same
ports, so that :class:`~tern_fpga.sim.rtl.virtual_board.VirtualBoard` runs it and the host's
own driver talks to it over the simulated UART.

Its memories start empty (zeros); the host loads an export in the dataflow core's layout
(:func:`tern_fpga.contracts.segmented_layout.segmented_export`: the weights segmented, the
TMVs' ``imm`` rewritten), then runs it as any board. It is a simulation top level: a board's
bitstream of the dataflow core does not exist yet (``docs/dataflow.md``: the whole core does not
route on the ECP5-85F).
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
    """The host link and the dataflow core (:class:`~tern_fpga.hw.dataflow.core.
    CoreComponent`, its memories zero), with :class:`~tern_fpga.hw.board.Accelerator`'s ports.

    Parameters
    ----------
    params : AcceleratorParameters
    max_segments : int
        ``S``: rows a weight word at most (the layout the host must load).
    baud : int, optional
        UART rate; the virtual board's (:func:`~tern_fpga.hw.board.simulation_baud`) by
        default.

    Members
    -------
    uart_rx : ``In(1, init=1)``; uart_tx : ``Out(1, init=1)``
    idle : ``Out(1)``
        Nothing in progress (the virtual board skips idle time).
    leds : ``Out(4)``
        0: the core busy, 1: link activity, 2: idle, 3: off.
    """

    def __init__(self, params: AcceleratorParameters, *, max_segments: int,
                 baud: int | None = None):
        self._params, self._max_segments = params, max_segments
        self._baud = simulation_baud(params) if baud is None else baud
        self._link = HostLink(params, baud=self._baud)
        chunks = -(-2 * params.ternary_lanes // 64)
        self._core = CoreComponent(
            params, vector=np.zeros(params.vector_memory_words, dtype=np.int64), embeddings=[],
            constants=[], weights=np.zeros((params.weight_memory_words, chunks), np.uint64),
            max_segments=max_segments)
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
                     self.idle.eq(link.idle),
                     self.leds.eq(Cat(core.busy, ~self.uart_rx | ~self.uart_tx, link.idle,
                                      Signal()))]
        return m
