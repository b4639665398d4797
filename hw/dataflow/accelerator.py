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
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.board import Accelerator, simulation_baud
from tern_fpga.hw.dataflow.core import CoreComponent
from tern_fpga.hw.host_link import HostLink

__all__ = ["DataflowAccelerator"]


class DataflowAccelerator(Accelerator):
    """The host link and the dataflow core (:class:`~tern_fpga.hw.dataflow.core.CoreComponent`,
    its memories zero) in place of :class:`~tern_fpga.hw.board.Accelerator`'s core: the same
    ports, lights and elaboration (the core has the same flipped
    :class:`~tern_fpga.hw.core_interface.CoreInterface`).

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
    uart_rx, uart_tx, idle, leds :
        :class:`~tern_fpga.hw.board.Accelerator`'s.
    """

    def __init__(self, params: AcceleratorParameters, *, max_segments: int,
                 baud: int | None = None, build_id: int = 0, board_id: int = 0,
                 target: str | None = None):
        # Accelerator's own __init__ would build the instruction core: set what its elaborate
        # and properties read (hw/board.py is in the committed bitstreams' build id, so it does
        # not take a core of the caller's choice).
        self._params, self._max_segments = params, max_segments
        self._baud = simulation_baud(params) if baud is None else baud
        self._link = HostLink(params, baud=self._baud, build_id=build_id, board_id=board_id)
        chunks = -(-2 * params.ternary_lanes // 64)
        self._core = CoreComponent(
            params, vector=np.zeros(params.vector_memory_words, dtype=np.int64), embeddings=[],
            constants=[], weights=np.zeros((params.weight_memory_words, chunks), np.uint64),
            max_segments=max_segments, target=target)
        wiring.Component.__init__(self, {"uart_rx": In(1, init=1), "uart_tx": Out(1, init=1),
                                         "idle": Out(1), "leds": Out(4)})

    @property
    def max_segments(self) -> int:
        return self._max_segments
