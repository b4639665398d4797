"""An *estimated* FPGA power model: utilisation x clock x switching activity, with sources.

The model (docs/power.md)::

    P_fpga         = P_device_static + P_core_dynamic
    P_core_dynamic = k_clock * f_MHz  +  sum over cell types c of  N_c * k_c * f_MHz * a_c
    P_total        = P_fpga + P_board,  P_board = P_fpga * (1 / efficiency - 1) + P_idle

``N_c`` is the number of cells of nextpnr type ``c`` the design uses, ``f_MHz`` the core clock,
``a_c`` the toggle rate of those cells (toggles per bit per clock cycle, from a Verilator run of
real generation: :mod:`tern_fpga.explore.activity`), ``k_c`` the dynamic power of one cell per MHz
at a toggle rate of 1 (microwatts), ``k_clock`` the clock network's power per MHz. Every coefficient
carries its source; where no published figure was found, the source says so and how the number was
derived; an assumption carries a range (``low``, ``high``), and every estimate gives the range of
its result with all assumptions at their low and at their high ends. ``P_total`` is the board at
its supply input where the board's regulators and idle draw are modelled
(:class:`tern_fpga.contracts.boards.BoardPower`), else the FPGA alone. An estimate, not a
measurement (host/meters is for that).
"""

from __future__ import annotations

import dataclasses
import math
from types import MappingProxyType

from tern_fpga.contracts.boards import Board, board
from tern_fpga.contracts.errors import TernError

__all__ = ["FAMILIES", "PAPER_BOARD_W", "RECORDED_UTILISATION", "Coefficient",
           "FamilyCoefficients", "PowerEstimate", "estimate", "tokens_per_joule",
           "tokens_per_joule_range"]

# Zhu et al. 2024 (shared/MODEL.md): measured board power of their Intel D5005 (Stratix 10)
# accelerator running one d=512 block, 13.67 W (idle 13.68 W).
PAPER_BOARD_W = 13.67
PAPER_MACHINE = "Intel D5005 (Stratix 10)"

_ICE40_POWER = ("tinyvision-ai-inc/ice40_power, README.md 'Results' table (commit 1af931e): "
                "currents per rail of an iCE40UP5K-SG48 on Lattice's iCE40 UltraPlus breakout "
                "board, measured with a Joulescope JS110, core at 1.219 V")
# Core voltages: the measurement above (iCE40UP5K, nominal 1.2 V) and the ECP5's nominal 1.1 V
# (ECP5 family data sheet FPGA-DS-02012, recommended operating conditions).
_ICE40_VCC, _ECP5_VCC = 1.219, 1.1
_VOLTAGE_SCALE = (_ECP5_VCC / _ICE40_VCC) ** 2          # dynamic power ~ C V^2 f

# iCE40UP5K, derived from the measured rows (all currents in uA, core rail unless said).
_ICE40_STATIC_W = (85.6 * 1.219 + 4.1 * 1.219 + (1.3 + 3.4 + 1.5) * 3.283) * 1e-6
_ICE40_CLOCK = (2184 - 388.4) / (48 - 6) * _ICE40_VCC   # uW/MHz, HFOSC at 6 and 48 MHz
_COUNTER_TOGGLE_RATE = 2 / 28                            # a 28-bit binary counter's mean
_ICE40_LC = (641.3 - 613.5) / (228 - 32) / 12 * _ICE40_VCC / _COUNTER_TOGGLE_RATE
_MULTIPLIER_LC_UA = (996 - 645) / (208 - 28)             # uA per LC of the soft 8x8 multiplier
_DSP_UA = 882 - 996 + (208 - 72) * _MULTIPLIER_LC_UA     # the DSP replaced 136 LCs
_DSP_INPUT_TOGGLE_RATE = 2 / 8                           # its inputs: two 8-bit counters
_ICE40_DSP = _DSP_UA / 12 * _ICE40_VCC / _DSP_INPUT_TOGGLE_RATE


@dataclasses.dataclass(frozen=True)
class Coefficient:
    """One number of the model with its unit and where it comes from; an assumption also has
    the range it may lie in (``low``, ``high``; both ``value`` when not given)."""

    value: float
    unit: str
    source: str
    low: float | None = None
    high: float | None = None

    def __post_init__(self):
        low, high = self.bounds
        if not 0 <= low <= self.value <= high:
            raise ValueError(f"a coefficient needs 0 <= low <= value <= high, not {low}, "
                             f"{self.value}, {high} ({self.unit})")

    @property
    def bounds(self) -> tuple[float, float]:
        """``(low, high)``, each ``value`` where not given."""
        return (self.value if self.low is None else self.low,
                self.value if self.high is None else self.high)

    def at(self, end: str) -> float:
        """The value at ``end``: ``"value"``, ``"low"`` or ``"high"``."""
        return {"value": self.value, "low": self.bounds[0], "high": self.bounds[1]}[end]


@dataclasses.dataclass(frozen=True)
class FamilyCoefficients:
    """The coefficients of one FPGA family (one device of it).

    Members
    -------
    device : str
    static_w : Coefficient
        The configured device's static power at room temperature (W).
    clock_uw_per_mhz : Coefficient
        Clock network (oscillator or PLL, global buffers), independent of the activity.
    cells : mapping
        nextpnr cell type -> :class:`Coefficient` in uW per MHz per cell at toggle rate 1.
        Cell types not listed (IO, PLL) are counted with no dynamic power; the estimate's
        ``notes`` name them.
    """

    family: str
    device: str
    static_w: Coefficient
    clock_uw_per_mhz: Coefficient
    cells: MappingProxyType


def _cells(**cells: Coefficient) -> MappingProxyType:
    return MappingProxyType(cells)


_LC_SOURCE = (f"derived from {_ICE40_POWER}: the rows 'External 12 MHz + 28 bit counter' with "
              f"32 and 228 LCs (613.5 and 641.3 uA) give 0.142 uA per LC at 12 MHz, x 1.219 V, "
              f"/ 12 MHz, / the counters' mean toggle rate 2/28 = {_COUNTER_TOGGLE_RATE:.4f}. "
              f"No per-LC coefficient is published for the UP5K (Lattice's figures live in its "
              f"Radiant power calculator, not in a document)")
_DSP_SOURCE = (f"derived from {_ICE40_POWER}: 'Math (1 DSP)' (882 uA, 72 LCs) against 'Math (no "
               f"DSP)' (996 uA, 208 LCs) at 12 MHz, the 136 LCs the DSP replaced costing "
               f"{_MULTIPLIER_LC_UA:.2f} uA each (the soft multiplier's rows against the 28-LC "
               f"counter's 645 uA): {_DSP_UA:.0f} uA for one SB_MAC16 doing an 8 x 8 product, "
               f"x 1.219 V / 12 MHz / its inputs' toggle rate 2/8. One toy measurement: "
               f"range +-50 %")
_EBR_ASSUMPTION = ("ASSUMPTION, no published figure found (the measurement repository lists "
                   "block RAM as future work): one access costs as much as its data word of "
                   "logic cells switching, {bits} x the logic cell coefficient, scaled by the "
                   "toggle rate of the memories' data ports")

_EBR_RANGE_NOTE = (". Range x0.5 to x4 of this value: an access may switch a fraction of the word "
                   "or, with the array's bit and word lines, several times it")

ICE40 = FamilyCoefficients(
    family="ice40", device="iCE40UP5K",
    static_w=Coefficient(
        _ICE40_STATIC_W, "W",
        f"measured in {_ICE40_POWER}, row 'Blank design': core 85.6 uA and PLL 4.1 uA at "
        f"1.219 V, banks 1.3 + 3.4 + 1.5 uA at 3.283 V; consistent with the iCE40 UltraPlus "
        f"Family Data Sheet (FPGA-DS-02008), Features: 'as low as 100 uA standby current "
        f"typical'"),
    clock_uw_per_mhz=Coefficient(
        _ICE40_CLOCK, "uW/MHz",
        f"derived from {_ICE40_POWER}: rows 'HFOSC (6 MHz)' and 'HFOSC (48 MHz) + 24 bit "
        f"counter' (388.4 and 2184 uA): the slope of the core current, x 1.219 V; it includes "
        f"the oscillator and a 28-LC counter. The PLL rows (12 MHz in, 16 / 48 MHz out) give "
        f"36 uA/MHz, within 20 %"),
    cells=_cells(
        ICESTORM_LC=Coefficient(_ICE40_LC, "uW/MHz per cell at toggle rate 1", _LC_SOURCE),
        ICESTORM_DSP=Coefficient(_ICE40_DSP, "uW/MHz per cell at toggle rate 1", _DSP_SOURCE,
                                 _ICE40_DSP * 0.5, _ICE40_DSP * 1.5),
        ICESTORM_RAM=Coefficient(16 * _ICE40_LC, "uW/MHz per cell at toggle rate 1",
                                 _EBR_ASSUMPTION.format(bits="16 bits (SB_RAM40_4K)")
                                 + _EBR_RANGE_NOTE, 16 * _ICE40_LC * 0.5, 16 * _ICE40_LC * 4),
        ICESTORM_SPRAM=Coefficient(16 * _ICE40_LC, "uW/MHz per cell at toggle rate 1",
                                   _EBR_ASSUMPTION.format(bits="16 bits (SB_SPRAM256KA)")
                                   + _EBR_RANGE_NOTE, 16 * _ICE40_LC * 0.5, 16 * _ICE40_LC * 4),
    ))

_ECP5_SCALING = (f"the iCE40UP5K coefficient (same 40 nm node) scaled by (1.1 V / 1.219 V)^2 "
                 f"= {_VOLTAGE_SCALE:.3f}")
_ECP5_FROM_ICE40 = ("ASSUMPTION, no published per-resource figure found for the ECP5 (Lattice "
                    "TN1266 'Power Consumption and Management for ECP5 and ECP5-5G Devices' "
                    "points to the Diamond Power Calculator, whose coefficients are not in a "
                    "document): " + _ECP5_SCALING)
_ECP5_LUTS, _ICE40_LUTS = 83_640, 5_280
# LFE5U-85F standby typicals (FPGA-DS-02012 v3.4 Table 3.8, as quoted; see ECP5.static_w): core,
# auxiliary, and the seven I/O banks of the CABGA381 at 3.3 V.
_ECP5_STATIC_W = 0.212 * 1.1 + 0.026 * 2.5 + 7 * 0.0005 * 3.3
# The ranges of the ECP5 assumptions (factors on the central value): a larger die's longer
# routing makes the scaled iCE40 figures more likely too low than too high.
_LOGIC_RANGE = (0.5, 3.0)
_EBR_RANGE = (0.5, 4.0)       # as the iCE40's (_EBR_RANGE_NOTE)
_DSP_RANGE = (0.5, 2.0)       # +-50 % of the one toy measurement, then scaled
_CLOCK_RANGE = (0.5, 2.0)
_RANGE_NOTE = " Range x{:g} to x{:g} of this value (docs/power.md)."


def _assumed(value: float, unit: str, source: str, factors: tuple[float, float]) -> Coefficient:
    return Coefficient(value, unit, source + _RANGE_NOTE.format(*factors),
                       value * factors[0], value * factors[1])


_PER_CELL = "uW/MHz per cell at toggle rate 1"

ECP5 = FamilyCoefficients(
    family="ecp5", device="LFE5U-85F",
    static_w=Coefficient(
        _ECP5_STATIC_W, "W",
        f"SECONDARY SOURCE: the ECP5 and ECP5-5G Family Data Sheet (FPGA-DS-02012 v3.4), "
        f"Table 3.8 'Supply Current (Standby)', typical for the LFE5U-85F: ICC 212 mA, ICCAUX "
        f"26 mA, ICCIO 0.5 mA per bank, as quoted in two public board-design notes (an "
        f"LFE5U-85F board's power sheet that lists the data sheet among its downloaded sources, "
        f"and a board power register), found by code search on 2026-12-05; the data sheet's "
        f"own table could not be read here. 212 mA x 1.1 V + 26 mA x 2.5 V + 7 banks x 0.5 mA "
        f"x 3.3 V = {_ECP5_STATIC_W:.3f} W. Range 0.15 to 0.40 W: the quote gives no "
        f"junction temperature (if the typicals are for a hot junction, as some Lattice "
        f"families' are, leakage at room temperature is roughly half) and parts spread above "
        f"the typical",
        0.15, 0.40),
    clock_uw_per_mhz=_assumed(
        _ICE40_CLOCK * _VOLTAGE_SCALE * _ECP5_LUTS / _ICE40_LUTS, "uW/MHz",
        f"ASSUMPTION: the iCE40UP5K's measured clock network (above) x (1.1 V / 1.219 V)^2 x "
        f"the ratio of the devices' LUTs ({_ECP5_LUTS:,} / {_ICE40_LUTS:,}), a global clock "
        f"tree spanning a die that much larger.", _CLOCK_RANGE),
    cells=_cells(
        TRELLIS_COMB=_assumed(_ICE40_LC * _VOLTAGE_SCALE / 2, _PER_CELL,
                              _ECP5_FROM_ICE40 + ", halved: an iCE40 LC holds a LUT4 and its "
                              "flip-flop, nextpnr-ecp5 counts them as two cells.", _LOGIC_RANGE),
        TRELLIS_FF=_assumed(_ICE40_LC * _VOLTAGE_SCALE / 2, _PER_CELL,
                            _ECP5_FROM_ICE40 + ", halved (see TRELLIS_COMB).", _LOGIC_RANGE),
        TRELLIS_RAMW=_assumed(_ICE40_LC * _VOLTAGE_SCALE / 2, _PER_CELL,
                              _ECP5_FROM_ICE40 + ", halved: the write port of distributed "
                              "RAM, counted as one more logic cell.", _LOGIC_RANGE),
        DP16KD=_assumed(18 * _ICE40_LC * _VOLTAGE_SCALE, _PER_CELL,
                        _EBR_ASSUMPTION.format(bits="18 bits (one DP16KD port)") + "; with "
                        "the logic cell coefficient " + _ECP5_SCALING + ".", _EBR_RANGE),
        MULT18X18D=_assumed(_ICE40_DSP * _VOLTAGE_SCALE * (18 * 18) / (16 * 16), _PER_CELL,
                            _ECP5_FROM_ICE40 + ", x (18 x 18) / (16 x 16) for the wider "
                            "multiplier: the SB_MAC16 coefficient.", _DSP_RANGE),
    ))

FAMILIES = MappingProxyType({"ecp5": ECP5, "ice40": ICE40})


# Utilisation when no bitstream manifest exists: (board, preset) -> (nextpnr cells, source).
RECORDED_UTILISATION = MappingProxyType({
    ("ulx3s-85f", "demo"): (
        MappingProxyType({"TRELLIS_COMB": 36_567, "TRELLIS_FF": 17_153, "TRELLIS_RAMW": 265,
                          "DP16KD": 198, "MULT18X18D": 110, "TRELLIS_IO": 9, "EHXPLLL": 1}),
        ("nextpnr's utilisation of the routed ULX3S demo bitstream (P=128, V=8, 25 MHz), "
         "2026-11-29, as recorded: 36,567 TRELLIS_COMB, 17,153 TRELLIS_FF, 265 TRELLIS_RAMW, "
         "198 DP16KD, 110 MULT18X18D; the committed manifest supersedes it when it matches")),
    ("icebreaker", "micro"): (
        MappingProxyType({"ICESTORM_LC": 8_914, "ICESTORM_DSP": 32, "ICESTORM_RAM": 378}),
        ("docs/boards.md (2026-11-29): 8,914 LUTs, 32 SB_MAC16, 378 EBR from a synthesis that "
        "did not complete place and route (the UP5K has 5,280 LUTs, 8 DSPs, 30 EBR: the design "
        "does not fit); logic cells counted as the LUTs (flip-flops share them)")),
})


@dataclasses.dataclass(frozen=True)
class PowerEstimate:
    """An *estimated* power figure, split by where it goes.

    Members
    -------
    core_dynamic_w : float
        Switching power of the design's cells and the clock network.
    device_static_w : float
        The configured FPGA's static power.
    board_w : float
        What the board adds at its supply input: its regulators' losses on the FPGA's power and
        its idle draw (0 with a note where not estimated).
    total_w : float
        ``fpga_w + board_w``: the board at its input where modelled, else the FPGA alone.
    breakdown : mapping
        ``clock_network`` and each cell type -> dynamic watts.
    covers : str
        What the figure includes and leaves out.
    notes : tuple of str
        Cell types without a coefficient, the board's note.
    ranges : mapping
        ``core_dynamic_w``, ``device_static_w``, ``fpga_w``, ``board_w``, ``total_w`` ->
        ``(low, high)``: the figure with every assumption at its low end and at its high end.
    """

    family: str
    device: str
    clock_hz: float
    core_dynamic_w: float
    device_static_w: float
    board_w: float
    total_w: float
    breakdown: dict[str, float]
    covers: str
    notes: tuple[str, ...] = ()
    ranges: dict = dataclasses.field(default_factory=dict)

    @property
    def fpga_w(self) -> float:
        """The FPGA alone: core dynamic plus device static power."""
        return self.core_dynamic_w + self.device_static_w

    def range_of(self, key: str) -> tuple[float, float]:
        """``(low, high)`` of ``key`` (``"total_w"``, ``"fpga_w"``, ...), or the value twice."""
        return tuple(self.ranges.get(key, (getattr(self, key),) * 2))

    def to_dict(self) -> dict:
        fields = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return {**fields, "fpga_w": self.fpga_w, "breakdown": dict(self.breakdown),
                "notes": list(self.notes),
                "ranges": {key: list(pair) for key, pair in self.ranges.items()}}


def _family(name: str) -> FamilyCoefficients:
    if name not in FAMILIES:
        raise TernError(f"unknown FPGA family {name!r}; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


def _board(name: str) -> Board:
    return board(name)


def _activity_of(activity, cell: str) -> float:
    rate = activity.get(cell, activity.get("default")) if isinstance(activity, dict) else activity
    if rate is None:
        raise TernError(f"no toggle rate for {cell} cells; give one or a 'default' entry")
    if not (isinstance(rate, (int, float)) and 0 <= rate <= 1 and math.isfinite(rate)):
        raise TernError(f"a toggle rate is a fraction of cycles from 0 to 1, not {rate!r} "
                        f"({cell})")
    return float(rate)


def _dynamic(coefficients: FamilyCoefficients, utilisation: dict[str, int], mhz: float,
             activity, end: str) -> tuple[dict[str, float], list[str]]:
    """Dynamic watts per cell type (and the clock network) with every coefficient at ``end``,
    and the used cell types that have no coefficient."""
    breakdown = {"clock_network": coefficients.clock_uw_per_mhz.at(end) * mhz * 1e-6}
    unmodelled = []
    for cell, used in sorted(utilisation.items()):
        if not (isinstance(used, int) and used >= 0):
            raise TernError(f"the count of {cell} cells must be a non-negative integer, "
                            f"not {used!r}")
        if cell not in coefficients.cells:
            if used:
                unmodelled.append(cell)
            continue
        rate = _activity_of(activity, cell)
        breakdown[cell] = used * coefficients.cells[cell].at(end) * mhz * rate * 1e-6
    return breakdown, unmodelled


def _board_watts(board_power: Board | None, fpga_w: float, end: str) -> float:
    """What the board adds at its input to ``fpga_w``: regulator losses plus idle draw, with
    the board's assumptions at ``end`` (the low end pairs the best efficiency with the least
    idle draw)."""
    if board_power is None:
        return 0.0
    supply = board_power.power
    if supply is None:
        return board_power.board_watts
    efficiency = {"value": supply.regulator_efficiency, "low": supply.efficiency_high,
                  "high": supply.efficiency_low}[end]
    idle = {"value": supply.idle_w, "low": supply.idle_range[0],
            "high": supply.idle_range[1]}[end]
    return fpga_w * (1 / efficiency - 1) + idle


def estimate(family: str, utilisation: dict[str, int], clock_hz: float,
             activity: float | dict[str, float], board: str | None = None) -> PowerEstimate:
    """Estimate the power of a design from its cells, clock and switching activity.

    Parameters
    ----------
    family : str
        ``"ecp5"`` or ``"ice40"``.
    utilisation : dict
        nextpnr cell type -> cells used (``TRELLIS_COMB``, ``DP16KD``, ``ICESTORM_LC``, ...).
    clock_hz : float
        The core clock.
    activity : float or dict
        Toggle rate (toggles per bit per cycle, 0 to 1) of every cell, or per cell type with an
        optional ``"default"`` entry for the others.
    board : str, optional
        A name of :data:`BOARDS`, whose own power is added (and must be of ``family``): its
        regulators' losses and idle draw where it has a :class:`BoardPower`, else its
        ``board_watts``.

    Returns
    -------
    PowerEstimate
        With ``ranges``: each figure with every coefficient (and board assumption) at the low
        and at the high end of its range.

    Raises
    ------
    TernError
        On an unknown family or board, a board of another family, a negative cell count or
        clock, or a toggle rate outside 0 to 1.
    """
    coefficients = _family(family)
    board_power = _board(board) if board is not None else None
    if board_power is not None and board_power.family != family:
        raise TernError(f"board {board!r} carries an {board_power.family} FPGA, not {family}")
    if not (isinstance(clock_hz, (int, float)) and clock_hz >= 0 and math.isfinite(clock_hz)):
        raise TernError(f"the clock must be a non-negative frequency in Hz, not {clock_hz!r}")
    mhz = clock_hz / 1e6
    figures = {}
    for end in ("value", "low", "high"):
        breakdown, unmodelled = _dynamic(coefficients, utilisation, mhz, activity, end)
        core = sum(breakdown.values())
        static = coefficients.static_w.at(end)
        board_w = _board_watts(board_power, core + static, end)
        figures[end] = {"core_dynamic_w": core, "device_static_w": static,
                        "fpga_w": core + static, "board_w": board_w,
                        "total_w": core + static + board_w, "breakdown": breakdown}
    central = figures["value"]
    notes = []
    if unmodelled:
        notes.append(f"no dynamic power counted for {', '.join(unmodelled)} (I/O toggling at "
                     f"the UART's rate, the PLL within the clock network term)")
    notes.append(board_power.board_power_note if board_power else "no board given: board power 0 W")
    covers = (f"{coefficients.device}: the design's switching power (logic, flip-flops, block "
              f"RAM, multipliers, clock network) at {mhz:g} MHz and the device's static power; "
              f"the board's own power where known (see the notes). Left out: I/O switching, "
              f"glitches (the activity is zero-delay), temperature, the host")
    ranges = {key: (figures["low"][key], figures["high"][key])
              for key in ("core_dynamic_w", "device_static_w", "fpga_w", "board_w", "total_w")}
    return PowerEstimate(family, coefficients.device, float(clock_hz), central["core_dynamic_w"],
                         central["device_static_w"], central["board_w"], central["total_w"],
                         central["breakdown"], covers, tuple(notes), ranges)


_SCOPES = {"total": "total_w", "fpga": "fpga_w"}


def _scope_key(scope: str) -> str:
    if scope not in _SCOPES:
        raise TernError(f"unknown scope {scope!r}; choose one of {', '.join(_SCOPES)}")
    return _SCOPES[scope]


def tokens_per_joule(tokens_per_s: float, estimate: PowerEstimate, scope: str = "total"
                     ) -> float:
    """Tokens per joule at ``tokens_per_s`` over the estimate's total power (``scope="total"``:
    the board where modelled) or the FPGA alone (``scope="fpga"``)."""
    watts = getattr(estimate, _scope_key(scope))
    if watts <= 0:
        raise TernError(f"the estimate's {scope} power is 0 W: tokens per joule is undefined")
    return tokens_per_s / watts


def tokens_per_joule_range(tokens_per_s: float, estimate: PowerEstimate, scope: str = "total"
                           ) -> tuple[float, float]:
    """``(low, high)`` tokens per joule under the assumptions' ranges: over the high and the
    low end of the power."""
    low_w, high_w = estimate.range_of(_scope_key(scope))
    if low_w <= 0:
        raise TernError(f"the estimate's {scope} power can be 0 W: tokens per joule is undefined")
    return tokens_per_s / high_w, tokens_per_s / low_w
