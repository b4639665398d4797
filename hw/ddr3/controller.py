"""DDR3Controller: the generated DDR3 core (:mod:`.litedram_ddr3`) as an Amaranth component.

The user side is the SDR controller's (:class:`~tern_fpga.hw.sdram.controller.SDRAMController`,
docs/sdram.md "Native port"): LiteDRAM's native port as three streams, ``cmd`` (``we``, ``addr``
in 128-bit words), ``wdata`` (``data``, 16 byte enables ``we``) and ``rdata`` (``data``), plus
``init_done``. As there, ``wdata`` and ``rdata`` are not full streams: LiteDRAM ignores
``wdata.valid`` and ``rdata.ready``, so a write's data must wait at ``wdata`` from its command
until ``wdata.ready``, and every ``rdata`` beat must be taken in the cycle it comes.

Only the ``sim`` variant (LiteDRAM's memory model, no pins, ``sync`` is its clock) is built
here. Its model needs no DRAM initialisation and its DFII starts in hardware control, so the
:class:`~tern_fpga.hw.sdram.init_fsm.InitSequencer` inside plays one step after reset: 1 into
``ddrctrl_init_done`` on ``wb_ctrl``, which opens the user port and raises ``init_done``.

The ``hw`` variant is not built yet, and is refused rather than faked: it needs the DDR3's
initialisation (reset, mode registers, ZQ calibration through the DFII) and the ECP5DDRPHY's
read calibration (read delay and bitslip per byte lane, scanned through the control bus
with reads checked), which are not written (docs/ddr3.md, "Next"). Its core also makes the
``sys`` clock itself (``user_clk`` from its own PLL), so the board wrapper, not this component,
will own the clock domain; :meth:`DDR3Controller.user_port` is the part both variants share.
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Instance, Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.hw.ddr3.litedram_ddr3 import TOPLEVEL, DDR3Core
from tern_fpga.hw.sdram.controller import native_port_layouts
from tern_fpga.hw.sdram.init_fsm import InitSequencer
from tern_fpga.hw.sdram.init_sequence import RegisterWrite

__all__ = ["DDR3Controller"]


class DDR3Controller(wiring.Component):
    """The DDR3 core ``core`` (its ``sim`` variant) with its start-up driven from inside.

    Parameters
    ----------
    core : DDR3Core
        From :func:`~.litedram_ddr3.generate_ddr3_core`; its Verilog (``core.verilog``) must be
        added to the build.

    Raises
    ------
    ValueError
        If ``core`` is the ``hw`` variant (see the module's description).
    """

    def __init__(self, core: DDR3Core):
        if core.variant != "sim":
            self._MustUse__silence = True  # refused, never elaborated: no "unused" warning
            raise ValueError(
                f"DDR3Controller builds the 'sim' variant only, not {core.variant!r}: the hw "
                f"core needs DDR3 initialisation and ECP5DDRPHY read calibration, which are not "
                f"written yet (docs/ddr3.md, Next); use generate_ddr3_core(variant='sim')")
        self._core = core
        self.sequencer = InitSequencer([RegisterWrite("ddrctrl_init_done", 1)], core.registers)
        layouts = native_port_layouts(core.address_width, core.data_width)
        super().__init__({
            "cmd": In(stream.Signature(layouts["cmd"])),
            "wdata": In(stream.Signature(layouts["wdata"])),
            "rdata": Out(stream.Signature(layouts["rdata"])),
            "init_done": Out(1),
        })

    @property
    def core(self) -> DDR3Core:
        return self._core

    def user_port(self) -> dict:
        """The core's native port, ``init_done`` and ``wb_ctrl`` as :class:`Instance` arguments
        (the ports both variants have)."""
        bus = self.sequencer.bus
        return {
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

    def elaborate(self, platform):
        m = Module()
        m.submodules.sequencer = self.sequencer
        # The model has no reset input: its registers start from their initial values.
        m.submodules.litedram = Instance(TOPLEVEL, i_clk=ClockSignal(), i_sim_trace=0,
                                         **self.user_port())
        return m
