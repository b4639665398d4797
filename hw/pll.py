"""Phase-locked loops of the two FPGA families: choosing dividers, and the primitive instance.

:func:`ecp5_pll_config` and :func:`ice40_pll_config` search the dividers for the output
frequency closest to the one asked for, inside each family's documented ranges (Lattice
TN1263 for the ECP5 EHXPLLL, the iCE40 sysCLOCK PLL design guide for SB_PLL40), and say what
they reach; :class:`ClockGenerator` makes the ``sync`` domain from the board's oscillator with
it, with a reset held until the PLL locks.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import (
    ClockDomain,
    ClockSignal,
    Elaboratable,
    Instance,
    Module,
    ResetSignal,
    Signal,
)

from tern_fpga.contracts.errors import TernError

__all__ = ["ClockGenerator", "PllConfig", "PllError", "ecp5_pll_config", "ice40_pll_config"]


class PllError(TernError):
    """No divider setting reaches the asked frequency closely enough."""


@dataclass(frozen=True)
class PllConfig:
    """What a PLL makes: ``output_hz`` from ``input_hz`` with ``dividers``, asked for
    ``target_hz``."""

    input_hz: float
    output_hz: float
    dividers: dict
    target_hz: float

    @property
    def error(self) -> float:
        """Relative distance of the output from the target."""
        return abs(self.output_hz - self.target_hz) / self.target_hz


def _check(target_hz, best, family, tolerance):
    if best is None or abs(best.output_hz - target_hz) > tolerance * target_hz:
        reached = "nothing" if best is None else f"{best.output_hz / 1e6:.3f} MHz"
        raise PllError(f"the {family} PLL cannot make {target_hz / 1e6:.3f} MHz from "
                       f"{best.input_hz / 1e6 if best else 0:.3f} MHz (closest: {reached}); "
                       f"choose another clock_hz")
    return best


def ecp5_pll_config(input_hz: float, target_hz: float, tolerance: float = 0.01) -> PllConfig:
    """EHXPLLL dividers: ``f = f_in * CLKFB_DIV / CLKI_DIV``, VCO ``f * CLKOP_DIV`` in
    400-800 MHz, phase detector ``f_in / CLKI_DIV`` at least 3.125 MHz."""
    best = None
    for input_divider in range(1, 129):
        detector = input_hz / input_divider
        if detector < 3.125e6:
            break
        for feedback_divider in range(1, 81):
            output = detector * feedback_divider
            for output_divider in range(1, 129):
                vco = output * output_divider
                if vco < 400e6:
                    continue
                if vco > 800e6:
                    break
                if best is None or abs(output - target_hz) < abs(best.output_hz - target_hz):
                    best = PllConfig(input_hz, output, {
                        "CLKI_DIV": input_divider, "CLKFB_DIV": feedback_divider,
                        "CLKOP_DIV": output_divider}, target_hz)
                break
    return _check(target_hz, best, "ECP5", tolerance)


def ice40_pll_config(input_hz: float, target_hz: float, tolerance: float = 0.01) -> PllConfig:
    """SB_PLL40 dividers (simple feedback): ``f = f_in * (DIVF + 1) / ((DIVR + 1) * 2**DIVQ)``,
    phase detector 10-133 MHz, VCO 533-1066 MHz, output 16-275 MHz."""
    best = None
    for divr in range(16):
        detector = input_hz / (divr + 1)
        if not 10e6 <= detector <= 133e6:
            continue
        for divf in range(128):
            vco = detector * (divf + 1)
            if not 533e6 <= vco <= 1066e6:
                continue
            for divq in range(1, 7):
                output = vco / 2 ** divq
                if not 16e6 <= output <= 275e6:
                    continue
                if best is None or abs(output - target_hz) < abs(best.output_hz - target_hz):
                    filter_range = next(
                        index for index, limit in enumerate((17e6, 26e6, 44e6, 66e6, 101e6),
                                                            start=1)
                        if detector < limit) if detector < 101e6 else 6
                    best = PllConfig(input_hz, output, {
                        "DIVR": divr, "DIVF": divf, "DIVQ": divq,
                        "FILTER_RANGE": filter_range}, target_hz)
    return _check(target_hz, best, "iCE40", tolerance)


class ClockGenerator(Elaboratable):
    """The ``sync`` domain at ``config.output_hz`` from the board's ``clock`` (the oscillator's
    signal), held in reset until the PLL locks.

    Parameters
    ----------
    family : str
        ``"ecp5"`` or ``"ice40"``.
    config : PllConfig
    clock : Signal
        The oscillator's clock.
    shifted_domain : str or None
        ECP5 only: also make this clock domain, the ``sync`` clock delayed by
        :attr:`shift_degrees` (about 90 degrees: the VCO's phase steps), from the PLL's second
        output, with no reset of its own. An SDR SDRAM's clock pin is driven from it
        (docs/sdram.md).
    """

    def __init__(self, family: str, config: PllConfig, clock: Signal, *,
                 shifted_domain: str | None = None):
        if family not in ("ecp5", "ice40"):
            raise ValueError(f"family must be 'ecp5' or 'ice40', not {family!r}")
        if shifted_domain is not None and family != "ecp5":
            raise ValueError(f"a phase-shifted clock is made on the ECP5 only, not on {family}")
        self.family, self.config, self.clock = family, config, clock
        self.shifted_domain = shifted_domain

    @property
    def shift_steps(self) -> int:
        """The shifted output's delay in VCO periods: the nearest to a quarter clock period."""
        return round(self.config.dividers["CLKOP_DIV"] / 4)

    @property
    def shift_degrees(self) -> float:
        """The shifted output's delay, in degrees of the ``sync`` clock."""
        return 360 * self.shift_steps / self.config.dividers["CLKOP_DIV"]

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = sync = ClockDomain("sync")
        if platform is not None:  # nextpnr checks timing against the PLL's output
            platform.add_clock_constraint(sync.clk, self.config.output_hz)
        locked = Signal()
        divide = self.config.dividers
        if self.family == "ecp5":
            shifted_output = {}
            if self.shifted_domain is not None:
                shifted = ClockDomain(self.shifted_domain, reset_less=True)
                m.domains += shifted
                shifted_output = {
                    "p_CLKOS_ENABLE": "ENABLED", "p_CLKOS_DIV": divide["CLKOP_DIV"],
                    "p_CLKOS_CPHASE": divide["CLKOP_DIV"] - 1 + self.shift_steps,
                    "p_CLKOS_FPHASE": 0, "p_OUTDIVIDER_MUXB": "DIVB", "i_ENCLKOS": 0,
                    "o_CLKOS": shifted.clk}
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=str(self.config.input_hz / 1e6),
                a_FREQUENCY_PIN_CLKOP=str(self.config.output_hz / 1e6),
                p_CLKI_DIV=divide["CLKI_DIV"], p_CLKFB_DIV=divide["CLKFB_DIV"],
                p_CLKOP_DIV=divide["CLKOP_DIV"], p_CLKOP_CPHASE=divide["CLKOP_DIV"] - 1,
                p_CLKOP_FPHASE=0, p_CLKOP_ENABLE="ENABLED", p_FEEDBK_PATH="CLKOP",
                p_OUTDIVIDER_MUXA="DIVA", p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED",
                p_STDBY_ENABLE="DISABLED", p_DPHASE_SOURCE="DISABLED",
                i_CLKI=self.clock, i_CLKFB=ClockSignal("sync"), i_RST=0, i_STDBY=0,
                i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=0, i_PHASESTEP=0,
                i_PHASELOADREG=0, i_PLLWAKESYNC=0, i_ENCLKOP=0,
                o_CLKOP=ClockSignal("sync"), o_LOCK=locked, **shifted_output)
        else:
            m.submodules.pll = Instance(
                "SB_PLL40_CORE",
                p_FEEDBACK_PATH="SIMPLE", p_DIVR=divide["DIVR"], p_DIVF=divide["DIVF"],
                p_DIVQ=divide["DIVQ"], p_FILTER_RANGE=divide["FILTER_RANGE"],
                i_REFERENCECLK=self.clock, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=ClockSignal("sync"), o_LOCK=locked)
        # Hold reset for 128 cycles after lock, counted in a reset-less domain of the new clock.
        m.domains.startup = startup = ClockDomain("startup", reset_less=True)
        m.d.comb += startup.clk.eq(ClockSignal("sync"))
        counter = Signal(8)
        m.d.comb += ResetSignal("sync").eq(~counter[-1])
        with m.If(~locked):
            m.d.startup += counter.eq(0)
        with m.Elif(~counter[-1]):
            m.d.startup += counter.eq(counter + 1)
        return m
