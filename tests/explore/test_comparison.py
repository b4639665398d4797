"""The FPGA against the strongest baselines (tables and ratios), the published anchors, and the
report's preface."""

import json

import pytest

from tern_fpga.explore import anchors
from tern_fpga.explore.baselines_comparison import comparison, strongest
from tern_fpga.explore.report import Figure, write_report


def figure(name, value, label="measured", unit="", machine="somewhere"):
    return Figure(name, value, unit, label, "test", machine=machine)


FIGURES = [
    figure("power.ulx3s-85f.demo.tokens_per_s", 1000.0, "projected"),
    figure("power.ulx3s-85f.demo.tokens_per_joule", 5000.0, "projected"),
    figure("power.ulx3s-85f.demo.board_tokens_per_joule", 1000.0, "projected"),
    figure("gpu_baseline.demo.pytorch.tokens_per_s", 80.0),
    figure("gpu_baseline.demo.pytorch.tokens_per_joule", 0.5),
    figure("gpu_baseline.demo.lean_compiled_float32.tokens_per_s", 10000.0, machine="H200"),
    figure("gpu_baseline.demo.lean_compiled_float32.tokens_per_joule", 80.0),
    figure("gpu_baseline.demo.lean_compiled_float32_b512.tokens_per_s", 2e6),
    figure("cpu_baseline.demo.golden.tokens_per_s", 9e9),
    figure("cpu_baseline.demo.lean_1thread.tokens_per_s", 3000.0),
    figure("h200_host_cpu.demo.lean_16threads.tokens_per_s", 4000.0),
    figure("gpu_baseline.micro.lean_compiled_float32.tokens_per_s", 1.0),
]


def test_strongest_skips_batches_and_the_golden_model():
    assert strongest(FIGURES, ("gpu_baseline",), "demo")[0] == \
        "gpu_baseline.demo.lean_compiled_float32"
    assert strongest(FIGURES, ("cpu_baseline", "h200_host_cpu"), "demo", ("golden",))[0] == \
        "h200_host_cpu.demo.lean_16threads"
    assert strongest(FIGURES, ("gpu_baseline",), "tiny") is None


def test_comparison_ratios_and_tables():
    ratios, text = comparison(FIGURES)
    by_name = {figure.name: figure for figure in ratios}
    assert by_name["comparison.demo.fpga_over_gpu.tokens_per_s_ratio"].value == \
        pytest.approx(0.1)
    assert by_name["comparison.demo.fpga_over_gpu.tokens_per_joule_ratio"].value == \
        pytest.approx(62.5)
    assert by_name["comparison.demo.fpga_board_over_gpu.tokens_per_joule_ratio"].value == \
        pytest.approx(12.5)
    assert by_name["comparison.demo.fpga_over_cpu.tokens_per_s_ratio"].value == \
        pytest.approx(0.25)
    assert "comparison.demo.fpga_over_cpu.tokens_per_joule_ratio" not in by_name  # no meter
    assert all(figure.label == "projected" for figure in ratios)
    assert not any(name.startswith("comparison.micro") for name in by_name)  # no FPGA figure
    assert "## Comparison: the FPGA against the strongest baseline of each kind" in text
    assert "| strongest GPU | `gpu_baseline.demo.lean_compiled_float32` (measured, H200) | " \
           "10,000 | 80 | 0.1x | 62.5x | 12.5x |" in text
    assert "| strongest CPU | `h200_host_cpu.demo.lean_16threads`" in text
    assert "not measured" in text
    assert comparison(FIGURES[3:]) == ([], "")


def test_anchors_are_theirs_with_sources():
    figures = anchors.run(quick=True)
    names = [item.name for item in figures]
    assert len(names) == len(set(names)) and all(name.startswith("anchors.") for name in names)
    assert all(item.notes.startswith("theirs: ") for item in figures)
    values = {item.name: item.value for item in figures}
    assert values["anchors.paper_d5005.board_w"] == 13.67
    assert values["anchors.bitnet_kv260.tokens_per_s"] == 16.78
    assert values["anchors.tereffic.tokens_per_s"] == 16300
    assert values["anchors.zybogpt.tokens_per_s"] == 3072
    assert values["anchors.tellme_v2.tokens_per_s"] == 25
    assert {item.label for item in figures} <= {"measured", "estimated"}


def test_write_report_puts_the_preface_before_the_tables(tmp_path):
    json_path, markdown_path = write_report(FIGURES[:1], tmp_path, preface="## Preface\n\nhi")
    markdown = markdown_path.read_text()
    assert markdown.index("## Preface") < markdown.index("## power")
    assert json.loads(json_path.read_text())["preface"] == "## Preface\n\nhi"
    _, plain = write_report(FIGURES[:1], tmp_path / "plain")
    assert "preface" not in json.loads((tmp_path / "plain" / "report.json").read_text())
    assert "## Preface" not in plain.read_text()
