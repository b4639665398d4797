"""The accelerator on a board: the core behind the host link, and the per-board top levels.

:class:`Accelerator` is everything but the pins: the :class:`~tern_fpga.hw.core.Core` behind the
:class:`~tern_fpga.hw.protocol_engine.HostLink` (UART and protocol engine), with status lights. It
is the design that the virtual board simulates and that every board's top level instantiates.
:class:`BoardTop` adds a board's oscillator and PLL, its UART pins and its LEDs, on an
amaranth-boards platform; :data:`tern_fpga.contracts.boards.BOARDS` lists the supported
boards.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Elaboratable, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.boards import Board
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.core import Core
from tern_fpga.hw.host_link import HostLink
from tern_fpga.hw.pll import ClockGenerator, ecp5_pll_config, ice40_pll_config

__all__ = ["Accelerator", "BoardTop", "simulation_baud"]

DEFAULT_BAUD = 3_000_000


def simulation_baud(params: AcceleratorParameters) -> int:
    """The virtual board's line rate: the fastest the UART takes (four cycles a bit), so that
    simulating a load takes minutes rather than the tens of minutes that 3 Mbaud would."""
    from tern_fpga.hw.uart import MIN_CYCLES_PER_BIT  # here, not at the top: loads Amaranth

    return params.clock_hz // MIN_CYCLES_PER_BIT


class Accelerator(wiring.Component):
    """The core behind the host link, with UART pins and status lights.

    Parameters
    ----------
    params : AcceleratorParameters
    baud : int
        UART rate.
    build_id : int
        32 bits reported by IDENTIFY (the git commit the bitstream was built from).
    board_id : int
        16 bits reported by IDENTIFY.
    weight_memory : wiring.Component or None
        The core's weight memory backend (see :class:`~tern_fpga.hw.core.Core`); block RAM by
        default.

    Members
    -------
    uart_rx : ``In(1, init=1)``
    uart_tx : ``Out(1, init=1)``
    idle : ``Out(1)``
        Nothing in progress (the virtual board skips idle time).
    leds : ``Out(4)``
        0: alive (blinks about twice a second), 1: running a program, 2: link activity,
        3: idle.
    """

    def __init__(self, params: AcceleratorParameters, *, baud: int = DEFAULT_BAUD,
                 build_id: int = 0, board_id: int = 0, weight_memory=None):
        self._params = params
        self._baud = baud
        self._link = HostLink(params, baud=baud, build_id=build_id, board_id=board_id)
        self._core = Core(params, weight_memory=weight_memory)
        super().__init__({"uart_rx": In(1, init=1), "uart_tx": Out(1, init=1),
                          "idle": Out(1), "leds": Out(4)})

    @property
    def params(self) -> AcceleratorParameters:
        return self._params

    @property
    def baud(self) -> int:
        return self._baud

    @property
    def core(self) -> Core:
        return self._core

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


class BoardTop(Elaboratable):
    """A board's top level: oscillator -> PLL at ``params.clock_hz``, UART pins, LEDs.

    Parameters
    ----------
    board : Board
    params : AcceleratorParameters
    baud, build_id, weight_memory :
        See :class:`Accelerator`.

    A board with external weight memory subclasses it: :meth:`clock_generator` for the memory's
    clocks, and ``elaborate`` adds the memory controller to the module this one returns.
    """

    def __init__(self, board: Board, params: AcceleratorParameters, *, baud: int = DEFAULT_BAUD,
                 build_id: int = 0, weight_memory=None):
        self.board, self.params = board, params
        self.accelerator = Accelerator(params, baud=baud, build_id=build_id,
                                       board_id=board.board_id, weight_memory=weight_memory)

    def pll_config(self, platform):
        oscillator_hz = platform.lookup(self.board.oscillator).clock.frequency
        choose = ecp5_pll_config if self.board.family == "ecp5" else ice40_pll_config
        return choose(oscillator_hz, self.params.clock_hz)

    def clock_generator(self, platform, oscillator) -> ClockGenerator:
        """The ``sync`` domain's clock generator, from the board's ``oscillator`` pin."""
        return ClockGenerator(self.board.family, self.pll_config(platform), oscillator.i)

    def elaborate(self, platform):
        m = Module()
        oscillator = platform.request(self.board.oscillator)
        m.submodules.clocks = self.clock_generator(platform, oscillator)
        m.submodules.accelerator = accelerator = self.accelerator
        uart = platform.request("uart", 0)
        m.d.comb += [accelerator.uart_rx.eq(uart.rx.i), uart.tx.o.eq(accelerator.uart_tx)]
        for index, (name, number) in enumerate(self.board.leds):
            m.d.comb += platform.request(name, number).o.eq(accelerator.leds[index])
        return m
