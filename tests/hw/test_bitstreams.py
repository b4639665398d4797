"""The committed bitstreams are what the sources build: the manifest's parameters, parameter
hash and build id match the current tree, the file is the one the manifest hashed, it met
timing, and a board would say the same build id when asked (IDENTIFY)."""

import hashlib
import json
from pathlib import Path

import pytest

from hw.board import board
from hw.build import design_build_id
from tern.params import preset

BITSTREAMS = Path(__file__).resolve().parent.parent.parent / "bitstreams"
# The bitstreams that must be committed (board, preset).
COMMITTED = [("ulx3s-85f", "micro"), ("ulx3s-85f", "demo")]


@pytest.mark.parametrize(("board_name", "preset_name"), COMMITTED)
def test_committed_bitstream_matches_the_sources(board_name, preset_name):
    name = f"{board_name}-{preset_name}"
    manifest_path = BITSTREAMS / f"{name}.json"
    assert manifest_path.exists(), f"{manifest_path} is missing: run tern build --board " \
                                   f"{board_name} --preset {preset_name} and commit it"
    manifest = json.loads(manifest_path.read_text())
    params = preset(preset_name)
    target = board(board_name)
    bitstream = (BITSTREAMS / manifest["bitstream"]).read_bytes()
    assert manifest["bitstream"] == f"{name}{target.bitstream_suffix}"
    assert hashlib.sha256(bitstream).hexdigest() == manifest["bitstream_sha256"]
    assert manifest["params"] == params.to_dict()
    assert manifest["params_hash"] == f"0x{params.hash:016x}"
    stale = "the design changed since the bitstream was built: rebuild it with tern build " \
            f"--board {board_name} --preset {preset_name} and commit it"
    assert manifest["build_id"] == f"0x{design_build_id(params, board_name):08x}", stale
    fmax = manifest["fmax_mhz"]
    assert fmax and min(fmax.values()) >= manifest["clock_mhz"] == params.clock_hz / 1e6
    for cell, (used, available) in manifest["utilisation"].items():
        assert used <= available, f"{cell}: {used} of {available}"
    assert manifest["utilisation"]["DP16KD" if target.family == "ecp5" else
                                   "ICESTORM_RAM"][0] > 0
