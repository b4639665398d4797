"""The power model (tern_fpga/explore/power.py), its command (tern_fpga/commands/power.py) and the
switching activity
of a Verilator run of real generation (tern_fpga/explore/activity.py)."""

import argparse
import json

import pytest

from tern_fpga.commands import power as power_command
from tern_fpga.contracts import paths
from tern_fpga.contracts.boards import BOARDS
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.params import preset
from tern_fpga.explore import power_report
from tern_fpga.explore.power import (
    FAMILIES,
    PAPER_BOARD_W,
    RECORDED_UTILISATION,
    estimate,
    tokens_per_joule,
)

CHECKPOINTS = paths.CHECKPOINTS


def test_a_hand_computed_estimate():
    # iCE40 coefficients from the measured rows (docs/power.md), by hand:
    # logic cell 27.8 uA / 196 LCs / 12 MHz x 1.219 V / (2/28) = 0.201716 uW/MHz per LC,
    # clock (2184 - 388.4) uA / 42 MHz x 1.219 V = 52.1152 uW/MHz,
    # static 85.6 x 1.219 + 4.1 x 1.219 + (1.3 + 3.4 + 1.5) x 3.283 = 129.699 uW.
    power = estimate("ice40", {"ICESTORM_LC": 1000}, 10e6, 0.5)
    assert power.breakdown["ICESTORM_LC"] == pytest.approx(1000 * 0.201716 * 10 * 0.5e-6,
                                                           rel=1e-5)
    assert power.breakdown["clock_network"] == pytest.approx(521.152e-6, rel=1e-5)
    assert power.core_dynamic_w == pytest.approx(1008.58e-6 + 521.152e-6, rel=1e-5)
    assert power.device_static_w == pytest.approx(129.699e-6, rel=1e-5)
    assert power.board_w == 0
    assert power.total_w == pytest.approx(1659.43e-6, rel=1e-5)
    assert power.device == "iCE40UP5K" and "static" in power.covers


def test_every_coefficient_has_a_source_and_assumptions_say_so():
    for family in FAMILIES.values():
        for coefficient in (family.static_w, family.clock_uw_per_mhz, *family.cells.values()):
            assert coefficient.value > 0 and len(coefficient.source) > 40
    assert "ASSUMPTION" in FAMILIES["ecp5"].static_w.source
    assert "ASSUMPTION" in FAMILIES["ice40"].cells["ICESTORM_RAM"].source
    assert "ice40_power" in FAMILIES["ice40"].cells["ICESTORM_LC"].source


@pytest.mark.parametrize("family, cells", [
    ("ecp5", {"TRELLIS_COMB": 1000, "TRELLIS_FF": 800, "DP16KD": 10, "MULT18X18D": 4}),
    ("ice40", {"ICESTORM_LC": 1000, "ICESTORM_RAM": 10, "ICESTORM_DSP": 4}),
])
def test_power_grows_with_activity_clock_and_utilisation(family, cells):
    base = estimate(family, cells, 20e6, 0.1).total_w
    assert estimate(family, cells, 20e6, 0.2).total_w > base
    assert estimate(family, cells, 40e6, 0.1).total_w > base
    for cell in cells:
        assert estimate(family, {**cells, cell: cells[cell] * 2}, 20e6, 0.1).total_w > base
    idle = estimate(family, cells, 20e6, 0.0)
    assert idle.total_w < base and idle.total_w == pytest.approx(
        idle.device_static_w + idle.breakdown["clock_network"])


def test_activity_per_cell_type_with_a_default():
    cells = {"ICESTORM_LC": 100, "ICESTORM_DSP": 2}
    split = estimate("ice40", cells, 24e6, {"default": 0.1, "ICESTORM_DSP": 0.3})
    assert split.breakdown["ICESTORM_LC"] == estimate("ice40", cells, 24e6, 0.1).breakdown[
        "ICESTORM_LC"]
    assert split.breakdown["ICESTORM_DSP"] == pytest.approx(
        3 * estimate("ice40", cells, 24e6, 0.1).breakdown["ICESTORM_DSP"])
    with pytest.raises(TernError, match="no toggle rate for ICESTORM_LC"):
        estimate("ice40", cells, 24e6, {"ICESTORM_DSP": 0.3})


def test_bad_names_and_values_are_one_clear_error():
    with pytest.raises(TernError, match=r"unknown FPGA family 'xilinx'; choose one of ecp5, ice40"):
        estimate("xilinx", {}, 1e6, 0.1)
    with pytest.raises(TernError, match=r"unknown board 'arty'; supported: icebreaker, "
                                        r"ulx3s-85f"):
        estimate("ecp5", {}, 1e6, 0.1, board="arty")
    with pytest.raises(TernError, match="board 'icebreaker' carries an ice40 FPGA, not ecp5"):
        estimate("ecp5", {}, 1e6, 0.1, board="icebreaker")
    with pytest.raises(TernError, match="from 0 to 1, not 1.5"):
        estimate("ecp5", {"TRELLIS_FF": 1}, 1e6, 1.5)
    with pytest.raises(TernError, match="non-negative integer, not -3"):
        estimate("ecp5", {"TRELLIS_FF": -3}, 1e6, 0.1)


def test_board_power_and_tokens_per_joule():
    power = estimate("ecp5", {"TRELLIS_IO": 7}, 50e6, 0.1, board="ulx3s-85f")
    assert power.board_w == BOARDS["ulx3s-85f"].board_watts
    assert any("not estimated" in note for note in power.notes)
    assert any("TRELLIS_IO" in note for note in power.notes)
    assert tokens_per_joule(100.0, power) == pytest.approx(100.0 / power.total_w)


def _command(argv):
    parser = argparse.ArgumentParser(prog="tern")
    power_command.register(parser.add_subparsers())
    return parser.parse_args(argv)


def test_the_command_on_a_utilisation_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(power_report, "BITSTREAMS", tmp_path / "bitstreams")
    cells = tmp_path / "cells.json"
    cells.write_text(json.dumps({"utilisation": {"ICESTORM_LC": [2000, 5280],
                                                 "ICESTORM_RAM": [20, 30], "SB_IO": [4, 39]}}))
    out = tmp_path / "power.json"
    args = _command(["power", "--board", "icebreaker", "--preset", "micro", "--utilisation",
                     str(cells), "--toggle-rate", "0.1", "--json", str(out)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "ESTIMATED" in text and "13.67" in text and f"the file {cells}" in text
    assert "ICESTORM_LC" in text and "SB_IO" in text            # SB_IO: in the notes
    report = json.loads(out.read_text())
    assert report["label"] == "estimated" and report["utilisation"]["ICESTORM_LC"] == 2000
    expected = estimate("ice40", {"ICESTORM_LC": 2000, "ICESTORM_RAM": 20, "SB_IO": 4},
                        preset("micro").clock_hz, 0.1, board="icebreaker")
    assert report["estimate"]["total_w"] == pytest.approx(expected.total_w)
    assert report["paper"]["board_w"] == PAPER_BOARD_W

    # A manifest of the preset's own parameters wins; one built for other parameters is
    # refused (and the source says so); without either, the recorded counts are used.
    (tmp_path / "bitstreams").mkdir()
    manifest_path = tmp_path / "bitstreams" / "icebreaker-micro.json"
    manifest_path.write_text(json.dumps({"params_hash": "0x0123456789abcdef",
                                         "utilisation": {"ICESTORM_LC": [1000, 5280]}}))
    cells_used, source = power_report.load_utilisation("icebreaker", "micro", cells)
    assert cells_used["ICESTORM_LC"] == 2000 and "built for other parameters" in source
    manifest_path.write_text(json.dumps({"params_hash": f"0x{preset('micro').hash:016x}",
                                         "utilisation": {"ICESTORM_LC": [1000, 5280]}}))
    cells_used, source = power_report.load_utilisation("icebreaker", "micro", cells)
    assert cells_used == {"ICESTORM_LC": 1000} and "manifest" in source
    cells_used, source = power_report.load_utilisation("ulx3s-85f", "demo")
    assert cells_used == dict(RECORDED_UTILISATION["ulx3s-85f", "demo"][0])
    assert "recorded counts" in source and "routed ULX3S demo bitstream" in source
    with pytest.raises(TernError, match="no utilisation known for icebreaker with preset demo"):
        power_report.load_utilisation("icebreaker", "demo")


def test_the_command_explains_itself():
    parser = argparse.ArgumentParser(prog="tern")
    subparsers = parser.add_subparsers()
    power_command.register(subparsers)
    text = subparsers.choices["power"].format_help()
    for words in ("ESTIMATED", "13.67", "--activity-tokens", "--utilisation", "--json",
                  "toggle coverage", "place and route", "docs/power.md", "0 W"):
        assert words in " ".join(text.split()), words


@pytest.mark.xdist_group("verilator-core-toggle")
def test_activity_of_two_tokens_of_the_micro_model(tmp_path):
    """A real Verilator run: the shipped micro checkpoint, two greedy tokens, toggle coverage."""
    from tern_fpga.explore.activity import measure_activity

    if not (CHECKPOINTS / "micro" / "config.json").exists():
        pytest.skip("the micro checkpoint is not shipped in this tree")
    activity = measure_activity("micro", 2, work_dir=tmp_path)
    assert activity.tokens == 2 and len(activity.step_cycles) == 2
    assert activity.cycles >= sum(activity.step_cycles) > 0
    assert 0 < activity.toggle_rate < 1
    assert activity.units["matvec"].toggles > 0 and activity.units["matvec"].bits > 0
    assert sum(unit.bits for unit in activity.units.values()) == activity.total.bits
    rates = power_report.activity_by_cell(activity.to_dict())
    assert 0 < rates["ICESTORM_DSP"] < 1 and 0 < rates["DP16KD"] < 1


def test_bench_provider_figures(monkeypatch):
    fake_activity = {"toggle_rate": 0.1, "tokens": 2, "cycles": 100}
    monkeypatch.setattr(power_report, "power_report", lambda board, preset_name, tokens: {
        "estimate": estimate(BOARDS[board].family, {
            "ecp5": {"TRELLIS_COMB": 1000}, "ice40": {"ICESTORM_LC": 1000}}[
                BOARDS[board].family], 20e6, 0.1, board=board).to_dict(),
        "activity": fake_activity, "utilisation_source": "recorded"})
    figures = {figure.name: figure for figure in power_report.run(quick=True)}
    assert figures["power.paper.board_w"].value == 13.67
    assert figures["power.paper.board_w"].label == "measured"
    assert figures["power.paper.board_w"].machine == "Intel D5005 (Stratix 10)"
    for prefix in ("power.ulx3s-85f.micro", "power.ulx3s-85f.demo", "power.icebreaker.micro"):
        for key in ("total_w", "core_dynamic_w", "device_static_w", "board_w"):
            assert figures[f"{prefix}.{key}"].label == "estimated"
        assert figures[f"{prefix}.toggle_rate"].label == "simulated"
