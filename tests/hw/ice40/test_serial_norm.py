"""The iCE40 port's serial norm and quantiser unit (hw/ice40/serial_norm.py) in Amaranth's
simulator, on a real shared multiplier behind an arbiter whose other port a random client
hammers: the statistics that the engine is asked with (as NormStatistics gives them) and the
committed unit's cases (sim/rtl/testbenches/norm_quantizer_cases.py: every
distribution, both operations, lengths 1, 64 and up to a few hundred), results and scales bit
for bit as numerics gives them, every stream stalled at random; the other client's products its
own; the cycles an element of each pass; the constructor's checks; and Yosys's count."""

import random

import numpy as np
import pytest
from amaranth.hdl import Const
from amaranth.sim import Simulator

from tern_fpga.contracts import numerics
from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.ice40 import shared_multiplier
from tern_fpga.hw.ice40.serial_norm import SerialNormUnit
from tern_fpga.hw.norm_quantizer import (
    Operation,
    command_layout,
    operand_layout,
    result_layout,
)
from tern_fpga.hw.scale_layout import scale_layout
from tern_fpga.hw.synthesis import synthesize
from tern_fpga.sim.rtl.testbenches.norm_quantizer_cases import (
    DISTRIBUTIONS,
    Case,
    make_case,
    scale_from_payload,
    split_result,
)

from support.ice40_clients import TAG_BITS, UNIT_TAG, CompetingClient, UnitOnArbiter

pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")

PARAMS = PRESETS["micro"].replace(vector_lanes=1)
EDGES = (-2**31, -2**31 + 1, 2**31 - 1, 0, 1, -1, 1 << 16, -(1 << 16))
LIMIT = 400_000  # cycles: a lost beat leaves a loop waiting until then


def simulate(cases, *, probability: float, seed: int, other: bool, params=PARAMS,
             statistics_check: bool = True):
    """``cases`` through a new :class:`UnitOnArbiter`: operands and results valid or ready with
    ``probability`` a cycle, commands with 0.7, scales with 0.5; with ``other``, the other client
    asks a product in most cycles (edge operands in about a third) and takes its results with
    probability 0.6 (which stalls the multiplier for both clients). With ``statistics_check``,
    the engine's requests carry :func:`golden_statistics`. Returns the result lanes, the
    scales, the cycle of each result, and the other client (a :class:`CompetingClient`)."""
    dut = UnitOnArbiter(SerialNormUnit(params, tag_bits=TAG_BITS, tag=UNIT_TAG))
    unit = dut.unit
    rng = random.Random(seed)
    payloads, scales, cycles = [], [], []
    finished, done, statistics = [], [], []
    client = CompetingClient(dut, rng, EDGES, done, limit=LIMIT)

    def sender(port, items, chance):
        async def send(ctx):
            for payload in items:
                while rng.random() >= chance:
                    ctx.set(port.valid, 0)
                    await ctx.tick()
                ctx.set(port.payload.as_value(), payload)
                ctx.set(port.valid, 1)
                await ctx.tick().until(port.ready)
            ctx.set(port.valid, 0)
        return send

    def receiver(port, count, chance, into, times=None):
        async def receive(ctx):
            for _ in range(LIMIT):
                if len(into) == count:
                    break
                ready = rng.random() < chance
                ctx.set(port.ready, ready)
                _, _, valid, payload, cycle = await ctx.tick().sample(
                    port.valid, port.payload.as_value(), dut.cycle)
                if ready and valid:
                    into.append(payload)
                    if times is not None:
                        times.append(cycle)
            ctx.set(port.ready, 0)
            finished.append(port)
            if len(finished) == 2:
                # Both streams done: the unit goes idle (the last command taken).
                for _ in range(20):
                    if not ctx.get(unit.busy):
                        break
                    await ctx.tick()
                assert not ctx.get(unit.busy), "busy after the last result and scale"
                done.append(True)
        return receive

    async def monitor(ctx):
        # The statistics that the engine is asked with.
        request = unit.engine.request
        while not done:
            _, _, valid, ready, total, largest = await ctx.tick().sample(
                request.valid, request.ready, request.payload.sum_of_squares,
                request.payload.largest)
            if valid and ready:
                statistics.append((total, largest))

    simulator = Simulator(dut)
    simulator.add_clock(1e-6)
    if statistics_check:
        simulator.add_testbench(monitor)
    simulator.add_testbench(sender(unit.command, [c.command for c in cases], 0.7),
                            background=True)
    simulator.add_testbench(sender(unit.operands, [b for c in cases for b in c.beats * 2],
                                   probability), background=True)
    simulator.add_testbench(receiver(unit.scale, sum(c.scale is not None for c in cases), 0.5,
                                     scales))
    simulator.add_testbench(receiver(unit.result, sum(len(c.beats) for c in cases),
                                     probability, payloads, cycles))
    if other:
        simulator.add_testbench(client.requests)
        simulator.add_testbench(client.results)
    simulator.run()
    lanes = [lane for payload in payloads for lane in split_result(payload, params)]
    if statistics_check:
        assert statistics == [golden_statistics(case, params) for case in cases]
    return lanes, [scale_from_payload(s, params) for s in scales], cycles, client


def check(cases, lanes, scales, other=None):
    assert lanes == [lane for case in cases for lane in case.expected]
    assert scales == [case.scale for case in cases if case.scale is not None]
    if other is not None:
        other.check()
        assert len(other.received) > 200  # they did compete


def cases_for(lengths, seed, params=PARAMS):
    """Every distribution at every length, NORM and QUANT alternating (each distribution gets
    both operations over two lengths)."""
    rng = np.random.default_rng(seed)
    return [make_case(Operation((row + column) % 2), length, distribution, params, rng)
            for row, length in enumerate(lengths)
            for column, distribution in enumerate(DISTRIBUTIONS)]


def vectors(case, params=PARAMS):
    """``x`` and ``weight`` of ``case``, from its operand beats."""
    beats = [operand_layout(params).from_bits(beat) for beat in case.beats]
    return (np.array([beat.x[0] for beat in beats], np.int64),
            np.array([beat.weight[0] for beat in beats], np.int64))


def golden_statistics(case, params=PARAMS):
    """What NormStatistics gives for ``case``: ``numerics.sum_of_squares(x)`` and
    ``max |numerics.multiply(x, weight)|``."""
    x, weight = vectors(case, params)
    return (numerics.sum_of_squares(x, params),
            int(np.abs(numerics.multiply(x, weight, params)).max()))


def rounding_shift(case, params=PARAMS) -> int:
    """Pass 2's rounding shift ``s`` of ``case`` (QUANT: ``reciprocal_bits + e``; NORM: minus
    the norm scale's exponent), from its payloads and numerics."""
    command = command_layout(params).from_bits(case.command)
    x, weight = vectors(case, params)
    if case.operation == Operation.QUANT:
        largest = max(int(np.abs(numerics.multiply(x, weight, params)).max()), 1)
        return params.reciprocal_bits + largest.bit_length()
    constant = numerics.Scale(command.constant.mantissa, command.constant.exponent)
    return -numerics._norm_scale(x, command.epsilon_term, constant, params).exponent


def test_init():
    unit = SerialNormUnit(PARAMS, tag_bits=3, tag=5)
    assert unit.params is PARAMS and unit.tag == 5 and unit.engine.tag == 5
    assert unit.command.payload.shape() == command_layout(PARAMS)
    assert unit.operands.payload.shape() == operand_layout(PARAMS)
    assert unit.result.payload.shape() == result_layout(PARAMS)
    assert unit.scale.payload.shape() == scale_layout(PARAMS)
    assert unit.multiplier_request.payload.shape() == shared_multiplier.request_layout(3)
    assert unit.multiplier_result.payload.shape() == shared_multiplier.result_layout(3)
    assert unit.cycles_per_element(False) == 2
    assert [unit.cycles_per_element(True, s) for s in (-3, 0, 1, 8, 9, 17, 48, 60)] == [
        11, 11, 12, 12, 13, 14, 17, 18]


@pytest.mark.parametrize(("arguments", "error", "message"), [
    (("micro", {}), TypeError, "params must be an AcceleratorParameters, not 'micro'"),
    ((PRESETS["micro"], {}), ValueError,
     "the serial norm unit has one lane; vector_lanes=2 needs the dataflow core's NormUnit"),
    ((PARAMS.replace(vector_bits=24, frac_bits=12, embedding_bits=8), {}), ValueError,
     "the serial norm unit multiplies 32-bit operands; vector_bits=24 is not 32"),
    ((PARAMS, {"tag_bits": 2, "tag": 4}), ValueError,
     "tag must be an integer from 0 to 3, not 4"),
])
def test_init_wrong(arguments, error, message):
    params, keywords = arguments
    with pytest.raises(error) as raised:
        SerialNormUnit(params, **keywords)
    assert str(raised.value) == message


def test_committed_cases_under_stalls_beside_a_hammering_client():
    """Every distribution, both operations, lengths 1, 64 (micro's d), 2 and 9, every stream
    stalled at random, the other client hammering the multiplier."""
    cases = cases_for((1, 64, 2, 9), seed=1)
    lanes, scales, _, other = simulate(cases, probability=0.7, seed=2, other=True)
    check(cases, lanes, scales, other)


def test_long_vectors():
    """micro's largest length, 512, (QUANT, at the int limits: u = -2**31 among them) and 128
    (NORM), the streams stalled at random and the other client asking."""
    rng = np.random.default_rng(5)
    cases = [make_case(Operation.QUANT, 512, "limits", PARAMS, rng),
             make_case(Operation.NORM, 128, "normal", PARAMS, rng)]
    lanes, scales, _, other = simulate(cases, probability=0.9, seed=6, other=True,
                                       statistics_check=False)
    check(cases, lanes, scales, other)


def test_one_newton_step_and_fast_streams():
    """Another engine (one Newton step, a coarse seed table), the streams never stalled."""
    params = PARAMS.replace(max_features=40, rsqrt_newton_steps=1, rsqrt_table_bits=4)
    cases = cases_for((1, 17), seed=3, params=params)
    lanes, scales, _, other = simulate(cases, probability=1.0, seed=4, other=True,
                                       params=params)
    check(cases, lanes, scales, other)


def directed_case(operation, x, weight, epsilon, constant, params=PARAMS) -> Case:
    """A command of given ``x`` and ``weight``, its golden results from numerics."""
    x, weight = np.asarray(x, np.int64), np.asarray(weight, np.int64)
    beats = [Const.cast(operand_layout(params).const({"x": [a], "weight": [b]})).value
             for a, b in zip(x.tolist(), weight.tolist())]
    if operation == Operation.NORM:
        values, scale = numerics.rmsnorm(x, weight, epsilon, constant, params), None
    else:
        values, scale = numerics.quantize_activations(x, weight, epsilon, constant, params)
    command = Const.cast(command_layout(params).const({
        "operation": operation, "length": len(x), "epsilon_term": epsilon,
        "constant": {"mantissa": constant.mantissa, "exponent": constant.exponent}})).value
    return Case(operation=operation, length=len(x), command=command, beats=beats,
                expected=[int(v) for v in values], scale=scale)


def test_directed_edges():
    """``max |u|`` one above the next largest (QUANT's output scale holds it exactly), u at
    -2**31 and 2**31 - 1 (QUANT's ``|u| = 2**31``), squares that saturate, and NORM's left
    shifts around the saturating one (16), each element 0, +-1 or more."""
    one = PARAMS.one
    constant = numerics.Scale(1 << 15, -3)
    cases = [directed_case(Operation.QUANT, x, [one] * len(x), 1, constant) for x in (
        [999, 1000, -1001, 1000], [-1001, 1001, 1002], [5, -6, 7, 6, 1], [-2**31, 2**31 - 1, 3],
        [2**31 - 1, -2**31 + 1, -2**31], [0, 0], [1])]
    cases += [directed_case(Operation.NORM, x, [one] * len(x), 1, constant)
              for x in ([-2**31, -2**31, 2**31 - 1], [2**31 - 1, 12345])]
    # sum 0, epsilon 2**24 (1.0 in the sum's format): rsqrt 2**12; the constant 2**15 2**e gives
    # the norm scale 2**15 2**(e - 12): left shifts 10 to 19 (u = -2 at 15 gives -2**31).
    for exponent in range(22, 32):
        cases.append(directed_case(Operation.NORM, [0, 1, -1, 2, -2, 0], [1, one, one, one, one, 0],
                                   1 << 24, numerics.Scale(1 << 15, exponent)))
    lanes, scales, _, other = simulate(cases, probability=0.8, seed=9, other=True)
    check(cases, lanes, scales, other)


def test_cycles_per_element():
    """Without stalls and with the multiplier free, pass 1 takes a beat every 2 cycles and a
    pass-2 result follows the last one :meth:`~SerialNormUnit.cycles_per_element` cycles later
    (11 + c, c = ceil(s / 8) the byte shifts)."""
    rng = np.random.default_rng(7)
    cases = [make_case(operation, 12, distribution, PARAMS, rng)
             for operation in (Operation.NORM, Operation.QUANT)
             for distribution in ("normal", "huge", "tiny", "ragged_scale")]
    lanes, scales, cycles, _ = simulate(cases, probability=1.0, seed=0, other=False,
                                        statistics_check=False)
    check(cases, lanes, scales)
    for index, case in enumerate(cases):
        gaps = set(np.diff(cycles[12 * index:12 * (index + 1)]).tolist())
        assert gaps == {SerialNormUnit.cycles_per_element(True, rounding_shift(case))}, (
            index, gaps)


@pytest.mark.xdist_group("yosys")
def test_yosys_luts():
    """``synth_ice40`` (Yosys 0.70) of the unit with its engine (the multiplier outside),
    measured: 2,065 SB_LUT4 (the engine alone 1,130), 517 SB_CARRY, 683 flip-flops (the
    engine's 426), no SB_MAC16 and no block RAM."""
    mapped = synthesize(SerialNormUnit(PARAMS), "ice40").mapped
    assert mapped["SB_LUT4"] <= 2150, mapped
    flip_flops = sum(count for cell, count in mapped.items() if cell.startswith("SB_DFF"))
    assert flip_flops <= 700, mapped
    assert "SB_MAC16" not in mapped and "SB_RAM40_4K" not in mapped, mapped
