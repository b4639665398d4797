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
from tern_fpga.contracts.params import PRESETS

__all__ = ["BOARDS", "DEFAULT_BAUD", "LINE_RATES", "Board", "BoardPower", "Device", "PowerDraw",
           "board", "weights_in_sdram"]

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
class PowerDraw:
    """One part's draw at the board's 5 V input (W): a central value, a range and its source."""

    part: str
    watts: float
    low: float
    high: float
    source: str


@dataclass(frozen=True)
class BoardPower:
    """What a board adds to its FPGA's power, seen at its supply input.

    ``P_board_input = P_fpga / regulator_efficiency + idle draw`` (docs/power.md). The idle draw
    is the sum of ``parts`` (everything beside the FPGA, each at the 5 V input); every number
    has a central value and a range, so a result can be given as a range.
    """

    regulator_efficiency: float
    efficiency_low: float
    efficiency_high: float
    efficiency_source: str
    parts: tuple

    @property
    def idle_w(self) -> float:
        return sum(part.watts for part in self.parts)

    @property
    def idle_range(self) -> tuple[float, float]:
        return sum(part.low for part in self.parts), sum(part.high for part in self.parts)

    def __post_init__(self):
        if not 0 < self.efficiency_low <= self.regulator_efficiency <= self.efficiency_high <= 1:
            raise ValueError(f"regulator efficiencies must satisfy 0 < low <= value <= high <= 1, "
                             f"not {self.efficiency_low}, {self.regulator_efficiency}, "
                             f"{self.efficiency_high}")
        for part in self.parts:
            if not 0 <= part.low <= part.watts <= part.high:
                raise ValueError(f"{part.part}: need 0 <= low <= watts <= high, not "
                                 f"{part.low}, {part.watts}, {part.high}")


# The ULX3S (emard/ulx3s, commit 6a92cec): three TI TLV62569DBV buck converters (U3, U4, U5 in
# doc/ulx3s_bom.csv and power.sch) make 1.1 V (FPGA core), 2.5 V and 3.3 V from USB 5 V
# (README 'Power: 3 Switching voltage regulators'); the FT231XS USB-UART runs from USB 5 V
# (doc/MANUAL.md 'Power'). No published measurement of the board's idle draw was found: each
# part's figure is an ASSUMPTION with its range; doc/MANUAL.md's '5V/0.5A should be enough for
# fully loaded and constantly active FPGA, SDRAM, LEDS, AUDIO, SD, ESP32 WiFi and OLED' (2.5 W)
# bounds the whole board from above.
_ULX3S = "emard/ulx3s (commit 6a92cec)"
_TLV62569 = ("TI TLV62569 data sheet (SLVSDG1C), Features: 2 A synchronous buck, up to 95 % "
             "efficiency, 35 uA operating quiescent current, power-save mode at light load")
ULX3S_POWER = BoardPower(
    0.80, 0.70, 0.90,
    f"ASSUMPTION within a sourced bound: the FPGA's rails come from three TLV62569DBV bucks "
    f"({_ULX3S}: doc/ulx3s_bom.csv U3 U4 U5, README 'Power'); {_TLV62569}. The 95 % is the "
    f"peak; the 1.1 V core rail from 5 V at a few hundred mA sits lower on its curves (a low "
    f"output voltage spends more of its power in the switches): 0.80, range 0.70 to 0.90",
    (
        PowerDraw("FT231XS USB-UART (US1, on USB 5 V, enumerated)", 0.040, 0.025, 0.075,
                  f"ASSUMPTION: 8 mA (5 to 15 mA) at 5 V, the order of FTDI's DS_FT231X "
                  f"operating supply current (not re-read here); powered from USB 5 V per "
                  f"{_ULX3S} doc/MANUAL.md 'Power'"),
        PowerDraw("ESP32-WROOM-32 (U9)", 0.10, 0.0, 0.33,
                  "ASSUMPTION: populated on the stock board and running its own firmware; 30 mA "
                  "at 3.3 V idle with Wi-Fi off (0 if absent or held in reset, 100 mA with "
                  "Wi-Fi associated), through the 3.3 V buck"),
        PowerDraw("SDRAM (U2, unused by the design)", 0.020, 0.003, 0.085,
                  "ASSUMPTION: 6 mA (1 to 25 mA) at 3.3 V, an SDR SDRAM in standby with its "
                  "clock stopped or running; the design leaves its pins idle"),
        PowerDraw("25 MHz oscillator", 0.015, 0.007, 0.035,
                  "ASSUMPTION: 4.5 mA (2 to 10 mA) at 3.3 V, a CMOS crystal oscillator"),
        PowerDraw("LEDs (D18 power LED lit while the FT231X is enumerated)", 0.010, 0.003, 0.020,
                  f"ASSUMPTION: 3 mA (1 to 6 mA) at 3.3 V; {_ULX3S} doc/MANUAL.md: 'Green LED "
                  f"D18 ... will turn ON' when the USB-serial chip is enumerated"),
        PowerDraw("flash, RTC, ADC, regulators' quiescent current", 0.002, 0.001, 0.005,
                  f"ASSUMPTION: flash and ADC in standby, the RTC on its coin cell; the three "
                  f"bucks' 35 uA each ({_TLV62569}) is 0.5 mW"),
    ))


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
        What the board draws beside the FPGA when idle (0 W with a note where not estimated).
    power : BoardPower or None
        The board-level model (regulators' efficiency and idle draw, with ranges), or None where
        it is not estimated.
    sdram_presets : tuple of str
        The presets whose weights this board keeps in its external SDRAM
        (:class:`tern_fpga.hw.sdram.board.SDRAMBoardTop`, docs/sdram.md) rather than block RAM.
    dataflow_presets : tuple of str
        The presets this board builds with issue 15's dataflow core
        (:class:`tern_fpga.hw.dataflow.board.DataflowBoardTop`, docs/dataflow.md) rather than
        the instruction-at-a-time core; their exports load in the dataflow core's layout.
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
    power: BoardPower | None = None
    sdram_presets: tuple = ()
    dataflow_presets: tuple = ()

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
        ULX3S_POWER.idle_w,
        "ULX3S board-level power ESTIMATED at its USB 5 V input: the FPGA's power through the "
        "TLV62569 bucks at an assumed 80 % (70-90 %) efficiency plus an assumed idle draw of "
        "the FT231X, ESP32, SDRAM, oscillator and LEDs (tern_fpga/contracts/boards.py, "
        "docs/power.md); no published measurement of the board was found: measure the USB "
        "supply (docs/measurement.md: a UM25C meter or an INA219)",
        ULX3S_POWER, sdram_presets=("stdlib",), dataflow_presets=("micro-dataflow",)),
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


def weights_in_sdram(params) -> bool:
    """Whether ``params`` is a preset that a board builds with its weights in SDRAM (the
    preset itself, not a variant of it with other sizes)."""
    known = PRESETS.get(params.name)
    return (known is not None and known.hash == params.hash
            and any(params.name in entry.sdram_presets for entry in BOARDS.values()))


def runs_dataflow_core(params) -> bool:
    """Whether ``params`` is a preset that a board builds with the dataflow core (the preset
    itself, not a variant of it with other sizes): the host then loads its exports in the
    dataflow core's layout (:func:`tern_fpga.contracts.segmented_layout.segmented_export`)."""
    known = PRESETS.get(params.name)
    return (known is not None and known.hash == params.hash
            and any(params.name in entry.dataflow_presets for entry in BOARDS.values()))


def board(name: str) -> Board:
    """The board called ``name``, or one clear error listing the supported ones."""
    try:
        return BOARDS[name]
    except KeyError:
        raise TernError(f"unknown board {name!r}; supported: {', '.join(sorted(BOARDS))}") \
            from None
