"""The design-space sweep: its cycle model against the core in Verilator, the fit check, the
Pareto front of the fitting points, and the figures it publishes."""

import sys
import types
from pathlib import Path

import pytest

from tern_fpga.contracts import paths
from tern_fpga.contracts.params import preset
from tern_fpga.explore import cycle_model, sweep, synthesis_cache
from tern_fpga.explore.report import LABELS, Figure
from tern_fpga.quant.checkpoint import load_pretrained
from tern_fpga.quant.compiler import compile_model

CHECKPOINTS = paths.CHECKPOINTS


@pytest.mark.skipif(not (CHECKPOINTS / "micro" / "config.json").exists(),
                    reason="the shipped micro checkpoint is missing")
def test_cycle_model_equals_the_core_in_verilator(tmp_path):
    params = preset("micro")
    model = load_pretrained(CHECKPOINTS / "micro")
    modelled = cycle_model.cycles_per_token(compile_model(model, params))
    assert cycle_model.simulate_cycles(model, params, tmp_path) == modelled


def test_point_params_size_the_weight_memory_to_the_model():
    assert sweep.point_params("demo", preset("demo").ternary_lanes) == preset("demo")
    params = sweep.point_params("demo", 512)
    assert params.ternary_lanes == 512 and params.name == "demo-p512"
    # d = 128 and I = 512 fit one word: a layer's rows are i, f, g, o (4 x d), gate and up
    # (2 x I) and down (d); four layers and the 256-row head.
    assert params.weight_memory_words == 4 * (4 * 128 + 2 * 512 + 128) + 256


def test_cache_keys_follow_the_sources_each_result_is_made_from():
    from tern_fpga.hw.build import design_sources

    def names(root):
        return {file.relative_to(paths.SOURCE_ROOT).as_posix() for file in design_sources(root)}

    whole = names("hw/board.py")
    for unit in ("matvec", "row", "norm"):
        module = synthesis_cache.unit_module(unit)
        own = names(module)
        assert module in own and own < whole and "hw/core.py" not in own, unit
    params = preset("micro")
    keys = {synthesis_cache.design_key(params, what) for what in
            ("unit-row-ice40", "unit-row-ecp5", "memories-ice40", "cycles")}
    assert len(keys) == 4 and all(f":micro:{params.hash:016x}:" in key for key in keys)


def test_fits_names_each_resource_over_the_board():
    available = sweep.BOARD_DEVICES["ulx3s-85f"].available
    usage = {"lut": 83_640, "ff": 100, "bram": 242, "dsp": 157}
    assert sweep.fits(usage, available) == ["bram 242/208", "dsp 157/156"]
    assert sweep.fits({**usage, "bram": 208, "dsp": 156}, available) == []
    assert sweep.fits({"lut": None, "bram": 1}, available) == []


def _point(name, lanes, board, tokens_per_s, tokens_per_joule, fitting):
    point = sweep.SweepPoint(name, lanes, board, preset(name))
    point.set("tokens_per_s", tokens_per_s, "projected", "")
    point.set("tokens_per_joule", tokens_per_joule, "projected", "")
    point.set("fits", "yes" if fitting else "no: bram 300/208", "projected", "")
    return point


def test_pareto_front_of_the_fitting_points(tmp_path):
    points = [
        _point("demo", 128, "ulx3s-85f", 100, 10, True),     # on the front
        _point("demo", 128, "ulx3s-85f", 50, 20, True),      # on the front
        _point("demo", 128, "ulx3s-85f", 40, 15, True),      # beaten by (50, 20)
        _point("demo", 128, "ulx3s-85f", 100, 5, True),      # beaten by (100, 10)
        _point("demo", 128, "ulx3s-85f", 500, 500, False),   # beats all, but does not fit
        _point("micro", 32, "icebreaker", 10, 30, True),     # on the front
    ]
    front = sweep.fitting_front(points)
    assert [(p.values["tokens_per_s"], p.values["tokens_per_joule"]) for p in front] == \
        [(10, 30), (50, 20), (100, 10)]
    assert sweep.plot(tmp_path / "sweep.png", points).stat().st_size > 1000
    assert sweep.plot(tmp_path / "none.png", []) is None


class _CannedCache:
    """Yosys results made up by key, so that no tool runs."""

    def get(self, key, compute=None):
        if key.startswith("memories-"):
            return {"bram": 100, "dsp": 50, "ff": 9_000, "cells": {}}
        assert key.startswith("unit-"), key
        return 1_000 + 10 * len(key)


@pytest.fixture
def power_model(monkeypatch):
    """tern_fpga.explore.power as its interface says, whether or not it exists yet."""
    module = types.ModuleType("tern_fpga.explore.power")
    calls = []

    def estimate(family, utilisation, clock_hz, activity, board=None):
        calls.append((family, utilisation, clock_hz, activity, board))
        return types.SimpleNamespace(total_w=0.5)

    module.estimate = estimate
    monkeypatch.setitem(sys.modules, "tern_fpga.explore.power", module)
    return calls


@pytest.mark.parametrize("board", ["ulx3s-85f", "icebreaker"])
def test_figures_are_named_and_labelled(board, power_model, monkeypatch):
    monkeypatch.setattr(sweep, "BITSTREAMS", Path("/nonexistent"))
    point = sweep.SweepPoint("demo", 64, board, sweep.point_params("demo", 64))
    sweep.evaluate(point, cache=_CannedCache(), simulated={("demo", 64): 20_000})
    figures = {figure.name: figure for figure in sweep.figures([point])}
    prefix = f"sweep.{board}.demo.p64"
    assert set(figures) == {f"{prefix}.{name}" for name in (
        "lut", "ff", "bram", "dsp", "fmax_mhz", "cycles_per_token", "tokens_per_s",
        "tokens_per_joule", "fits")}
    for figure in figures.values():
        assert isinstance(figure, Figure) and figure.label in LABELS and figure.notes
    assert figures[f"{prefix}.cycles_per_token"].label == "simulated"
    assert figures[f"{prefix}.bram"].label == "estimated"
    for name in ("lut", "fmax_mhz", "tokens_per_s", "tokens_per_joule", "fits"):
        assert figures[f"{prefix}.{name}"].label == "projected"
    clock = power_model[0][2]
    assert figures[f"{prefix}.tokens_per_s"].value == round(clock / 20_000, 1)
    assert figures[f"{prefix}.tokens_per_joule"].value == round(clock / 20_000 / 0.5, 2)
    assert power_model[0][3] == sweep.TOGGLE_RATE and power_model[0][4] == board
    fitting = figures[f"{prefix}.fits"].value
    assert fitting == "yes" if board == "ulx3s-85f" else fitting.startswith("no: lut ")
