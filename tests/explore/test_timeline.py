"""The timeline plot: one row per unit, each unit's busy share, a PNG (``tern sim core
--timeline`` and the bench provider draw it from a real run: tests/commands/test_sim.py)."""

import pytest

from tern_fpga.explore.timeline import busy_fractions, plot_timeline
from tern_fpga.sim.rtl.core_case import Segment

ROWS = {"sequencer": [Segment(0, 10, "fetch/decode"), Segment(10, 60, "runs an instruction"),
                      Segment(60, 100, "waits for the matrix unit")],
        "matrix unit": [Segment(10, 90, "TMV")],
        "row unit": [Segment(10, 90, "TMV scale"), Segment(90, 100, "SILU")],
        "norm/quantiser": [Segment(0, 25, "QUANT")]}


def test_busy_fractions():
    assert busy_fractions(ROWS, 100) == pytest.approx(
        {"sequencer": 0.5, "matrix unit": 0.8, "row unit": 0.9, "norm/quantiser": 0.25})


def test_plot_timeline_writes_a_png(tmp_path):
    path = plot_timeline(tmp_path / "sub" / "t.png", ROWS,
                         {"preset": "micro", "cycles": 100, "token": 84})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
