"""The power model (tern_fpga/explore/power.py), its command (tern_fpga/commands/power.py) and the
switching activity
of a Verilator run of real generation (tern_fpga/explore/activity.py)."""

import argparse
import json

import pytest

from tern_fpga.commands import power as power_command
from tern_fpga.contracts import paths
from tern_fpga.contracts.boards import BOARDS, BoardPower, PowerDraw
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.params import preset
from tern_fpga.explore import power_report
from tern_fpga.explore.power import (
    FAMILIES,
    PAPER_BOARD_W,
    RECORDED_UTILISATION,
    Coefficient,
    estimate,
    tokens_per_joule,
    tokens_per_joule_range,
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
    assert "Table 3.8" in FAMILIES["ecp5"].static_w.source
    assert FAMILIES["ecp5"].static_w.value == pytest.approx(0.212 * 1.1 + 0.026 * 2.5 +
                                                             7 * 0.0005 * 3.3)
    assert "ASSUMPTION" in FAMILIES["ecp5"].cells["TRELLIS_COMB"].source
    assert "ASSUMPTION" in FAMILIES["ice40"].cells["ICESTORM_RAM"].source
    assert "ice40_power" in FAMILIES["ice40"].cells["ICESTORM_LC"].source


def test_every_assumption_has_a_range_and_measured_figures_none():
    for family in FAMILIES.values():
        for coefficient in (family.static_w, family.clock_uw_per_mhz, *family.cells.values()):
            low, high = coefficient.bounds
            if "ASSUMPTION" in coefficient.source:
                assert low < coefficient.value < high, coefficient.source
            assert low <= coefficient.value <= high
    ice40 = FAMILIES["ice40"]
    assert ice40.static_w.bounds == (ice40.static_w.value,) * 2          # measured
    assert ice40.cells["ICESTORM_LC"].bounds == (ice40.cells["ICESTORM_LC"].value,) * 2
    assert FAMILIES["ecp5"].static_w.bounds == (0.15, 0.40)
    with pytest.raises(ValueError, match="low <= value <= high"):
        Coefficient(1.0, "W", "a source", low=2.0)


def test_the_range_puts_every_coefficient_at_its_ends():
    # ECP5 by hand, at the low and the high end of each range (docs/power.md):
    # logic x0.5..x3, block RAM x0.5..x4, multiplier x0.5..x2, clock x0.5..x2, static 0.15..0.40 W.
    ecp5 = FAMILIES["ecp5"]
    cells = {"TRELLIS_COMB": 1000, "DP16KD": 10, "MULT18X18D": 4}
    power = estimate("ecp5", cells, 10e6, 0.5)
    per_mhz = {name: cells[name] * ecp5.cells[name].value * 0.5 for name in cells}
    low_dynamic = 0.5 * (sum(per_mhz.values()) + ecp5.clock_uw_per_mhz.value) * 10e-6
    high_dynamic = (3 * per_mhz["TRELLIS_COMB"] + 4 * per_mhz["DP16KD"]
                    + 2 * per_mhz["MULT18X18D"] + 2 * ecp5.clock_uw_per_mhz.value) * 10e-6
    assert power.range_of("core_dynamic_w") == pytest.approx((low_dynamic, high_dynamic))
    assert power.range_of("fpga_w") == pytest.approx((low_dynamic + 0.15, high_dynamic + 0.40))
    for key in ("core_dynamic_w", "device_static_w", "fpga_w", "board_w", "total_w"):
        low, high = power.range_of(key)
        assert low <= getattr(power, key) <= high
    assert power.board_w == 0 and power.total_w == power.fpga_w     # no board given
    assert power.to_dict()["ranges"]["total_w"] == list(power.range_of("total_w"))
    assert power.to_dict()["fpga_w"] == power.fpga_w


def test_the_ulx3s_board_adds_its_regulators_and_idle_draw():
    supply = BOARDS["ulx3s-85f"].power
    cells = {"TRELLIS_COMB": 20_000, "TRELLIS_FF": 10_000, "DP16KD": 100}
    alone = estimate("ecp5", cells, 25e6, 0.15)
    on_board = estimate("ecp5", cells, 25e6, 0.15, board="ulx3s-85f")
    assert on_board.fpga_w == alone.fpga_w
    assert on_board.total_w == pytest.approx(alone.fpga_w / 0.80 + supply.idle_w)
    assert on_board.board_w == pytest.approx(on_board.total_w - on_board.fpga_w)
    idle_low, idle_high = supply.idle_range
    fpga_low, fpga_high = alone.range_of("fpga_w")
    assert on_board.range_of("total_w") == pytest.approx(
        (fpga_low / 0.90 + idle_low, fpga_high / 0.70 + idle_high))
    # The parts sum to the board's idle watts, within the manual's 5 V / 0.5 A for a fully
    # loaded board.
    assert BOARDS["ulx3s-85f"].board_watts == pytest.approx(
        sum(part.watts for part in supply.parts))
    assert 0 < idle_low < supply.idle_w < idle_high < 2.5
    assert "TLV62569" in supply.efficiency_source
    assert BOARDS["icebreaker"].power is None


def test_board_power_refuses_inconsistent_ranges():
    with pytest.raises(ValueError, match="regulator efficiencies"):
        BoardPower(0.8, 0.9, 0.95, "source", ())
    with pytest.raises(ValueError, match="oscillator: need 0 <= low <= watts <= high"):
        BoardPower(0.8, 0.7, 0.9, "source", (PowerDraw("oscillator", 0.1, 0.2, 0.3, "s"),))


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
    assert power.board_w > BOARDS["ulx3s-85f"].board_watts > 0     # idle + regulator losses
    assert any("ESTIMATED at its USB 5 V input" in note for note in power.notes)
    assert any("TRELLIS_IO" in note for note in power.notes)
    assert tokens_per_joule(100.0, power) == pytest.approx(100.0 / power.total_w)
    assert tokens_per_joule(100.0, power, "fpga") == pytest.approx(100.0 / power.fpga_w)
    low_w, high_w = power.range_of("total_w")
    assert tokens_per_joule_range(100.0, power) == pytest.approx((100 / high_w, 100 / low_w))
    with pytest.raises(TernError, match="unknown scope 'chip'; choose one of total, fpga"):
        tokens_per_joule(100.0, power, "chip")
    iceboard = estimate("ice40", {}, 12e6, 0.1, board="icebreaker")
    assert iceboard.board_w == 0 and iceboard.total_w == iceboard.fpga_w
    assert any("not estimated" in note for note in iceboard.notes)


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
        for key in ("total_w", "fpga_w", "core_dynamic_w", "device_static_w", "board_w"):
            assert figures[f"{prefix}.{key}"].label == "estimated"
        assert figures[f"{prefix}.toggle_rate"].label == "simulated"
    assert "with every assumption at the low and at the high end" in \
        figures["power.ulx3s-85f.demo.total_w"].notes


def test_bench_provider_gives_tokens_per_joule_for_the_fpga_and_the_board(monkeypatch):
    cells = {"ecp5": {"TRELLIS_COMB": 30_000, "DP16KD": 100}, "ice40": {"ICESTORM_LC": 1000}}
    powers = {board: estimate(BOARDS[board].family, cells[BOARDS[board].family], 25e6, 0.15,
                              board=board) for board in BOARDS}

    def fake_report(board, preset_name, tokens):
        return {"estimate": powers[board].to_dict(), "utilisation_source": "recorded",
                "activity": {"toggle_rate": 0.15, "tokens": 2, "cycles": 100},
                "projected": power_report.projected(1000.0, powers[board])}

    monkeypatch.setattr(power_report, "power_report", fake_report)
    figures = {figure.name: figure for figure in power_report.run(quick=True)}
    demo, ulx3s = "power.ulx3s-85f.demo", powers["ulx3s-85f"]
    assert figures[f"{demo}.tokens_per_joule"].value == round(1000 / ulx3s.fpga_w, 1)
    assert figures[f"{demo}.board_tokens_per_joule"].value == round(1000 / ulx3s.total_w, 1)
    assert figures[f"{demo}.board_tokens_per_joule"].value < \
        figures[f"{demo}.tokens_per_joule"].value
    for name in (f"{demo}.tokens_per_joule", f"{demo}.board_tokens_per_joule"):
        assert figures[name].label == "projected" and "assumptions' ranges" in figures[name].notes
    low, high = tokens_per_joule_range(1000.0, ulx3s, "fpga")
    assert f"{low:,.0f}-{high:,.0f} tokens/J" in figures[f"{demo}.tokens_per_joule"].notes
    assert "power.icebreaker.micro.board_tokens_per_joule" not in figures   # board not modelled
    assert "power.icebreaker.micro.tokens_per_joule" in figures


def test_the_readable_report_shows_ranges_and_the_board():
    power = estimate("ecp5", {"TRELLIS_COMB": 30_000}, 25e6, 0.15, board="ulx3s-85f")
    report = {"board": "ulx3s-85f", "preset": "demo", "utilisation": {"TRELLIS_COMB": 30_000},
              "utilisation_source": "a test", "activity": {"toggle_rate": 0.15, "given": True},
              "toggle_rates": {"default": 0.15}, "estimate": power.to_dict(),
              "paper": {"board_w": PAPER_BOARD_W, "machine": "Intel D5005 (Stratix 10)"},
              "projected": power_report.projected(1000.0, power)}
    text = power_report.format_report(report)
    low, high = power.range_of("total_w")
    assert f"{power.total_w:.4f}" in text and f"{low:.4f}-{high:.4f}" in text
    assert "FPGA alone" in text and "over the board at its supply input" in text
