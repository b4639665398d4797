"""The committed bitstreams are what the sources build: the manifest's parameters, parameter
hash and build id match the current tree, the file is the one the manifest hashed, it met
timing, and a board would say the same build id when asked (IDENTIFY)."""

import hashlib

import pytest

from tern_fpga.contracts import paths
from tern_fpga.contracts.bitstreams import BITSTREAMS, manifest
from tern_fpga.contracts.boards import board
from tern_fpga.contracts.params import preset
from tern_fpga.hw.build import (
    default_seed,
    design_build_id,
    design_sources,
    nextpnr_options,
)

# The bitstreams that must be committed (board, preset).
COMMITTED = [("ulx3s-85f", "micro"), ("ulx3s-85f", "demo"), ("ulx3s-85f", "stdlib"),
             ("ulx3s-85f", "micro-dataflow")]


@pytest.mark.parametrize(("board_name", "preset_name"), COMMITTED)
def test_committed_bitstream_matches_the_sources(board_name, preset_name):
    name = f"{board_name}-{preset_name}"
    params = preset(preset_name)
    found = manifest(board_name, params, strict=True)   # other parameters: ManifestMismatch
    assert found is not None, f"{BITSTREAMS / name}.json is missing: run tern build --board " \
                              f"{board_name} --preset {preset_name} and commit it"
    target = board(board_name)
    bitstream = (BITSTREAMS / found["bitstream"]).read_bytes()
    assert found["bitstream"] == f"{name}{target.bitstream_suffix}"
    assert hashlib.sha256(bitstream).hexdigest() == found["bitstream_sha256"]
    assert found["params"] == params.to_dict()
    assert found["params_hash"] == f"0x{params.hash:016x}"
    stale = "the design changed since the bitstream was built: rebuild it with tern build " \
            f"--board {board_name} --preset {preset_name} and commit it"
    assert found["build_id"] == f"0x{design_build_id(params, board_name):08x}", stale
    seed = default_seed(board_name, preset_name)
    assert (found["nextpnr_seed"], found["nextpnr_options"]) == (seed, nextpnr_options(seed)), \
        f"{name} was placed with seed {found['nextpnr_seed']}, but a plain tern build uses " \
        f"{seed}: enter its seed in tern_fpga.hw.build.NEXTPNR_SEEDS so that the build is " \
        f"reproducible"
    fmax = found["fmax_mhz"]
    assert fmax and min(fmax.values()) >= found["clock_mhz"] == params.clock_hz / 1e6
    for cell, (used, available) in found["utilisation"].items():
        assert used <= available, f"{cell}: {used} of {available}"
    assert found["utilisation"]["DP16KD" if target.family == "ecp5" else
                                   "ICESTORM_RAM"][0] > 0


def test_the_build_id_names_the_parameters_and_the_board():
    """Only the parameters (not the other presets in tern_fpga/contracts/params.py) and the board
    enter it."""
    micro = preset("micro")
    build_id = design_build_id(micro, "ulx3s-85f")
    assert build_id == design_build_id(preset("micro"), "ulx3s-85f")
    assert build_id != design_build_id(micro.replace(clock_hz=25_000_000), "ulx3s-85f")
    assert build_id != design_build_id(micro, "icebreaker")


def test_the_design_sources_are_what_the_top_level_imports():
    """Benchmarks, commands, testbenches, the build script and modules the board's top level
    does not import are no part of the build id: changing them needs no new bitstream."""
    names = {file.relative_to(paths.SOURCE_ROOT).as_posix() for file in design_sources()}
    assert {"hw/board.py", "hw/core.py", "hw/scalar_engine.py", "hw/uart.py", "hw/pll.py",
            "tern_fpga/contracts/numerics.py", "tern_fpga/contracts/isa.py",
            "tern_fpga/contracts/protocol.py"} <= names
    assert not names & {"hw/build.py", "tern_fpga/commands/build.py",
                        "tern_fpga/explore/bench_core.py",
                        "sim/rtl/testbenches/ternary_matvec.py", "hw/base3_decoder.py",
                        "sim/golden/model.py", "tern_fpga/contracts/params.py"}
