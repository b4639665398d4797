"""LiteDRAM's standalone DDR3 core (``ECP5DDRPHY``), generated at build time and cached.

The same scheme as :mod:`tern_fpga.hw.sdram.litedram_core` (whose helpers this module reuses):
:func:`generate_ddr3_core` runs LiteDRAM's own generator (``litedram.gen.LiteDRAMCore``) on a
configuration (:mod:`.config`) in a child Python process (this module run as
``python -m tern_fpga.hw.ddr3.litedram_ddr3 FOLDER VARIANT``, so that Migen and LiteX never load
into the caller) and keeps the result in ``build/ddr3/litedram-<variant>-<key>/``; ``key``
hashes the configuration, the variant, the locked litedram/litex/migen, this file and the SDR
generator's files it borrows from. The SDR generator itself is not used: its ``hw`` variant
reads ``soc.sdrphy`` (``GENSDRPHY`` only), its command log sees DFI phase 0 only, and its
``core.json`` lacks the DDR3 timings and the PHY's phases and latencies.

``"hw"``
    The core with LiteDRAM's ``ECP5DDRPHY`` (1:2 rate: two DFI phases a ``sys`` cycle, each
    carrying four beats) and the generator's own CRG: an ``EHXPLLL`` from ``input_clk_freq``
    to ``sys2x`` = 2 x ``sys_clk_freq`` (the DDR3 clock) and ``init_clk_freq``, the
    ``ECLKSYNCB``/``CLKDIVF`` pair that makes ``sys`` from ``sys2x``, and the ``DDRDLLA``
    start-up sequence. ``ddram_dq`` and ``ddram_dqs_p`` are rewritten from ``input`` to
    ``inout`` (:func:`_bidirectional_pads`), LiteX's dated comments are left out.
``"sim"``
    ``litedram_gen --sim``: LiteDRAM's ``SDRAMPHYModel`` in place of the PHY, with the model's
    ``DFITimingsChecker`` switched on (it prints a "violation" line) and a command log of every
    DFI phase (:data:`COMMAND_LOG_TAG`). **It models a 1:4 PHY, not the ECP5's 1:2**: for DDR3
    ``litedram_gen --sim`` takes the s7ddrphy's settings (four phases of two beats, CL/CWL for a
    DDR3 clock of 4 x ``sys``). The native port is the same (one BL8 burst a command: 128 bits
    for x16, same address width); the read latency and the timings counted in DRAM clocks
    (tCCD, tWTR, tRRD, tFAW, tRFC...) are not. LiteDRAM's model cannot take the ECP5's settings
    instead: it fixes two beats a phase for DDR3.

One change to LiteDRAM's inputs: the configuration's ``sdram_module_trfc_ns`` (not a key of
``litedram_gen``) replaces the module's tRFC, a clock count of DDR3-1600, with a time in ns
(:func:`_with_trfc_ns`).

Each folder holds ``litedram_core.v``, ``core.json`` (:class:`DDR3Core`), ``config.json`` and
``generate.log``; the LiteX build tree stays in ``litex/`` (its ``csr.csv``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import types
from importlib.metadata import version
from pathlib import Path

from tern_fpga.contracts import paths
from tern_fpga.hw.ddr3.config import ECPIX5_DDR3
from tern_fpga.hw.sdram import litedram_core

__all__ = ["COMMAND_LOG_TAG", "PHY_SETTINGS", "TIMINGS", "VARIANTS", "DDR3Core", "core_key",
           "generate_ddr3_core"]

VARIANTS = ("hw", "sim")
TOPLEVEL = litedram_core.TOPLEVEL
# Lines of the sim variant's command log:
# "<tag> <cycle> <phase> <command> <bank> <address> <cke>", <command> the DFI's
# {cs_n, ras_n, cas_n, we_n} as a number, as in the SDR core's log (docs/sdram.md).
COMMAND_LOG_TAG = "tern-ddr3"
# LiteDRAM's TimingSettings, in sys clock cycles, as the controller uses them.
TIMINGS = ("tRP", "tRCD", "tWR", "tWTR", "tREFI", "tRFC", "tFAW", "tCCD", "tRRD", "tRC", "tRAS",
           "tZQCS")
# The PHY's settings that a user of the core (init sequence, read FIFO) needs.
PHY_SETTINGS = ("phytype", "nphases", "rdphase", "wrphase", "cl", "cwl", "read_latency",
                "write_latency", "databits", "dfi_databits", "nranks")
_LOCKED_PACKAGES = ("litedram", "litex", "migen")
_BORROWED = (Path(litedram_core.__file__), Path(litedram_core.__file__).with_name(
    "litedram_child.py"))


@dataclasses.dataclass(frozen=True)
class DDR3Core:
    """One generated DDR3 core: its Verilog and what its ``core.json`` says.

    Members
    -------
    directory, verilog : pathlib.Path
        The build folder and ``litedram_core.v`` in it.
    variant : str
        ``"hw"`` or ``"sim"``.
    registers : dict of str to int
        Byte address on ``wb_ctrl`` of each control register.
    phy : dict
        The PHY's settings (:data:`PHY_SETTINGS`): phases, CL and CWL in DRAM clocks, read and
        write latencies in sys cycles.
    timings : dict of str to int
        :data:`TIMINGS` in sys clock cycles (LiteDRAM's ``timing_settings``).
    address_width, data_width : int
        The native user port's address (in words of ``data_width`` bits) and data widths.
    sys_clk_freq : float
        The controller's clock, in Hz.
    """

    directory: Path
    verilog: Path
    variant: str
    registers: dict
    phy: dict
    timings: dict
    address_width: int
    data_width: int
    sys_clk_freq: float

    @classmethod
    def load(cls, directory: Path, variant: str) -> DDR3Core:
        info = json.loads((directory / "core.json").read_text())
        return cls(directory=directory, verilog=directory / f"{TOPLEVEL}.v", variant=variant,
                   **info)


def core_key(config: dict, variant: str) -> str:
    """The cache key of a core: configuration, variant, locked versions, generator files."""
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r} is not one of {VARIANTS}")
    digest = hashlib.sha256()
    digest.update(json.dumps([config, variant], sort_keys=True).encode())
    for package in _LOCKED_PACKAGES:
        digest.update(f"{package}=={version(package)}".encode())
    for source in (Path(__file__), *_BORROWED):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def generate_ddr3_core(config: dict | None = None, variant: str = "sim") -> DDR3Core:
    """Generate (or reuse) the DDR3 core of ``config`` (default: the ECPIX-5's DDR3).

    Raises
    ------
    ValueError
        If ``variant`` is not one of :data:`VARIANTS`.
    RuntimeError
        If LiteDRAM's generator fails; the message shows the end of its log.
    """
    config = ECPIX5_DDR3 if config is None else config
    directory = paths.BUILD / "ddr3" / f"litedram-{variant}-{core_key(config, variant)}"
    if (directory / "core.json").is_file():
        return DDR3Core.load(directory, variant)
    partial = directory.with_name(f"{directory.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    (partial / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True))
    result = subprocess.run(
        [sys.executable, "-m", "tern_fpga.hw.ddr3.litedram_ddr3", str(partial), variant],
        check=False, capture_output=True, text=True, cwd=partial)
    (partial / "generate.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise RuntimeError(f"LiteDRAM's generator failed for {directory.name} "
                           f"(log: {partial / 'generate.log'}):\n{tail}")
    try:
        partial.rename(directory)
    except OSError:  # another process finished the same key first: keep its folder
        shutil.rmtree(partial, ignore_errors=True)
    return DDR3Core.load(directory, variant)


# The child process ---------------------------------------------------------------------------


def _command_log(dfi):
    """A Migen module that prints every DFI command of every phase (not NOP, not deselect).
    Child process only, as :func:`_write_core` (Migen comes from the ``__main__`` block)."""
    module = Module()
    cycle = Signal(64)
    module.sync += cycle.eq(cycle + 1)
    for number, phase in enumerate(dfi.phases):
        # Display takes whole signals only: rank 0's cs_n and cke through their own.
        command, cke = Signal(4), Signal()
        module.comb += [command.eq(Cat(phase.we_n, phase.cas_n, phase.ras_n, phase.cs_n[0])),
                        cke.eq(phase.cke[0])]
        is_command = ~phase.cs_n[0] & (Cat(phase.we_n, phase.cas_n, phase.ras_n) != 0b111)
        module.sync += If(is_command, Display(
            COMMAND_LOG_TAG + f" %0d {number} %0d %0d %0d %0d", cycle, command, phase.bank,
            phase.address, cke))
    return module


def _bidirectional_pads(verilog: str, dq_width: int, strobes: int) -> str:
    """Migen declares ``ddram_dq`` and ``ddram_dqs_p`` as inputs although their
    ``TRELLIS_IO`` pads drive them (as ``sdram_dq`` in the SDR core): rewrite both to
    ``inout``, the only edit made to the generated text. ``ddram_dqs_n`` and ``ddram_clk_n``
    stay unconnected inputs: the differential ``SSTL15D`` pads use the true pin only."""
    for name, width in (("ddram_dq", dq_width), ("ddram_dqs_p", strobes)):
        declared = f"input  wire {f'[{width - 1}:0]':>8} {name},"
        if verilog.count(declared) != 1:
            raise RuntimeError(f"the generated core does not declare {declared!r}; the locked "
                               f"LiteDRAM changed: update the rewrite in {__file__}")
        verilog = verilog.replace(declared, declared.replace("input ", "inout "))
    return verilog


def _with_trfc_ns(module, trfc_ns: float):
    """A subclass of the LiteDRAM module class ``module`` whose every speed grade gives tRFC as
    ``trfc_ns`` ns and no clock count; every other timing as LiteDRAM's. Child process only.

    Why: LiteDRAM's ``MT41K256M16`` gives tRFC as ``(208, None)``, a count of DRAM clocks that
    is the part's 260 ns at its speed grade (DDR3-1600, 1.25 ns a clock); LiteDRAM counts it as
    208 clocks of *our* DRAM clock, 1,387 ns at 150 MHz (hw) or 693 ns at 300 MHz (sim). The
    4 Gbit part needs 260 ns whatever the clock (Micron's data sheet, JEDEC's tRFC(min) for
    4 Gbit). A time is converted as LiteDRAM converts the others: (ns + its margin of
    (1 - 1/n) sys cycles at 1:n) / 13.33 ns, rounded up (sim 21, hw 20 cycles of 75 MHz).
    tREFI (a technology timing, 7.8125 us) and the refresh postponing (a controller setting,
    LiteDRAM's default 1) do not depend on tRFC; the model's timing checker reads the same
    module, so it checks REF to ACT against 260 ns."""
    grades = {grade: _SpeedgradeTimings(**{name: getattr(timings, name)
                                           for name in _speedgrade_timings}
                                        | {"tRFC": (None, trfc_ns)})
              for grade, timings in module.speedgrade_timings.items()}
    return type(module.__name__, (module,), {"speedgrade_timings": grades,
                                             "__module__": module.__module__})


def _write_core(directory: Path, variant: str) -> None:
    """Run LiteDRAM's generator in ``directory`` (the child process's whole work)."""
    config = _litex_config(json.loads((directory / "config.json").read_text()))
    # Not litedram_gen's key (hw/ddr3/config.py): tRFC in ns for the module, None for LiteDRAM's.
    trfc_ns = config.pop("sdram_module_trfc_ns", None)
    if trfc_ns is not None:
        config["sdram_module"] = _with_trfc_ns(config["sdram_module"], float(trfc_ns))
    if variant == "sim":
        # As the SDR generator does (hw/sdram/litedram_core.py): --sim reaches this function
        # through litex.tools.litex_sim (which needs LiteEth), and LiteX's simulator toolchain
        # is stopped after the Verilog; the model's timing checker is switched on.
        shim = types.ModuleType("litex.tools.litex_sim")
        shim.get_sdram_phy_settings = model.get_sdram_phy_settings
        sys.modules["litex.tools.litex_sim"] = shim
        verilator._generate_sim_variables = verilator._build_sim = lambda *args, **kwargs: None
        gen.SDRAMPHYModel = functools.partial(model.SDRAMPHYModel,
                                              verbosity=model.SDRAM_VERBOSE_STD)
        platform = SimPlatform("", io=[])
    else:
        platform = LatticePlatform(config["device"], io=[], toolchain="trellis")
    soc = gen.LiteDRAMCore(platform, config, integrated_rom_size=0xC000)
    if variant == "sim":
        soc.submodules.tern_command_log = _command_log(soc.ddrphy.dfi)
    work = directory / "litex"
    builder = Builder(soc, output_dir=str(work), compile_gateware=False, compile_software=False,
                      csr_csv=str(work / "csr.csv"))
    builder.build(build_name=TOPLEVEL, regular_comb=False)
    verilog = (work / "gateware" / f"{TOPLEVEL}.v").read_text()
    if variant == "hw":
        verilog = _bidirectional_pads(verilog, 8 * config["sdram_module_nb"],
                                      config["sdram_module_nb"])
    (directory / f"{TOPLEVEL}.v").write_text(_reproducible(verilog))

    registers = {}
    for line in (work / "csr.csv").read_text().splitlines():
        fields = line.split(",")
        if fields[0] == "csr_register":
            registers[fields[1]] = int(fields[2], 16)
    timing = soc.sdram.controller.settings.timing
    settings = soc.ddrphy.settings
    port = soc.sdram.crossbar.masters[0]
    info = {
        "registers": registers,
        "phy": {name: getattr(settings, name) for name in PHY_SETTINGS},
        "timings": {name: None if getattr(timing, name) is None else int(getattr(timing, name))
                    for name in TIMINGS},
        "address_width": port.address_width,
        "data_width": port.data_width,
        "sys_clk_freq": config["sys_clk_freq"],
    }
    (directory / "core.json").write_text(json.dumps(info, indent=1, sort_keys=True))


if __name__ == "__main__":
    # The child process (generate_ddr3_core runs this file): only it loads LiteX and Migen, at
    # the top of this block rather than in the functions above, as litedram_child.py does at
    # its top. litedram_child's helpers are shared with the SDR generator.
    from litedram import gen
    from litedram.modules import _speedgrade_timings, _SpeedgradeTimings
    from litedram.phy import model
    from litex.build.lattice import LatticePlatform
    from litex.build.sim import SimPlatform, verilator
    from litex.soc.integration.builder import Builder
    from migen import Cat, Display, If, Module, Signal

    from tern_fpga.hw.sdram.litedram_child import _litex_config, _reproducible

    _write_core(Path(sys.argv[1]), sys.argv[2])
