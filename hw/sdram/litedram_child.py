"""The child process of :func:`~.litedram_core.generate_core`: runs LiteDRAM's generator.

Run as ``python -m tern_fpga.hw.sdram.litedram_child FOLDER VARIANT`` with ``FOLDER/config.json``
written; writes ``FOLDER/litedram_core.v`` and ``FOLDER/core.json``. Only this process loads
LiteX and Migen (they import everything at module level and patch nothing back). What it adds to
or changes in LiteDRAM's ``litedram_gen`` is listed in :mod:`.litedram_core`.
"""

import functools
import json
import sys
import types
from pathlib import Path

from litedram import gen, modules, phy
from litedram.phy import model
from litex.build.lattice import LatticePlatform
from litex.build.sim import SimPlatform, verilator
from litex.soc.integration.builder import Builder
from migen import Cat, Display, If, Module, Signal

from tern_fpga.hw.sdram.litedram_core import COMMAND_LOG_TAG, TOPLEVEL


def _litex_config(config: dict) -> dict:
    """``litedram_gen``'s conversion of its YAML values to Python and LiteDRAM classes."""
    converted = {}
    for key, value in config.items():
        value = {"False": False, "True": True, "None": None}.get(value, value) \
            if isinstance(value, str) else value
        if "clk_freq" in key:
            value = float(value)
        if key == "sdram_module":
            value = getattr(modules, value)
        if key == "sdram_phy":
            value = getattr(phy, value)
        converted[key] = value
    return converted


def _command_log(dfi):
    """A Migen module that prints every DFI command of phase 0 (not NOP, not deselect)."""
    module = Module()
    cycle = Signal(64)
    phase = dfi.p0
    command = Signal(4)
    module.comb += command.eq(Cat(phase.we_n, phase.cas_n, phase.ras_n, phase.cs_n))
    module.sync += cycle.eq(cycle + 1)
    is_command = ~phase.cs_n & (Cat(phase.we_n, phase.cas_n, phase.ras_n) != 0b111)
    module.sync += If(is_command, Display(COMMAND_LOG_TAG + " %0d %0d %0d %0d %0d", cycle,
                                          command, phase.bank, phase.address, phase.cke))
    return module


def _write_core(directory: Path, variant: str) -> None:
    config = _litex_config(json.loads((directory / "config.json").read_text()))
    if variant == "sim":
        shim = types.ModuleType("litex.tools.litex_sim")
        shim.get_sdram_phy_settings = model.get_sdram_phy_settings
        sys.modules["litex.tools.litex_sim"] = shim
        # LiteX's simulator toolchain writes the Verilog, then sets up its own C++ simulation,
        # which needs more LiteX data packages: only the Verilog is wanted here.
        verilator._generate_sim_variables = verilator._build_sim = lambda *args, **kwargs: None
        gen.SDRAMPHYModel = functools.partial(model.SDRAMPHYModel,
                                              verbosity=model.SDRAM_VERBOSE_STD)
        platform = SimPlatform("", io=[])
    else:
        platform = LatticePlatform(config["device"], io=[], toolchain="trellis")
    soc = gen.LiteDRAMCore(platform, config, integrated_rom_size=0xC000)
    sdram_phy = soc.ddrphy if variant == "sim" else soc.sdrphy
    if variant == "sim":
        soc.submodules.tern_command_log = _command_log(sdram_phy.dfi)
    work = directory / "litex"
    builder = Builder(soc, output_dir=str(work), compile_gateware=False, compile_software=False,
                      csr_csv=str(work / "csr.csv"))
    builder.build(build_name=TOPLEVEL, regular_comb=False)

    verilog = (work / "gateware" / f"{TOPLEVEL}.v").read_text()
    if variant == "hw":
        dq_width = 8 * config["sdram_module_nb"]
        declared = f"input  wire   [{dq_width - 1}:0] sdram_dq,"
        if declared not in verilog:
            raise RuntimeError(f"the generated core does not declare {declared!r}; the locked "
                               f"LiteDRAM changed: update the dq port rewrite in {__file__}")
        verilog = verilog.replace(declared, f"inout  wire   [{dq_width - 1}:0] sdram_dq,")
    (directory / f"{TOPLEVEL}.v").write_text(verilog)

    registers = {}
    for line in (work / "csr.csv").read_text().splitlines():
        fields = line.split(",")
        if fields[0] == "csr_register":
            registers[fields[1]] = int(fields[2], 16)
    timing = soc.sdram.controller.settings.timing
    port = soc.sdram.crossbar.masters[0]
    info = {
        "registers": registers,
        "cas_latency": sdram_phy.settings.cl,
        "timings": {name: int(getattr(timing, name)) for name in
                    ("tRP", "tRCD", "tWR", "tWTR", "tREFI", "tRFC")},
        "address_width": port.address_width,
        "data_width": port.data_width,
        "sys_clk_freq": config["sys_clk_freq"],
    }
    (directory / "core.json").write_text(json.dumps(info, indent=1, sort_keys=True))


if __name__ == "__main__":
    _write_core(Path(sys.argv[1]), sys.argv[2])
