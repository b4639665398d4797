"""tern_fpga.contracts.bitstreams: the one reader of bitstreams/*.json refuses another design's
manifest."""

import json

import pytest

from tern_fpga.contracts.bitstreams import ManifestMismatch, all_manifests, manifest, manifest_for
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.params import preset


def _write(directory, name, params, **fields):
    data = {"board": name.split("-micro")[0], "params_hash": f"0x{params.hash:016x}",
            "fmax_mhz": {"clk": 33.0}, **fields}
    (directory / f"{name}.json").write_text(json.dumps(data))
    return data


def test_a_manifest_is_found_only_for_its_own_board(tmp_path):
    """An iCEBreaker build of the same parameters must not give the ULX3S its Fmax."""
    micro = preset("micro")
    icebreaker = _write(tmp_path, "icebreaker-micro", micro, fmax_mhz={"clk": 21.0})
    ulx3s = _write(tmp_path, "ulx3s-85f-micro", micro)
    assert manifest_for(micro, "ulx3s-85f", directory=tmp_path) == ulx3s
    assert manifest_for(micro, "icebreaker", directory=tmp_path) == icebreaker
    assert manifest_for(micro, "no-such-board", directory=tmp_path) is None


def test_a_manifest_is_found_only_for_its_own_parameters(tmp_path):
    micro = preset("micro")
    written = _write(tmp_path, "ulx3s-85f-micro", micro)
    assert manifest("ulx3s-85f", micro, tmp_path) == written
    assert manifest_for(micro, directory=tmp_path) == written
    assert manifest_for(micro, "ulx3s-85f", directory=tmp_path) == written
    assert manifest("icebreaker", micro, tmp_path) is None       # no such file

    changed = micro.replace(clock_hz=25_000_000)                   # same name, other design
    assert manifest("ulx3s-85f", changed, tmp_path) is None
    assert manifest_for(changed, directory=tmp_path) is None
    with pytest.raises(ManifestMismatch, match=r"built for other parameters.*tern build "
                                               r"--board ulx3s-85f --preset micro"):
        manifest("ulx3s-85f", changed, tmp_path, strict=True)


def test_a_corrupt_manifest_is_named(tmp_path):
    (tmp_path / "ulx3s-85f-micro.json").write_text("{not json")
    with pytest.raises(TernError, match=r"cannot read the bitstream manifest .*ulx3s-85f-micro"):
        all_manifests(tmp_path)
    with pytest.raises(TernError, match="cannot read"):
        manifest("ulx3s-85f", preset("micro"), tmp_path)


def test_the_committed_manifests_are_current():
    """Each committed manifest names the preset it was built from, with that preset's hash
    (tests/hw/test_bitstreams.py checks the bitstreams themselves)."""
    found = all_manifests()
    assert found, "no committed bitstream manifest"
    for path, data in found:
        assert manifest(data["board"], preset(data["preset"]), strict=True) == data, path


def test_fmax_comes_from_the_identified_boards_bitstream_only(monkeypatch, tmp_path):
    from tern_fpga.contracts import bitstreams
    from tern_fpga.contracts.boards import board
    from tern_fpga.host.session import bitstream_fmax_mhz

    micro = preset("micro")
    _write(tmp_path, "icebreaker-micro", micro, fmax_mhz={"clk": 21.0}, bitstream="i.bin")
    monkeypatch.setattr(bitstreams, "BITSTREAMS", tmp_path)
    fmax, note = bitstream_fmax_mhz(micro, board("icebreaker").board_id)
    assert (fmax, note) == (21.0, "Fmax of i.bin")
    for other in (board("ulx3s-85f").board_id, 0):      # no ULX3S bitstream; a virtual board
        fmax, note = bitstream_fmax_mhz(micro, other)
        assert fmax == micro.clock_hz / 1e6 and "target clock" in note and f"0x{other:04x}" in note
