"""Figures, the report files, the plots (on made-up test data) and the bench runner."""

import json
import random
import struct
import sys
import types

import pytest

from tern_fpga import explore
from tern_fpga.commands.cli import main as tern_main
from tern_fpga.contracts.errors import TernError
from tern_fpga.explore.bench import (
    Skipped,
    figures_from_dict,
    load_figures,
    make_plots,
    row_unit,
    run_providers,
    ternary_unit,
)
from tern_fpga.explore.plots import SystemPoint, pareto, pareto_front, roofline
from tern_fpga.explore.report import (
    LABELS,
    Figure,
    Problem,
    figures_output,
    format_value,
    write_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def random_figures(seed: int, count: int = 12) -> list[Figure]:
    rng = random.Random(seed)
    sections = ["alpha", "beta", "gamma"]
    return [Figure(f"{rng.choice(sections)}.item{index}.value", rng.uniform(-1e6, 1e6), "W",
                   rng.choice(list(LABELS)), f"test_report.source{index}",
                   f"note {rng.random():.3f} | with a pipe", machine="test machine")
            for index in range(count)]


def test_figure_init():
    figure = Figure("ternary_unit.ecp5.p512.fmax_mhz", 81.5, "MHz", "estimated",
                    "tern_fpga.explore.bench_ternary_matvec.run")
    assert figure.section == "ternary_unit"
    assert figure.machine and figure.date[:2] == "20" and len(figure.date) == 10
    assert Figure.from_dict(figure.to_dict()) == figure


def test_figure_init_wrong_label():
    with pytest.raises(ValueError, match=r"^figure a\.b: label must be one of measured, "
                                         r"simulated, projected, estimated, not 'guessed'$"):
        Figure("a.b", 1, "", "guessed", "test")


@pytest.mark.parametrize("name", ["nodots", "a..b", "a.b c", "", ".a"])
def test_figure_init_wrong_name(name):
    with pytest.raises(ValueError, match=r"figure name must be dotted"):
        Figure(name, 1, "", "measured", "test")


def test_figure_init_wrong_value():
    with pytest.raises(ValueError, match=r"value must be finite, not nan"):
        Figure("a.b", float("nan"), "", "measured", "test")
    with pytest.raises(TypeError, match=r"value must be a number or a string, not True"):
        Figure("a.b", True, "", "measured", "test")
    with pytest.raises(TypeError, match=r"not \[1\]"):
        Figure("a.b", [1], "", "measured", "test")


def test_format_value():
    assert [format_value(value) for value in (1234567, 12.3456, 0.0001234, 2500.4, 0.0, "x")] == \
        ["1,234,567", "12.35", "0.0001234", "2,500", "0", "x"]


def test_write_report(tmp_path):
    figures = random_figures(0)
    (tmp_path / "roofline.png").write_bytes(PNG_SIGNATURE)
    problems = [Problem("tests.broken", "failed", "RuntimeError: boom"),
                Problem("tests.gpu", "skipped", "no GPU here")]
    json_path, markdown_path = write_report(figures, tmp_path / "out", problems)
    assert json_path.parent == tmp_path / "out"  # created
    data = json.loads(json_path.read_text())
    assert [Figure.from_dict(item) for item in data["figures"]] == figures
    assert set(data["metadata"]) >= {"date", "commit", "dirty", "machine"}
    assert len(data["metadata"]["commit"]) == 40  # the tests run inside the repository
    assert data["problems"] == [problem.to_dict() for problem in problems]
    markdown = markdown_path.read_text()
    for label, meaning in LABELS.items():
        assert f"- **{label}**: {meaning}." in markdown
    sections = [line for line in markdown.splitlines() if line.startswith("## ")]
    first_seen = list(dict.fromkeys(figure.section for figure in figures))
    assert sections == [f"## {section}" for section in first_seen] + \
        ["## Providers without figures"]
    for figure in figures:
        row = next(line for line in markdown.splitlines()
                   if line.startswith(f"| {figure.name.split('.', 1)[1]} |"))
        assert f"| {format_value(figure.value)} | W | {figure.label} | test machine |" in row
        assert "with a pipe" in row and "\\|" in row  # a pipe in a note stays in its cell
    assert "- **failed** `tests.broken`: RuntimeError: boom" in markdown
    assert "![roofline](roofline.png)" not in markdown  # the PNG is in another folder
    _, markdown_path = write_report(figures, tmp_path)
    assert "![roofline](roofline.png)" in markdown_path.read_text()


def test_write_report_refuses_other_objects(tmp_path):
    with pytest.raises(TypeError, match=r"write_report takes Figure objects, not \{'name'"):
        write_report([{"name": "a.b"}], tmp_path)


# Plots: made-up test data, not measurements --------------------------------------------------

def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    assert 5_000 < len(data) < 2_000_000
    return struct.unpack(">II", data[16:24])


def test_plots_of_made_up_data(tmp_path):
    rng = random.Random(7)
    models = {"test model A": 70_000.0, "test model B": 85e6}
    points = [SystemPoint(f"test system {index}", rng.choice(list(LABELS)),
                          rng.uniform(1, 1e4), rng.uniform(1e7, 1e11), rng.uniform(0.1, 1e3))
              for index in range(8)]
    assert png_size(roofline(tmp_path / "r.png", models, points)) == (840, 600)
    assert png_size(pareto(tmp_path / "sub" / "p.png", points)) == (840, 600)


def test_pareto_front():
    points = [SystemPoint("slow frugal", "measured", 1, tokens_per_joule=100),
              SystemPoint("fast hungry", "projected", 1000, tokens_per_joule=1),
              SystemPoint("dominated", "measured", 10, tokens_per_joule=5),
              SystemPoint("middle", "simulated", 50, tokens_per_joule=10),
              SystemPoint("unrated", "measured", 5000)]
    assert [point.name for point in pareto_front(points)] == \
        ["slow frugal", "middle", "fast hungry"]
    rng = random.Random(3)
    cloud = [SystemPoint(str(i), "measured", rng.uniform(1, 100),
                         tokens_per_joule=rng.uniform(1, 100))
             for i in range(40)]
    front = pareto_front(cloud)
    for point in cloud:  # every point is on the front or beaten on both axes by a front point
        assert point in front or any(f.tokens_per_s >= point.tokens_per_s and
                                     f.tokens_per_joule >= point.tokens_per_joule for f in front)


def test_plot_errors(tmp_path):
    with pytest.raises(ValueError, match=r"point x: tokens_per_s must be positive on a log axis"):
        SystemPoint("x", "measured", 0)
    with pytest.raises(ValueError, match=r"point x: label must be one of"):
        SystemPoint("x", "guessed", 1)
    with pytest.raises(ValueError, match=r"a Pareto chart needs at least one system"):
        pareto(tmp_path / "p.png", [SystemPoint("x", "measured", 1)])


# The bench runner ---------------------------------------------------------------------------

@pytest.fixture
def providers(monkeypatch):
    """A module ``bench_test_providers`` of test providers (made-up figures)."""
    module = types.ModuleType("bench_test_providers")

    def good(quick):
        return [Figure("testsys.tokens_per_s", 120.0 if quick else 100.0, "tokens/s", "measured",
                       "test"),
                Figure("testsys.weight_bandwidth", 5e8, "B/s", "projected", "test"),
                Figure("testsys.tokens_per_joule", 40.0, "tokens/J", "measured", "test")]

    def broken(quick):
        raise RuntimeError("the test provider broke")

    def skipping(quick):
        raise Skipped("no such device in tests")

    module.run = good
    module.broken, module.skipping = broken, skipping
    module.wrong = lambda quick: {"a": 1}
    monkeypatch.setitem(sys.modules, "bench_test_providers", module)
    return module


def test_run_providers_reports_failures_and_goes_on(providers):
    lines = []
    figures, problems = run_providers(
        ["bench_test_providers:broken", "bench_test_providers", "bench_test_providers:skipping",
         "bench_test_providers:wrong", "no_such_module_for_tests"], True, lines.append)
    assert [figure.value for figure in figures] == [120.0, 5e8, 40.0]
    assert [(problem.kind, problem.source) for problem in problems] == [
        ("failed", "bench_test_providers:broken"), ("skipped", "bench_test_providers:skipping"),
        ("failed", "bench_test_providers:wrong"), ("failed", "no_such_module_for_tests")]
    assert problems[0].message.startswith("RuntimeError: the test provider broke (at ")
    assert problems[2].message == ("TypeError: bench_test_providers:wrong returned dict, not a "
                                   "list of Figure (at bench.py:"
                                   f"{problems[2].message.rsplit(':', 1)[1]}")
    assert lines[:2] == ["[1/5] bench_test_providers:broken: running",
                         "[1/5] bench_test_providers:broken: FAILED: " + problems[0].message]
    assert lines[3].startswith("[2/5] bench_test_providers: 3 figures in ")


def test_a_provider_that_draws_gets_the_report_directory(providers, tmp_path):
    drawn = []

    def drawing(quick, output=None):
        drawn.append(output)
        return [Figure("testsys.plotted", 1, "", "projected", "test")]

    providers.drawing = drawing
    figures, problems = run_providers(["bench_test_providers:drawing", "bench_test_providers"],
                                      True, lambda line: None, output=tmp_path)
    assert drawn == [tmp_path] and not problems and len(figures) == 4


def test_tern_bench_writes_report_and_plots(providers, tmp_path, capsys):
    merged = tmp_path / "gpu.json"
    merged.write_text(json.dumps({"figures": [Figure(
        "gpu_baseline.demo.pytorch.tokens_per_s", 900.0, "tokens/s", "measured", "test",
        machine="test GPU").to_dict()]}))
    output = tmp_path / "bench"
    assert tern_main(["bench", "--quick", "-o", str(output), "--provider",
                      "bench_test_providers", "--merge", str(merged)]) == 0
    assert sorted(path.name for path in output.iterdir()) == \
        ["pareto.png", "report.json", "report.md", "roofline.png"]
    markdown = (output / "report.md").read_text()
    assert "![pareto](pareto.png)" in markdown and "## gpu_baseline" in markdown
    assert "| tokens_per_s | 120 | tokens/s | measured |" in markdown
    assert tern_main(["bench", "-o", str(output), "--provider", "bench_test_providers:broken"]) \
        == 1
    assert "1 failed (see the report): bench_test_providers:broken" in capsys.readouterr().err
    assert not (output / "pareto.png").exists()  # an earlier run's plot is not kept
    assert "- **failed** `bench_test_providers:broken`: RuntimeError" in \
        (output / "report.md").read_text()


def test_load_figures_errors(tmp_path):
    (tmp_path / "bad.json").write_text('{"rows": []}')
    with pytest.raises(TernError, match=r"bad.json is not a figures file"):
        load_figures(tmp_path / "bad.json")
    with pytest.raises(TernError, match=r"cannot read .*missing.json"):
        load_figures(tmp_path / "missing.json")


def test_make_plots_needs_points(tmp_path):
    assert make_plots([Figure("a.tokens_per_s", 3.0, "tokens/s", "measured", "t")],
                      tmp_path) == []


def fake_module(monkeypatch, name, run):
    """Install ``tern_fpga.explore.<name>`` with this ``run`` (test data in the shape the real one
    returns)."""
    module = types.ModuleType(f"tern_fpga.explore.{name}")
    module.run = run
    monkeypatch.setitem(sys.modules, f"tern_fpga.explore.{name}", module)
    monkeypatch.setattr(explore, name, module, raising=False)


def test_the_ternary_unit_adapter(monkeypatch):
    rng = random.Random(11)
    calls = []

    def run(*, lanes=(16, 64, 256, 1024)):
        calls.append(lanes)
        return {"throughput": {f"P{count}": {"words": 256, "total_cycles": rng.randrange(260, 300),
                                             "macs_per_cycle": rng.uniform(0.9, 1) * count}
                               for count in lanes},
                "ecp5": {"lanes": 512, "levels_per_stage": 1,
                         "cells": {"LUT4": rng.randrange(10**4, 10**5), "TRELLIS_FF": 900},
                         "logic_per_lane": rng.uniform(20, 40), "fmax_mhz": rng.uniform(50, 90),
                         "constraint_mhz": 100.0, "report": "/tmp/nextpnr-report.json",
                         "utilisation": {"TRELLIS_SLICE": {"used": 5000, "available": 41820},
                                         "DCUA": {"used": 0, "available": 2}}}}

    fake_module(monkeypatch, "bench_ternary_matvec", run)
    figures = {figure.name.removeprefix("ternary_unit."): figure for figure in ternary_unit(True)}
    assert calls == [(16, 64)]
    assert list(figures) == [
        "throughput.P16.words", "throughput.P16.total_cycles", "throughput.P16.macs_per_cycle",
        "throughput.P64.words", "throughput.P64.total_cycles", "throughput.P64.macs_per_cycle",
        "ecp5.cells.LUT4", "ecp5.cells.TRELLIS_FF", "ecp5.logic_per_lane", "ecp5.fmax_mhz",
        "ecp5.utilisation.TRELLIS_SLICE.used", "ecp5.utilisation.TRELLIS_SLICE.available"]
    assert [(figure.unit, figure.label) for figure in figures.values()][1:3] == [
        ("cycles", "simulated"), ("MAC/cycle", "simulated")]
    fmax = figures["ecp5.fmax_mhz"]
    assert (fmax.unit, fmax.label, fmax.machine) == ("MHz", "estimated",
                                                      "ECP5-85F CABGA381 (Yosys + nextpnr)")
    assert fmax.notes == ("lanes=512, levels_per_stage=1, constraint_mhz=100.0, "
                          "report=/tmp/nextpnr-report.json")
    assert figures["ecp5.cells.LUT4"].unit == "cells"
    assert figures["ecp5.logic_per_lane"].unit == "cells/lane"


def test_the_row_unit_adapter(monkeypatch):
    rng = random.Random(12)
    calls = []

    def run(*, fmax=True):
        calls.append(fmax)
        size = {"logic": rng.randrange(100, 999), "dsp": 2}
        return {"latency": 4, "throughput": {"demo": {"elements_per_cycle": 7.5}},
                "ecp5": {**size, "fmax_mhz": 61.0} if fmax else size, "ice40": dict(size)}

    fake_module(monkeypatch, "bench_row_unit", run)
    figures = {figure.name: figure for figure in row_unit(True)}
    assert calls == [False]
    assert list(figures) == [
        "row_unit.latency", "row_unit.throughput.demo.elements_per_cycle", "row_unit.ecp5.logic",
        "row_unit.ecp5.dsp", "row_unit.ice40.logic", "row_unit.ice40.dsp"]
    assert figures["row_unit.latency"].unit == "cycles"
    assert figures["row_unit.ecp5.dsp"].unit == "cells"
    assert figures["row_unit.ice40.dsp"].machine == "iCE40UP5K (Yosys)"
    assert [figure.label for figure in figures.values()] == ["simulated"] * 2 + ["estimated"] * 4


def test_figures_from_dict():
    figures = figures_from_dict("x.y", {"P=16 x 2": [0.5, True], "skip": None}, "src",
                                "projected", "a note", machine="ULX3S")
    assert [(f.name, f.value, f.notes, f.machine) for f in figures] == [
        ("x.y.P_16_x_2.0", 0.5, "a note", "ULX3S"), ("x.y.P_16_x_2.1", "True", "a note", "ULX3S")]


@pytest.mark.parametrize("shape", [(32, 2, 64), (64, 3, None), (48, 1, 96)])
def test_ternary_weight_count_matches_the_model(shape):
    from tern_fpga.explore.bench import _models_bytes_per_token, ternary_weight_count
    from tern_fpga.quant.bitlinear import BitLinear
    from tern_fpga.quant.config import HGRNBitConfig
    from tern_fpga.quant.model import HGRNBitForCausalLM

    d, layers, intermediate = shape
    config = HGRNBitConfig(vocab_size=256, hidden_size=d, num_hidden_layers=layers,
                           intermediate_size=intermediate)
    model = HGRNBitForCausalLM(config)
    assert ternary_weight_count(config) == sum(
        module.weight.numel() for module in model.modules() if isinstance(module, BitLinear))
    # The released 370M model: 341,049,344 ternary weights at 2 bits each.
    assert _models_bytes_per_token()["MMfreeLM-370M"] == 341_049_344 / 4


def test_figures_output_is_checked_before_a_script_measures(tmp_path):
    fresh = figures_output(tmp_path / "new" / "gpu.json")
    assert fresh == tmp_path / "new" / "gpu.json" and fresh.parent.is_dir()
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"figures": []}))
    assert figures_output(earlier) == earlier          # a figures file: replaced
    other = tmp_path / "notes.json"
    other.write_text('{"mine": 1}')
    with pytest.raises(TernError, match=f"-o {other}.* --force"):
        figures_output(other)
    assert figures_output(other, force=True) == other
    with pytest.raises(TernError, match=f"-o {tmp_path}"):
        figures_output(tmp_path)                       # a folder, never
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TernError, match=f"-o {blocker}/sub/gpu.json: cannot create the folder"):
        figures_output(blocker / "sub" / "gpu.json")
