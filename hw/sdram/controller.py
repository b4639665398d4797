"""SDRAMController: the generated LiteDRAM core and our init sequencer, as one Amaranth component.

The user side is LiteDRAM's native port as three Amaranth streams (docs/sdram.md, "Native
port"): ``cmd`` (``we``, ``addr`` in 16-bit words), ``wdata`` (``data``, byte enables ``we``)
and ``rdata`` (``data``), plus ``init_done``. The core runs in the ``sync`` domain, which is
the SDRAM's clock (50 MHz on the ULX3S, :mod:`.config`).

Two variants, as :func:`~.litedram_core.generate_core` makes them:

``"sim"``
    LiteDRAM's memory model with its timing checker inside the core: no pins.
``"hw"``
    The core drives the SDRAM's pins (``sdram`` resource of amaranth-boards' ULX3S, requested
    with ``dir="-"``; the core's Verilog is added to the platform's files), and an ECP5 ``ODDRX1F`` drives the SDRAM's clock pin from the clock
    domain ``clock_ps_domain``: the ``sync`` clock shifted by 90 degrees, which the board's
    PLL must provide (litex-boards' ULX3S target does the same: docs/sdram.md).
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Instance, Module, ResetSignal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.hw.sdram.init_fsm import InitSequencer
from tern_fpga.hw.sdram.init_sequence import init_program
from tern_fpga.hw.sdram.litedram_core import TOPLEVEL, GeneratedCore

__all__ = ["SDRAMController", "native_port_layouts"]


def native_port_layouts(address_width: int, data_width: int) -> dict:
    """The payload layouts of the native port's three streams."""
    return {
        "cmd": data.StructLayout({"we": 1, "addr": address_width}),
        "wdata": data.StructLayout({"data": data_width, "we": data_width // 8}),
        "rdata": data.StructLayout({"data": data_width}),
    }


class SDRAMController(wiring.Component):
    """The LiteDRAM core ``core`` with its initialisation driven by :class:`InitSequencer`.

    Parameters
    ----------
    core : GeneratedCore
        From :func:`~.litedram_core.generate_core`; its Verilog must be added to the build
        (``core.verilog``).
    power_up_us : float
        The power-up wait of the initialisation (:data:`~.init_sequence.POWER_UP_US`).
    clock_ps_domain : str
        ``"hw"`` only: the domain whose clock drives the SDRAM's clock pin.
    """

    def __init__(self, core: GeneratedCore, *, power_up_us: float = 200.0,
                 clock_ps_domain: str = "sdram_ps"):
        self._core = core
        self._clock_ps_domain = clock_ps_domain
        self.sequencer = InitSequencer(
            init_program(core.cas_latency, core.timings, core.sys_clk_freq, power_up_us),
            core.registers)
        layouts = native_port_layouts(core.address_width, core.data_width)
        super().__init__({
            "cmd": In(stream.Signature(layouts["cmd"])),
            "wdata": In(stream.Signature(layouts["wdata"])),
            "rdata": Out(stream.Signature(layouts["rdata"])),
            "init_done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.sequencer = sequencer = self.sequencer
        bus = sequencer.bus
        port = {
            "i_clk": ClockSignal(),
            "o_init_done": self.init_done,
            "i_user_port_0_cmd_valid": self.cmd.valid,
            "o_user_port_0_cmd_ready": self.cmd.ready,
            "i_user_port_0_cmd_we": self.cmd.payload.we,
            "i_user_port_0_cmd_addr": self.cmd.payload.addr,
            "i_user_port_0_wdata_valid": self.wdata.valid,
            "o_user_port_0_wdata_ready": self.wdata.ready,
            "i_user_port_0_wdata_we": self.wdata.payload.we,
            "i_user_port_0_wdata_data": self.wdata.payload.data,
            "o_user_port_0_rdata_valid": self.rdata.valid,
            "i_user_port_0_rdata_ready": self.rdata.ready,
            "o_user_port_0_rdata_data": self.rdata.payload.data,
            "i_wb_ctrl_adr": bus.adr, "i_wb_ctrl_dat_w": bus.dat_w, "i_wb_ctrl_sel": bus.sel,
            "i_wb_ctrl_cyc": bus.cyc, "i_wb_ctrl_stb": bus.stb, "i_wb_ctrl_we": bus.we,
            "i_wb_ctrl_cti": 0, "i_wb_ctrl_bte": 0,
            "o_wb_ctrl_ack": bus.ack, "o_wb_ctrl_dat_r": bus.dat_r, "o_wb_ctrl_err": bus.err,
        }
        if self._core.variant == "sim":
            port["i_sim_trace"] = 0
        else:
            port["i_rst"] = ResetSignal()
            self._connect_pins(m, platform, port)
        m.submodules.litedram = Instance(TOPLEVEL, **port)
        return m

    def _connect_pins(self, m, platform, port):
        if platform is None:
            raise ValueError("the hw variant of SDRAMController drives the board's SDRAM pins: "
                             "elaborate it with the board's platform (or use variant 'sim')")
        platform.add_file(self._core.verilog.name, self._core.verilog.read_text())
        pins = platform.request("sdram", 0, dir="-")
        # amaranth-boards' names; the active-low ones are inverted only in their buffered
        # form, and ``.io`` is the raw pin, which is what LiteDRAM's *_n outputs are.
        for core_name, pin_name in (("a", "a"), ("ba", "ba"), ("cas_n", "cas"), ("cke", "clk_en"),
                                    ("cs_n", "cs"), ("ras_n", "ras"), ("we_n", "we")):
            port[f"o_sdram_{core_name}"] = getattr(pins, pin_name).io
        port["o_sdram_dm"] = pins.dqm.io
        port["io_sdram_dq"] = pins.dq.io
        # The SDRAM clock: 1 on the rising edge, 0 on the falling edge of the shifted clock.
        m.submodules.sdram_clock = Instance(
            "ODDRX1F", i_SCLK=ClockSignal(self._clock_ps_domain), i_RST=0, i_D0=1, i_D1=0,
            o_Q=pins.clk.io)
