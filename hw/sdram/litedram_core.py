"""LiteDRAM's standalone core, generated at build time from the locked LiteDRAM and cached.

:func:`generate_core` runs LiteDRAM's own generator (``litedram.gen.LiteDRAMCore``, what the
``litedram_gen`` command builds from its YAML file) on a configuration (:mod:`.config`) in a
child Python process, so that Migen and LiteX never load into the caller, and writes the result
into ``build/sdram/litedram-<variant>-<key>/``; ``key`` hashes the configuration, the locked
versions of litedram, litex and migen, and this file and the child's (:mod:`.litedram_child`). A second call with the same key reuses the
folder. Two variants:

``"hw"``
    The core with LiteDRAM's ``GENSDRPHY`` on the SDRAM's pins (ECP5 I/O registers), for the
    board. Migen declares the data bus ``sdram_dq`` as an input although its ``TRELLIS_IO`` pads
    drive it; the port is rewritten to ``inout`` (the only edit made to the generated text).
``"sim"``
    ``litedram_gen --sim``: LiteDRAM's ``SDRAMPHYModel`` (the memory of every bank, at the read
    latency of the PHY that it models) in place of the PHY, with two additions for the tests:
    the model's ``DFITimingsChecker`` (LiteDRAM's, off in ``--sim``) prints every violation of
    tRP, tRCD, tRFC, tWR, tWTR, tCCD, tRC and the 64 ms refresh budget, and a command log
    prints every DFI command with its cycle (:data:`COMMAND_LOG_TAG`). ``--sim`` imports
    ``get_sdram_phy_settings`` through ``litex.tools.litex_sim``, which needs LiteEth; the child
    process gives it the same function from ``litedram.phy.model`` instead, and stops LiteX's
    simulator toolchain after it has written the Verilog (its C++ harness needs more packages).

The child runs in the output folder: LiteX collects its CPUs by importing module names that
resolve through the current folder, and a checkout's ``hw/`` there would shadow them.

Each folder holds ``litedram_core.v`` and ``core.json``: the control registers' byte addresses
on the ``wb_ctrl`` bus, the CAS latency, the module's timings in clock cycles and the native
port's widths (:class:`GeneratedCore`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from tern_fpga.contracts import paths
from tern_fpga.hw.sdram.config import ULX3S_SDRAM

__all__ = ["COMMAND_LOG_TAG", "VARIANTS", "GeneratedCore", "core_key", "generate_core"]

VARIANTS = ("hw", "sim")
TOPLEVEL = "litedram_core"
# Lines of the sim variant's command log: "<tag> <cycle> <command> <bank> <address> <cke>",
# <command> the DFI's {cs_n, ras_n, cas_n, we_n} as a number (docs/sdram.md).
COMMAND_LOG_TAG = "tern-dfi"
_LOCKED_PACKAGES = ("litedram", "litex", "migen")


@dataclasses.dataclass(frozen=True)
class GeneratedCore:
    """One generated core: its Verilog and what its ``core.json`` says.

    Members
    -------
    directory, verilog : pathlib.Path
        The build folder and ``litedram_core.v`` in it.
    variant : str
        ``"hw"`` or ``"sim"``.
    registers : dict of str to int
        Byte address on ``wb_ctrl`` of each control register (``sdram_dfii_control``, ...).
    cas_latency : int
        The PHY's CAS latency in clock cycles, which the mode register must be loaded with.
    timings : dict of str to int
        The module's tRP, tRCD, tWR, tWTR, tREFI, tRFC in clock cycles, as the controller uses
        them (LiteDRAM's ``timing_settings``).
    address_width, data_width : int
        The native user port's address (in words of ``data_width`` bits) and data widths.
    sys_clk_freq : float
        The clock the timings were computed for, in Hz.
    """

    directory: Path
    verilog: Path
    variant: str
    registers: dict
    cas_latency: int
    timings: dict
    address_width: int
    data_width: int
    sys_clk_freq: float

    @classmethod
    def load(cls, directory: Path, variant: str) -> GeneratedCore:
        info = json.loads((directory / "core.json").read_text())
        return cls(directory=directory, verilog=directory / f"{TOPLEVEL}.v", variant=variant,
                   **info)


def core_key(config: dict, variant: str) -> str:
    """The cache key of a core: configuration, variant, locked versions, this generator."""
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r} is not one of {VARIANTS}")
    digest = hashlib.sha256()
    digest.update(json.dumps([config, variant], sort_keys=True).encode())
    for package in _LOCKED_PACKAGES:
        digest.update(f"{package}=={version(package)}".encode())
    digest.update(Path(__file__).read_bytes())
    digest.update((Path(__file__).parent / "litedram_child.py").read_bytes())
    return digest.hexdigest()[:16]


def generate_core(config: dict | None = None, variant: str = "sim") -> GeneratedCore:
    """Generate (or reuse) the LiteDRAM core of ``config`` (default: the ULX3S's SDRAM).

    Raises
    ------
    ValueError
        If ``variant`` is not one of :data:`VARIANTS`.
    RuntimeError
        If LiteDRAM's generator fails; the message shows the end of its log.
    """
    config = ULX3S_SDRAM if config is None else config
    directory = paths.BUILD / "sdram" / f"litedram-{variant}-{core_key(config, variant)}"
    if (directory / "core.json").is_file():
        return GeneratedCore.load(directory, variant)
    partial = directory.with_name(f"{directory.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    (partial / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True))
    result = subprocess.run(
        [sys.executable, "-m", "tern_fpga.hw.sdram.litedram_child", str(partial), variant],
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
    return GeneratedCore.load(directory, variant)
