"""A board's top level with the weights in its SDRAM: :class:`SDRAMBoardTop`.

It is :class:`tern_fpga.hw.board.BoardTop` with the core's weight memory and embeddings replaced
by :class:`~tern_fpga.hw.sdram.weight_memory.SDRAMWeights` on the board's
:class:`~tern_fpga.hw.sdram.controller.SDRAMController` (LiteDRAM's core, ``"hw"`` variant,
generated for the preset's clock: the core and the SDRAM share the ``sync`` clock), and the PLL
making a second clock, ``sdram_ps``, 90 degrees behind ``sync``, that drives the SDRAM's clock
pin (docs/sdram.md). The presets built this way are a board's ``sdram_presets``
(:mod:`tern_fpga.contracts.boards`).
"""

from __future__ import annotations

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.board import BoardTop
from tern_fpga.hw.pll import ClockGenerator
from tern_fpga.hw.sdram.config import sdram_core_config
from tern_fpga.hw.sdram.controller import SDRAMController
from tern_fpga.hw.sdram.litedram_core import generate_core
from tern_fpga.hw.sdram.weight_memory import SDRAMWeights

__all__ = ["SHIFTED_DOMAIN", "SDRAMBoardTop"]

SHIFTED_DOMAIN = "sdram_ps"


class SDRAMBoardTop(BoardTop):
    """:class:`~tern_fpga.hw.board.BoardTop` with the weights in the board's SDRAM.

    Parameters
    ----------
    board, params, baud, build_id :
        See :class:`~tern_fpga.hw.board.BoardTop`. The board must be an ECP5 one with an
        ``sdram`` resource (the ULX3S).
    """

    def __init__(self, board, params: AcceleratorParameters, **options):
        if board.family != "ecp5":
            raise ValueError(f"the SDRAM's shifted clock is made on the ECP5 only, not on "
                             f"{board.name} ({board.family})")
        self.controller = SDRAMController(generate_core(sdram_core_config(params), "hw"),
                                          clock_ps_domain=SHIFTED_DOMAIN)
        super().__init__(board, params, weight_memory=SDRAMWeights(params, self.controller,
                                                                   embeddings=True), **options)

    def clock_generator(self, platform, oscillator) -> ClockGenerator:
        return ClockGenerator(self.board.family, self.pll_config(platform), oscillator.i,
                              shifted_domain=SHIFTED_DOMAIN)
