"""The iCE40 port's serial element-wise unit (hw/ice40/serial_elementwise.py) in Amaranth's
simulator, on a real shared multiplier behind an arbiter whose other port a random client
hammers: every operation against sim/golden/row_unit.row_operation on random operands
(the row unit's testbench's jobs), operands at the int limits, the sigmoid table's every segment
boundary, random stalls on every stream and on the other client's results; the other client's
products its own; the cycles per element of each operation; the constructor's checks; and
Yosys's count."""

import itertools
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from tern_fpga.contracts.isa import BINARY_OPERATIONS, RowOperation
from tern_fpga.contracts.numerics import Scale
from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.dataflow.elementwise import OPERATIONS, command_layout
from tern_fpga.hw.ice40 import shared_multiplier
from tern_fpga.hw.ice40.serial_elementwise import SerialElementwiseUnit
from tern_fpga.hw.row_unit import operand_layout, result_layout
from tern_fpga.hw.synthesis import synthesize
from tern_fpga.sim.golden.row_unit import row_operation
from tern_fpga.sim.rtl.testbenches.row_unit import (
    RowJob,
    _sigmoid_boundaries,
    check_results,
    make_jobs,
    result_beat_count,
    stream_payloads,
)

from support.ice40_clients import TAG_BITS, UNIT_TAG, CompetingClient, UnitOnArbiter

pytestmark = [pytest.mark.xdist_group("yosys"),
              pytest.mark.filterwarnings("ignore:.*created but never used")]

PARAMS = PRESETS["micro"].replace(vector_lanes=1)
LOW, HIGH = -2**31, 2**31 - 1
ONE = PARAMS.one
EDGES = (LOW, LOW + 1, HIGH, HIGH - 1, 0, 1, -1, ONE, -ONE, ONE - 1)
LIMIT = 200_000  # cycles: a lost beat leaves a loop waiting until then


def job(operation, a, b=None, shift=0) -> RowJob:
    a = np.asarray(a, np.int64)
    b = None if b is None else np.asarray(b, np.int64)
    expected = row_operation(operation, a, b, params=PARAMS, shift=shift)
    return RowJob(operation, a, b, Scale(0, 0), shift, expected)


def edge_jobs() -> list[RowJob]:
    """Every pair of :data:`EDGES` for MUL, ADD and SUB; each edge for the unary operations;
    EMBED's extreme embeddings at its extreme shifts."""
    pairs = np.array(list(itertools.product(EDGES, EDGES)), np.int64)
    jobs = [job(operation, pairs[:, 0], pairs[:, 1]) for operation in BINARY_OPERATIONS]
    jobs += [job(operation, EDGES) for operation in
             (RowOperation.SIGMOID, RowOperation.SILU, RowOperation.ONE_MINUS)]
    half, top = 1 << (PARAMS.embedding_bits - 1), PARAMS.vector_bits - PARAMS.embedding_bits
    jobs += [job(RowOperation.EMBED, [-half, half - 1, 0, 1, -1, 12345], shift=shift)
             for shift in (0, 1, top - 1, top)]
    return jobs


def simulate(jobs, *, probability: float, seed: int, other: bool, holds: float = 0.0):
    """Run ``jobs`` through a new :class:`UnitOnArbiter`, every stream of the unit valid or
    ready with ``probability`` a cycle; with ``other``, the other client asks a product in
    most cycles (random operands, edge ones in about a third) and takes its results with
    probability 0.6, holding them back for 5 to 15 cycles from a cycle with probability
    ``holds`` (which stalls the multiplier for both clients). Returns the unit's result
    payloads, the cycle of each, and the other client (a :class:`CompetingClient`)."""
    dut = UnitOnArbiter(SerialElementwiseUnit(PARAMS, tag_bits=TAG_BITS, tag=UNIT_TAG))
    unit = dut.unit
    commands, a_beats, b_beats = stream_payloads(PARAMS, jobs, padding_seed=seed,
                                                 layout=command_layout(PARAMS))
    count = result_beat_count(PARAMS, jobs)
    rng = random.Random(seed)
    results, cycles, done = [], [], []
    client = CompetingClient(dut, rng, EDGES, done, holds=holds, limit=LIMIT)

    def sender(port, payloads):
        async def send(ctx):
            for payload in payloads:
                while rng.random() >= probability:
                    ctx.set(port.valid, 0)
                    await ctx.tick()
                ctx.set(port.payload.as_value(), payload)
                ctx.set(port.valid, 1)
                await ctx.tick().until(port.ready)
            ctx.set(port.valid, 0)
        return send

    async def receive(ctx):
        for _ in range(LIMIT):
            ready = rng.random() < probability
            ctx.set(unit.result.ready, ready)
            _, _, valid, payload, cycle = await ctx.tick().sample(
                unit.result.valid, unit.result.payload.as_value(), dut.cycle)
            if ready and valid:
                results.append(payload)
                cycles.append(cycle)
                if len(results) == count:
                    break
        ctx.set(unit.result.ready, 0)
        await ctx.tick()
        assert not ctx.get(unit.busy), "busy after the last result"
        done.append(True)

    simulator = Simulator(dut)
    simulator.add_clock(1e-6)
    for port, payloads in ((unit.command, commands), (unit.a, a_beats), (unit.b, b_beats)):
        simulator.add_testbench(sender(port, payloads), background=True)
    simulator.add_testbench(receive)
    if other:
        simulator.add_testbench(client.requests)
        simulator.add_testbench(client.results)
    simulator.run()
    assert len(results) == count, f"{len(results)} of {count} results"
    return results, cycles, client


def test_init():
    unit = SerialElementwiseUnit(PARAMS, tag_bits=3, tag=5)
    assert unit.params is PARAMS and unit.tag == 5
    assert unit.command.payload.shape() == command_layout(PARAMS)
    assert unit.a.payload.shape() == unit.b.payload.shape() == operand_layout(PARAMS)
    assert unit.result.payload.shape() == result_layout(PARAMS)
    assert unit.multiplier_request.payload.shape() == shared_multiplier.request_layout(3)
    assert unit.multiplier_result.payload.shape() == shared_multiplier.result_layout(3)
    assert {operation: unit.cycles_per_element(operation) for operation in OPERATIONS} == {
        RowOperation.SIGMOID: 6, RowOperation.SILU: 11, RowOperation.MUL: 6,
        RowOperation.ADD: 1, RowOperation.SUB: 1, RowOperation.ONE_MINUS: 1,
        RowOperation.EMBED: 6}


@pytest.mark.parametrize(("arguments", "error", "message"), [
    (("micro", {}), TypeError, "params must be an AcceleratorParameters, not 'micro'"),
    ((PRESETS["micro"], {}), ValueError,
     ("the serial element-wise unit has one lane; vector_lanes=2 needs the dataflow core's "
      "ElementwiseUnit")),
    ((PARAMS.replace(vector_bits=24, frac_bits=12, embedding_bits=8), {}), ValueError,
     "the serial element-wise unit multiplies 32-bit operands; vector_bits=24 is not 32"),
    ((PARAMS.replace(embedding_bits=1), {}), ValueError,
     ("EMBED's largest shift with frac_bits=16 and embedding_bits=1 needs a power of two "
      "above 2**30")),
    ((PARAMS, {"tag_bits": 0}), ValueError, "tag_bits must be a positive integer, not 0"),
    ((PARAMS, {"tag_bits": 2, "tag": 4}), ValueError,
     "tag must be an integer from 0 to 3, not 4"),
])
def test_init_wrong(arguments, error, message):
    params, keywords = arguments
    with pytest.raises(error) as raised:
        SerialElementwiseUnit(params, **keywords)
    assert str(raised.value) == message


def test_random_and_edge_operands_under_stalls():
    """The row unit's random jobs (every operation, operands near zero, near the sigmoid's
    range ends, anywhere and at the int limits) and :func:`edge_jobs`, every stream stalled at
    random, the other client hammering the multiplier and holding its results back: every
    result is the golden one, and the other client's products its own."""
    rng = np.random.default_rng(18)
    jobs = make_jobs(PARAMS, rng, repeats=3, sweep=False, operations=OPERATIONS)
    jobs += edge_jobs()
    jobs = [jobs[index] for index in rng.permutation(len(jobs))]
    results, _, other = simulate(jobs, probability=0.6, seed=3, other=True, holds=0.03)
    check_results(PARAMS, jobs, results)
    other.check()
    assert len(other.asked) > 500  # they did compete


def test_sigmoid_segment_boundaries():
    """SIGMOID and SILU on each segment's first, second, middle and last input and both ends of
    the range, the streams never stalled, the other client asking in most cycles."""
    boundaries = _sigmoid_boundaries(PARAMS)
    jobs = [job(operation, boundaries) for operation in (RowOperation.SIGMOID, RowOperation.SILU)]
    results, _, other = simulate(jobs, probability=1.0, seed=5, other=True)
    check_results(PARAMS, jobs, results)
    other.check()


def test_cycles_per_element():
    """Without stalls and with the multiplier free, the results of a command follow each other
    :meth:`~SerialElementwiseUnit.cycles_per_element` cycles apart (1 for ADD, SUB and
    ONE_MINUS, 6 for MUL, EMBED and SIGMOID, 11 for SILU), across commands too."""
    rng = np.random.default_rng(1)
    operations = list(OPERATIONS) * 2
    jobs = []
    for operation in operations:
        a = rng.integers(-4 * ONE, 4 * ONE, 6)
        if operation == RowOperation.EMBED:
            a //= 1 << 8
        b = rng.integers(-4 * ONE, 4 * ONE, 6) if operation in BINARY_OPERATIONS else None
        jobs.append(job(operation, a, b, shift=3 if operation == RowOperation.EMBED else 0))
    results, cycles, _ = simulate(jobs, probability=1.0, seed=0, other=False)
    check_results(PARAMS, jobs, results)
    gaps = np.diff(cycles)
    wanted = [SerialElementwiseUnit.cycles_per_element(item.operation)
              for item in jobs for _ in item.a][1:]
    assert list(gaps) == wanted


def test_yosys_luts():
    """``synth_ice40`` (Yosys 0.70) of the unit alone (the multiplier outside), measured: 534
    SB_LUT4, 115 SB_CARRY, 95 flip-flops and the sigmoid table in 2 SB_RAM40_4K, no SB_MAC16
    (the committed ElementwiseUnit at V=1: 1,613 SB_LUT4, 1,902 flip-flops, 5 SB_MAC16)."""
    mapped = synthesize(SerialElementwiseUnit(PARAMS), "ice40").mapped
    assert mapped["SB_LUT4"] <= 560, mapped
    flip_flops = sum(count for cell, count in mapped.items() if cell.startswith("SB_DFF"))
    assert flip_flops <= 100, mapped
    assert mapped.get("SB_RAM40_4K") == 2 and "SB_MAC16" not in mapped, mapped
