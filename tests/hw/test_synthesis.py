"""Yosys on the ternary matrix unit: no multipliers anywhere, before or after mapping; and the
registered harness used for place and route."""

import random

import pytest
from amaranth.hdl import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.synthesis import DSP_CELLS, FAMILIES, RegisteredHarness, synthesize
from tern_fpga.hw.ternary_matvec import TernaryMatVec

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


@pytest.mark.parametrize("mapping", ["abc9_dff", "abc"])
def test_other_mappings_map_the_same_design_to_luts(mapping):
    """The ways around YoWASP 0.70's ABC9 exiting on some netlists: the same design before
    mapping, about as many LUT4s after, the multiplier still a DSP."""
    for design in (TernaryMatVec(PARAMS), Multiplier()):
        default = synthesize(design, "ecp5")
        other = synthesize(design, "ecp5", mapping=mapping)
        assert other.generic == default.generic
        luts = default.mapped.get("LUT4", 0)
        assert 0.7 * luts <= other.mapped.get("LUT4", 0) <= 1.3 * luts
        assert {cell for cell in other.mapped if cell in DSP_CELLS["ecp5"]} == \
            {cell for cell in default.mapped if cell in DSP_CELLS["ecp5"]}
    with pytest.raises(ValueError, match="mapping must be one of"):
        synthesize(None, "ecp5", mapping="vpr")


def test_wrong_family():
    with pytest.raises(ValueError, match=r"^family must be one of \['ecp5', 'ice40'\], "
                                         r"not 'xilinx'$"):
        synthesize(None, "xilinx")  # checked before the design is looked at


def test_registered_harness_feeds_inputs_and_observes_outputs():
    """Shift registers fill the component's inputs; the parity pin follows its outputs."""
    multiplier = Multiplier()
    harness = RegisteredHarness(multiplier, chain_length=8)
    assert len(harness.serial_in) == 2  # 16 input bits
    rng = random.Random(1)
    seen = []

    async def testbench(ctx):
        for _ in range(60):
            ctx.set(harness.serial_in, rng.getrandbits(2))
            await ctx.tick()
            seen.append((ctx.get(multiplier.a), ctx.get(multiplier.b), ctx.get(harness.parity)))

    simulator = Simulator(harness)
    simulator.add_clock(1e-8)
    simulator.add_testbench(testbench)
    simulator.run()
    assert len({(a, b) for a, b, _ in seen[8:]}) > 40  # the inputs really vary
    # The product is registered, captured, then reduced: three cycles from inputs to parity.
    for (a, b, _), (_, _, parity) in zip(seen[8:], seen[11:]):
        assert parity == ((a * b) & 0xFFFF).bit_count() % 2
