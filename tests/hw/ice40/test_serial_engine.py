"""The iCE40 port's serial scalar engine on a real shared multiplier, in Amaranth's simulator:
every result field against the numerics (edge values and random ones), the exact latency of each
request from the serial normaliser's, the documented bound, random gaps, back-pressure and a
busy multiplier, bit for bit with the committed engine (a zero value too), and its constructor
checks."""

import random

import pytest
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import wiring
from amaranth.sim import Simulator

from tern_fpga.contracts import numerics
from tern_fpga.contracts.numerics import Scale
from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw import scalar_engine
from tern_fpga.hw.ice40 import shared_multiplier
from tern_fpga.hw.ice40.serial_engine import SerialScalarEngine
from tern_fpga.hw.scalar_engine import ScalarEngine
from tern_fpga.hw.scale_layout import SCALE_EXPONENT_BITS, sum_of_squares_bits
from tern_fpga.hw.synthesis import synthesize

pytestmark = [pytest.mark.xdist_group("yosys"),
              pytest.mark.filterwarnings("ignore:.*created but never used")]

PARAMS = PRESETS["micro"]
SUM_BITS = sum_of_squares_bits(PARAMS)
TOP = 1 << (PARAMS.vector_bits - 1)  # the largest max|u|
EXPONENTS = range(-(1 << (SCALE_EXPONENT_BITS - 1)), 1 << (SCALE_EXPONENT_BITS - 1))


class EngineOnMultiplier(Elaboratable):
    """The engine and a :class:`SharedMultiplier` of ``tag_bits``; the multiplier takes the
    engine's requests only while ``free`` is high (other clients' turns otherwise)."""

    def __init__(self, params, *, tag_bits=1, tag=0, **keywords):
        self.engine = SerialScalarEngine(params, tag_bits=tag_bits, tag=tag, **keywords)
        self.multiplier = shared_multiplier.SharedMultiplier(tag_bits)
        self.request, self.result = self.engine.request, self.engine.result
        self.free = Signal(init=1)

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine, m.submodules.multiplier = engine, multiplier = (
            self.engine, self.multiplier)
        asking, taking = engine.multiplier_request, multiplier.requests
        m.d.comb += [taking.payload.eq(asking.payload), taking.valid.eq(asking.valid & self.free),
                     asking.ready.eq(taking.ready & self.free)]
        wiring.connect(m, multiplier.results, engine.multiplier_result)
        return m


def edge_requests():
    """``(quantize, sum_of_squares, epsilon_term, constant, largest)``, both operations: sums
    0, 1, powers of two and neighbours, the widest; largest 0, 1, 2, the top and powers of two;
    zero, smallest and largest constants."""
    sums = sorted({0, 1, 2, 3, (1 << SUM_BITS) - 1}
                  | {(1 << j) + d for j in range(2, SUM_BITS, 5) for d in (-1, 0, 1)})
    largests = [0, 1, 2, 3, TOP - 1, TOP, 1 << 15, (1 << 16) - 1, 1 << 30]
    constants = [Scale(0, 0), Scale(1, -128), Scale(1 << 15, -3), Scale((1 << 16) - 1, 127),
                 Scale(40000, -40)]
    requests = []
    for index, total in enumerate(sums):
        for quantize in (False, True):
            epsilon = (0, 1, (1 << SUM_BITS) - 1)[index % 3] if total else 1 + index % 2
            requests.append((quantize, total, epsilon, constants[index % len(constants)],
                             largests[(index + quantize) % len(largests)]))
    return requests


def random_requests(rng, count):
    requests = []
    for _ in range(count):
        total = rng.getrandbits(rng.randrange(1, SUM_BITS + 1))
        epsilon = rng.getrandbits(rng.randrange(0, 40)) | (total == 0)
        constant = Scale(rng.getrandbits(16), rng.randrange(-40, 20))
        largest = rng.getrandbits(rng.randrange(1, PARAMS.vector_bits))
        requests.append((rng.random() < 0.5, total, epsilon, constant, largest))
    return requests


def payload(request):
    quantize, total, epsilon, constant, largest = request
    return {"quantize": quantize, "sum_of_squares": total, "epsilon_term": epsilon,
            "constant": constant._asdict(), "largest": largest}


def golden(request, params=PARAMS):
    """The result's defined fields by the numerics, as tests/hw/test_norm_quantizer.py
    computes them (``output_scale`` only where its exponent fits the port)."""
    quantize, total, epsilon, constant, largest = request
    norm = numerics.scale_multiply(numerics.rsqrt_scale(total + epsilon, params), constant,
                                   params)
    if not quantize:
        return {"norm_scale": tuple(norm)}
    largest = max(largest, 1)
    output = numerics.scale_multiply(norm, numerics.scale_from_int(largest, params), params)
    shift = params.reciprocal_bits + largest.bit_length()
    return {"norm_scale": tuple(norm),
            "output_scale": tuple(output) if output.exponent in EXPONENTS else None,
            "reciprocal": (params.activation_max << shift) // largest,
            "largest_bits": largest.bit_length()}


def fields(result, quantize, wanted=None):
    """The result's fields that the golden one defines (``output_scale`` as ``wanted``)."""
    got = {"norm_scale": (result.norm_scale.mantissa, result.norm_scale.exponent)}
    if quantize:
        output = (result.output_scale.mantissa, result.output_scale.exponent)
        got.update(output_scale=output if wanted is None or wanted["output_scale"] else None,
                   reciprocal=result.reciprocal, largest_bits=result.largest_bits)
    return got


def expected_latency(request, normaliser, params=PARAMS):
    """Cycles from the edge that takes the request to the first that can take its result, from
    ``normaliser``'s latency for each value the engine normalises (the module's sum)."""
    quantize, total, epsilon, constant, largest = request
    value = total + epsilon
    shift = value.bit_length() - 32
    shift += shift & 1
    w = value >> shift if shift >= 0 else value << -shift
    y = int(numerics.rsqrt_table(params)[w >> (32 - params.rsqrt_table_bits)]) << 14
    for _ in range(params.rsqrt_newton_steps):  # numerics.rsqrt_scale's iterate
        y = (y * ((3 << 30) - ((w * ((y * y) >> 30)) >> 32))) >> 31
    rsqrt = numerics.rsqrt_scale(value, params)
    assert numerics._normalise(y, -46 - shift // 2, params) == rsqrt
    norm = numerics.scale_multiply(rsqrt, constant, params)
    product = 1 + shared_multiplier.LATENCY
    cycles = (normaliser.latency(value, True) + 3 * product * params.rsqrt_newton_steps
              + 1 + normaliser.latency(y, False)
              + product + normaliser.latency(rsqrt.mantissa * constant.mantissa, False) + 1)
    if not quantize:
        return cycles
    largest = max(largest, 1)
    taken = normaliser.latency(value, True) + 1 + normaliser.latency(largest, False)
    output = norm.mantissa * numerics.scale_from_int(largest, params).mantissa
    cycles += taken - normaliser.latency(value, True) + product + normaliser.latency(output,
                                                                                     False)
    divider = params.reciprocal_bits + params.activation_bits + 1  # SerialDivider.latency
    return max(cycles, taken + divider)


def run(dut, *testbenches):
    simulator = Simulator(dut)
    simulator.add_clock(1e-6)
    for testbench in testbenches:
        simulator.add_testbench(testbench)
    simulator.run()


def one_at_a_time(dut, requests):
    """Each request when the last result is taken, results taken at once: ``(result,
    latency)`` each."""
    received = []

    async def testbench(ctx):
        ctx.set(dut.result.ready, 1)
        for request in requests:
            ctx.set(dut.request.payload, payload(request))
            ctx.set(dut.request.valid, 1)
            await ctx.tick().until(dut.request.ready)
            ctx.set(dut.request.valid, 0)
            for cycles in range(1, 1000):
                *_, valid, result = await ctx.tick().sample(dut.result.valid, dut.result.payload)
                if valid:
                    break
            received.append((result, cycles))

    run(dut, testbench)
    return received


def test_init():
    engine = SerialScalarEngine(PARAMS, tag_bits=3, tag=5)
    assert engine.params is PARAMS and engine.tag == 5 and engine.bits_per_cycle == 4
    assert engine.request.payload.shape() == scalar_engine.request_layout(PARAMS)
    assert engine.result.payload.shape() == scalar_engine.result_layout(PARAMS)
    assert engine.multiplier_request.payload.shape() == shared_multiplier.request_layout(3)
    assert engine.multiplier_result.payload.shape() == shared_multiplier.result_layout(3)
    assert (engine.max_latency(False), engine.max_latency(True)) == (94, 138)


@pytest.mark.parametrize(("arguments", "error", "message"), [
    (("micro", {}), TypeError, "params must be an AcceleratorParameters, not 'micro'"),
    ((PARAMS.replace(rsqrt_table_bits=2), {}), ValueError,
     "the scalar engine needs rsqrt_table_bits from 3 to 12, not 2"),
    ((PARAMS.replace(scale_mantissa_bits=33), {}), ValueError,
     "scale_mantissa_bits must be at most 32 (a multiplier operand), not 33"),
    ((PARAMS, {"bits_per_cycle": 3}), ValueError,
     "bits_per_cycle must be 1 or an even number from 2 to 16, not 3"),
    ((PARAMS, {"tag_bits": 0}), ValueError, "tag_bits must be a positive integer, not 0"),
    ((PARAMS, {"tag_bits": 2, "tag": 4}), ValueError,
     "tag must be an integer from 0 to 3, not 4"),
])
def test_init_wrong(arguments, error, message):
    params, keywords = arguments
    with pytest.raises(error) as raised:
        SerialScalarEngine(params, **keywords)
    assert str(raised.value) == message


def test_results_and_latency():
    """Edge and random requests one at a time: every defined field is the numerics', each
    latency the module's sum of the normaliser's, within :meth:`max_latency`."""
    requests = edge_requests() + random_requests(random.Random(1), 60)
    dut = EngineOnMultiplier(PARAMS, tag_bits=2, tag=2)
    received = one_at_a_time(dut, requests)
    latencies = {False: [], True: []}
    for request, (result, cycles) in zip(requests, received, strict=True):
        wanted = golden(request)
        assert fields(result, request[0], wanted) == wanted, request
        assert cycles == expected_latency(request, dut.engine.normaliser), request
        assert cycles <= dut.engine.max_latency(request[0])
        latencies[request[0]].append(cycles)
    # These requests (micro): NORM 57 to 84 cycles, QUANT 85 to 128; the bound is 94 and 138.
    assert (min(latencies[False]), max(latencies[False])) == (57, 84), latencies[False]
    assert (min(latencies[True]), max(latencies[True])) == (85, 128), latencies[True]


def test_gaps_back_pressure_and_a_busy_multiplier():
    """Requests after random gaps, results taken in random cycles, the multiplier free in
    random cycles only: every result once, in order, equal to the numerics."""
    rng = random.Random(7)
    requests = edge_requests()[::3] + random_requests(rng, 25)
    dut = EngineOnMultiplier(PARAMS)
    received = []

    async def producer(ctx):
        for request in requests:
            for _ in range(rng.choice((0, 0, 1, 5))):
                await ctx.tick()
            ctx.set(dut.request.payload, payload(request))
            ctx.set(dut.request.valid, 1)
            await ctx.tick().until(dut.request.ready)
            ctx.set(dut.request.valid, 0)

    async def consumer(ctx):
        for _ in range(400 * len(requests)):  # or results are lost
            ctx.set(dut.result.ready, rng.random() < 0.4)
            ctx.set(dut.free, rng.random() < 0.5)
            *_, valid, ready, result = await ctx.tick().sample(
                dut.result.valid, dut.result.ready, dut.result.payload)
            if valid and ready:
                received.append(result)
                if len(received) == len(requests):
                    break

    run(dut, producer, consumer)
    assert len(received) == len(requests)
    for request, result in zip(requests, received):
        wanted = golden(request)
        assert fields(result, request[0], wanted) == wanted, request


@pytest.mark.parametrize("newton_steps", [0, 1, 3])
def test_newton_steps(newton_steps):
    params = PARAMS.replace(rsqrt_newton_steps=newton_steps)
    requests = edge_requests()[::6] + random_requests(random.Random(newton_steps), 6)
    dut = EngineOnMultiplier(params)
    for request, (result, cycles) in zip(requests, one_at_a_time(dut, requests), strict=True):
        wanted = golden(request, params)
        assert fields(result, request[0], wanted) == wanted, request
        assert cycles == expected_latency(request, dut.engine.normaliser, params)
        assert cycles <= dut.engine.max_latency(request[0])


def test_as_the_committed_engine():
    """The committed engine and this one give the same bits for every field that the request
    defines, a zero value (outside the numerics) included."""
    rng = random.Random(3)
    requests = ([(q, 0, 0, Scale(1 << 15, 0), 5) for q in (False, True)]
                + edge_requests()[1::4] + random_requests(rng, 10))
    ours = one_at_a_time(EngineOnMultiplier(PARAMS), requests)
    theirs = one_at_a_time(ScalarEngine(PARAMS), requests)
    for request, (mine, _), (committed, _) in zip(requests, ours, theirs, strict=True):
        assert fields(mine, request[0]) == fields(committed, request[0]), request


def test_yosys_luts():
    """``synth_ice40`` (Yosys 0.70) of the engine alone (the multiplier outside), measured:
    1,130 SB_LUT4, 238 SB_CARRY, 426 flip-flops, against 1,257 SB_LUT4, 271 SB_CARRY, 570
    flip-flops and 4 SB_MAC16 for the committed engine. Of the 1,130, the unsigned correction
    of the signed product takes 158 (972 without it)."""
    mapped = synthesize(SerialScalarEngine(PARAMS), "ice40").mapped
    assert mapped["SB_LUT4"] <= 1180, mapped
    assert "SB_MAC16" not in mapped and "SB_RAM40_4K" not in mapped
