"""The one table of supported boards: platform, FPGA and its resources, identity, bitstream,
programmer, status lights, and what the board draws beside the FPGA.

Every layer reads boards from here: the board top level (``tern_fpga.hw.board``), the build, the
driver, ``tern flash``, the power model and the sweep. Adding a board is one entry here plus what
``docs/boards.md`` lists.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import MappingProxyType

from tern_fpga.contracts.errors import TernError

__all__ = ["BOARDS", "DEFAULT_BAUD", "LINE_RATES", "Board", "Device", "board"]

# The UART rate the bitstreams are built for, and the line rates tern uses at all: below, a load
# takes hours and a dead link minutes to notice; above, no USB serial bridge goes.
DEFAULT_BAUD = 3_000_000
LINE_RATES = (9_600, 12_000_000)


@dataclass(frozen=True)
class Device:
    """A board's FPGA: what it has, and the names its cells have in nextpnr.

    ``available`` and ``nextpnr_cells`` are keyed by ``lut``, ``ff``, ``bram`` and ``dsp``; on
    the iCE40 a logic cell holds one LUT4 and one flip-flop, so both count against its
    ``ICESTORM_LC`` total.
    """

    description: str
    family: str
    available: dict
    nextpnr_cells: dict


@dataclass(frozen=True)
class Board:
    """A supported dev board.

    Members
    -------
    name : str
        What ``--board`` takes, and the bitstream's file name (``bitstreams/<name>-<preset>``).
    platform : str
        ``module:Class`` of its amaranth-boards platform.
    family : str
        ``ecp5`` or ``ice40``: the PLL and the nextpnr flavour.
    oscillator : str
        The platform's clock resource feeding the PLL.
    board_id : int
        16 bits that IDENTIFY reports.
    bitstream_suffix : str
        ``.bit`` (ecppack) or ``.bin`` (icepack).
    programmer : str
        ``openFPGALoader`` or ``iceprog``, used by ``tern flash``.
    default_preset : str
        The accelerator preset ``tern build`` and ``tern flash`` use when none is given.
    leds : tuple
        ``(resource, number)`` of the status lights, in ``Accelerator.leds`` order.
    device : Device
        The FPGA's resources.
    board_watts, board_power_note : float, str
        What the board draws beside the FPGA (0 W with a note where no sourced figure exists).
    """

    name: str
    platform: str
    family: str
    oscillator: str
    board_id: int
    bitstream_suffix: str
    programmer: str
    default_preset: str
    leds: tuple
    device: Device
    board_watts: float
    board_power_note: str

    def make_platform(self):
        """An instance of the amaranth-boards platform (imported here: Amaranth is heavy)."""
        module_name, _, class_name = self.platform.partition(":")
        return getattr(importlib.import_module(module_name), class_name)()


BOARDS = MappingProxyType({
    # The ULX3S runs the demo model (198 of its 208 block RAMs; docs/boards.md); micro is
    # built for it as well.
    "ulx3s-85f": Board(
        "ulx3s-85f", "amaranth_boards.ulx3s:ULX3S_85F_Platform", "ecp5", "clk25", 0x0185, ".bit",
        "openFPGALoader", "demo", (("led", 0), ("led", 1), ("led", 2), ("led", 3)),
        Device("ULX3S, ECP5 LFE5U-85F", "ecp5",
               {"lut": 83_640, "ff": 83_640, "bram": 208, "dsp": 156},
               {"lut": "TRELLIS_COMB", "ff": "TRELLIS_FF", "bram": "DP16KD",
                "dsp": "MULT18X18D"}),
        0.0, "not estimated (0 W): no sourced figures for the ULX3S's regulators, FT231X "
             "USB-UART, 25 MHz oscillator, SDRAM, flash, LEDs and optional ESP32; measure the "
             "USB supply (docs/measurement.md: a UM25C meter or an INA219)"),
    "icebreaker": Board(
        "icebreaker", "amaranth_boards.icebreaker:ICEBreakerPlatform", "ice40", "clk12", 0x0105,
        ".bin", "iceprog", "micro", (("led_g", 0), ("led_r", 0)),
        Device("iCEBreaker, iCE40UP5K", "ice40",
               {"lut": 5_280, "ff": 5_280, "bram": 30, "dsp": 8},
               {"lut": "ICESTORM_LC", "ff": "ICESTORM_LC", "bram": "ICESTORM_RAM",
                "dsp": "ICESTORM_DSP"}),
        0.0, "not estimated (0 W): no sourced figures for the iCEBreaker's regulators, FT2232H "
             "USB bridge, 12 MHz oscillator, flash and LEDs; measure the USB supply "
             "(docs/measurement.md)"),
})


def board(name: str) -> Board:
    """The board called ``name``, or one clear error listing the supported ones."""
    try:
        return BOARDS[name]
    except KeyError:
        raise TernError(f"unknown board {name!r}; supported: {', '.join(sorted(BOARDS))}") \
            from None
