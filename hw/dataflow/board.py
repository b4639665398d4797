"""A board's top level with the dataflow core (issue 15): :class:`~tern_fpga.hw.board.BoardTop`'s
oscillator, PLL, UART pins and status lights around a
:class:`~tern_fpga.hw.dataflow.accelerator.DataflowAccelerator` instead of the
instruction-at-a-time core's :class:`~tern_fpga.hw.board.Accelerator`. ``tern build`` uses it
for a board's ``dataflow_presets`` (:class:`~tern_fpga.contracts.boards.Board`); its build id
hashes this module and what it imports (``hw/build.py``).
"""

from __future__ import annotations

from tern_fpga.contracts.boards import Board
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.contracts.segmented_layout import default_segments
from tern_fpga.hw.board import DEFAULT_BAUD, BoardTop
from tern_fpga.hw.dataflow.accelerator import DataflowAccelerator

__all__ = ["DataflowBoardTop"]


class DataflowBoardTop(BoardTop):
    """:class:`~tern_fpga.hw.board.BoardTop` with the dataflow core, its multipliers the
    ECP5's ``MULT18X18D`` cells and its weights in the segmented layout of
    :func:`~tern_fpga.contracts.segmented_layout.default_segments` rows a word.

    Parameters
    ----------
    board : Board
        An ECP5 board (the multipliers are ECP5 cells).
    params : AcceleratorParameters
    baud, build_id :
        See :class:`~tern_fpga.hw.board.Accelerator`.
    """

    def __init__(self, board: Board, params: AcceleratorParameters, *,
                 baud: int = DEFAULT_BAUD, build_id: int = 0):
        if board.family != "ecp5":
            raise ValueError(f"the dataflow core's multipliers are ECP5 cells; board "
                             f"{board.name!r} is an {board.family} board")
        # BoardTop's own __init__ would build the instruction core's Accelerator: set what its
        # methods read instead.
        self.board, self.params = board, params
        self.accelerator = DataflowAccelerator(
            params, max_segments=default_segments(params), baud=baud, build_id=build_id,
            board_id=board.board_id, target="ecp5")
