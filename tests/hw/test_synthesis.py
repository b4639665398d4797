"""Yosys on the ternary matrix unit: no multipliers anywhere, before or after mapping."""

import pytest
from amaranth.hdl import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.synthesis import DSP_CELLS, FAMILIES, synthesize
from hw.ternary_matvec import TernaryMatVec
from tern.params import PRESETS

# One worker runs all Yosys tests: the first use of YoWASP compiles it (~50 s, once per cache).
pytestmark = pytest.mark.xdist_group("yosys")

PARAMS = PRESETS["micro"]  # P = 32


class Multiplier(wiring.Component):
    """A design that does multiply, to show that the checks below can fail."""

    a: In(signed(8))
    b: In(signed(8))
    product: Out(signed(16))

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.product.eq(self.a * self.b)
        return m


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_ternary_matvec_has_no_multiplier(family):
    result = synthesize(TernaryMatVec(PARAMS), family)
    assert "$mul" not in result.generic and "$macc" not in result.generic
    assert result.generic["$add"] > 0  # the adder tree is there
    assert not {cell: result.mapped[cell] for cell in DSP_CELLS[family] if cell in result.mapped}
    if family == "ecp5":
        # Logic per lane: a CCU2C carry cell holds two LUT4s.
        logic = result.mapped["LUT4"] + 2 * result.mapped["CCU2C"]
        assert logic / PARAMS.ternary_lanes <= 40


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_multiplier_is_detected(family):
    result = synthesize(Multiplier(), family)
    assert result.generic["$mul"] == 1
    assert any(cell in result.mapped for cell in DSP_CELLS[family])


def test_wrong_family():
    with pytest.raises(ValueError, match=r"^family must be one of \['ecp5', 'ice40'\], "
                                         r"not 'xilinx'$"):
        synthesize(None, "xilinx")  # checked before the design is looked at
