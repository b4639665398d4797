"""The iCE40 port's multiplier arbiter in front of a real shared multiplier, in Amaranth's
simulator: behavioural clients with random operands, gaps and back-pressure each get exactly
their own products in their own order; the round-robin bound on a client's wait; a real serial
scalar engine beside two clients hammering the multiplier, against the numerics; the
constructor's checks; and Yosys's count."""

import random

import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from tern_fpga.contracts import numerics
from tern_fpga.contracts.numerics import Scale
from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.ice40.multiplier_arbiter import MultiplierArbiter
from tern_fpga.hw.ice40.serial_engine import SerialScalarEngine
from tern_fpga.hw.ice40.shared_multiplier import (
    LATENCY,
    SharedMultiplier,
    exact_product,
    request_layout,
    result_layout,
)
from tern_fpga.hw.scale_layout import SCALE_EXPONENT_BITS, sum_of_squares_bits
from tern_fpga.hw.synthesis import synthesize

from support.streams import send_all

pytestmark = [pytest.mark.xdist_group("yosys"),
              pytest.mark.filterwarnings("ignore:.*created but never used")]

CLIENTS, TAG_BITS = 3, 2
EDGES = (-2**31, 2**31 - 1, 0, 1, -1)
PARAMS = PRESETS["micro"]
EXPONENTS = range(-(1 << (SCALE_EXPONENT_BITS - 1)), 1 << (SCALE_EXPONENT_BITS - 1))
LIMIT = 20_000  # cycles: a lost request or result leaves a loop waiting until then


class ArbitratedMultiplier(Elaboratable):
    """An arbiter of :data:`CLIENTS` ports on a :class:`SharedMultiplier`; with ``engine`` (a
    :class:`SerialScalarEngine`), the engine on port ``engine.tag``."""

    def __init__(self, engine=None):
        self.arbiter = MultiplierArbiter(CLIENTS, TAG_BITS)
        self.multiplier = SharedMultiplier(TAG_BITS)
        self.engine = engine

    def elaborate(self, platform):
        m = Module()
        m.submodules.arbiter, m.submodules.multiplier = arbiter, multiplier = (
            self.arbiter, self.multiplier)
        wiring.connect(m, arbiter.multiplier_request, multiplier.requests)
        wiring.connect(m, multiplier.results, arbiter.multiplier_result)
        if self.engine is not None:
            m.submodules.engine = engine = self.engine
            wiring.connect(m, engine.multiplier_request, arbiter.requests[engine.tag])
            wiring.connect(m, arbiter.results[engine.tag], engine.multiplier_result)
        return m


def operand_pairs(rng, count):
    """Every pair of :data:`EDGES`, then random operands, an edge value in about a third."""
    def operand():
        return rng.choice(EDGES) if rng.random() < 0.3 else rng.getrandbits(32) - 2**31

    pairs = [(a, b) for a in EDGES for b in EDGES]
    return pairs + [(operand(), operand()) for _ in range(count - len(pairs))]


class Clients:
    """Behavioural clients' testbenches on the arbiter's ports and what they saw: for each
    client, ``taken`` (``(cycle the request became valid, cycle of the edge that took it, a,
    b)``) and ``received`` (``(product, tag)``); cycles count the clock edges from the start."""

    def __init__(self, dut, rng):
        self.dut, self.rng = dut, rng
        self.taken = {index: [] for index in range(CLIENTS)}
        self.received = {index: [] for index in range(CLIENTS)}
        self.producing = set()
        self.others_done = lambda: True  # the engine's results, where one runs

    def finished(self):
        return (not self.producing and self.others_done()
                and all(len(self.received[i]) >= len(self.taken[i]) for i in self.taken))

    def producer(self, index, pairs, gaps, stop=lambda: False):
        """Each pair of ``pairs`` (until ``stop()``) after a gap drawn from ``gaps``; the
        request's own tag is random (the arbiter replaces it)."""
        port, rng = self.dut.arbiter.requests[index], self.rng
        self.producing.add(index)

        async def testbench(ctx):
            cycle = 0
            for a, b in pairs:
                if stop():
                    break
                ctx.set(port.valid, 0)
                for _ in range(rng.choice(gaps)):
                    await ctx.tick()
                    cycle += 1
                ctx.set(port.payload, {"a": a, "b": b, "tag": rng.getrandbits(TAG_BITS)})
                ctx.set(port.valid, 1)
                start = cycle
                while cycle < LIMIT:
                    _, _, ready = await ctx.tick().sample(port.ready)
                    cycle += 1
                    if ready:
                        self.taken[index].append((start, cycle, a, b))
                        break
                else:
                    break
            ctx.set(port.valid, 0)
            self.producing.discard(index)

        return testbench

    def consumer(self, index, ready_probability, holds=0.0):
        """Results taken with ``ready_probability``, and held back for 5 to 15 cycles from a
        cycle with probability ``holds``; once all is done, ready for 2 * LATENCY cycles more
        (a result repeated would arrive then)."""
        port, rng = self.dut.arbiter.results[index], self.rng

        async def testbench(ctx):
            hold, after = 0, 2 * LATENCY
            for _ in range(LIMIT):
                if self.finished():
                    after -= 1
                    if after < 0:
                        break
                if hold == 0 and rng.random() < holds:
                    hold = rng.randrange(5, 16)
                hold = max(hold - 1, 0)
                ctx.set(port.ready, self.finished() or (not hold
                                                         and rng.random() < ready_probability))
                _, _, valid, ready, product, tag = await ctx.tick().sample(
                    port.valid, port.ready, port.payload.product, port.payload.tag)
                if valid and ready:
                    self.received[index].append((product, tag))

        return testbench

    def check(self):
        """Each client got exactly its own products, in its order, with its index as tag."""
        for index in self.taken:
            assert self.received[index] == [(exact_product(a, b), index)
                                             for _, _, a, b in self.taken[index]], index

    def waits(self):
        """For each request taken: the other clients' grants while it waited, and its cycles
        from valid to taken. One grant an edge at most."""
        grants = sorted((cycle, index) for index, taken in self.taken.items()
                        for _, cycle, _, _ in taken)
        assert len({cycle for cycle, _ in grants}) == len(grants), "two grants in an edge"
        return [(sum(start < other < cycle for other, _ in grants), cycle - start)
                for index, taken in self.taken.items() for start, cycle, _, _ in taken]


def run(dut, *testbenches):
    simulator = Simulator(dut)
    simulator.add_clock(1e-6)
    for testbench in testbenches:
        simulator.add_testbench(testbench)
    simulator.run()


def test_init():
    arbiter = MultiplierArbiter(CLIENTS, 3)
    assert (arbiter.clients, arbiter.tag_bits) == (CLIENTS, 3)
    assert len(arbiter.requests) == len(arbiter.results) == CLIENTS
    assert arbiter.requests[2].payload.shape() == request_layout(3)
    assert arbiter.results[0].payload.shape() == result_layout(3)
    assert arbiter.multiplier_request.payload.shape() == request_layout(3)
    assert arbiter.multiplier_result.payload.shape() == result_layout(3)
    assert [MultiplierArbiter(n).tag_bits for n in (1, 2, 3, 4, 5)] == [1, 1, 2, 2, 3]


@pytest.mark.parametrize(("arguments", "message"), [
    ((0,), "clients must be a positive integer, not 0"),
    ((True,), "clients must be a positive integer, not True"),
    ((3, 0), "tag_bits must be a positive integer, not 0"),
    ((3, 2.0), "tag_bits must be a positive integer, not 2.0"),
    ((3, 1), ("tag_bits 1 cannot hold the client index 2 of 3 clients; give the multiplier "
              "tag_bits=2 or more")),
    ((5, 2), ("tag_bits 2 cannot hold the client index 4 of 5 clients; give the multiplier "
              "tag_bits=3 or more")),
])
def test_init_wrong(arguments, message):
    with pytest.raises(ValueError) as raised:
        MultiplierArbiter(*arguments)
    assert str(raised.value) == message


def test_random_clients():
    """Three clients: random operands and edge values, random gaps, results taken at once, with
    probability 0.7, and with 0.4 and long holds: each gets its own products once, in order;
    a request waits for at most two other clients' grants."""
    rng = random.Random(18)
    dut = ArbitratedMultiplier()
    clients = Clients(dut, rng)
    run(dut,
        clients.producer(0, operand_pairs(rng, 400), (0,)),
        clients.producer(1, operand_pairs(rng, 300), (0, 0, 1, 3)),
        clients.producer(2, operand_pairs(rng, 200), (0, 2, 7)),
        clients.consumer(0, 1.0), clients.consumer(1, 0.7), clients.consumer(2, 0.4, 0.05))
    assert [len(clients.taken[i]) for i in range(CLIENTS)] == [400, 300, 200]
    clients.check()
    assert max(others for others, _ in clients.waits()) <= CLIENTS - 1


def test_round_robin():
    """All three clients always requesting, results always taken: one grant an edge, each
    client's turn every third edge (no request waits more than three cycles)."""
    rng = random.Random(5)
    dut = ArbitratedMultiplier()
    clients = Clients(dut, rng)
    run(dut, *(clients.producer(i, operand_pairs(rng, 40), (0,)) for i in range(CLIENTS)),
        *(clients.consumer(i, 1.0) for i in range(CLIENTS)))
    clients.check()
    waits = clients.waits()
    assert max(others for others, _ in waits) == CLIENTS - 1
    assert max(cycles for _, cycles in waits) == CLIENTS
    last = max(cycle for taken in clients.taken.values() for _, cycle, _, _ in taken)
    assert last == CLIENTS * 40  # the multiplier took a request every edge


def engine_golden(request):
    """The serial engine's defined fields by the numerics (``output_scale`` where its exponent
    fits the port)."""
    quantize, total, epsilon, constant, largest = request
    norm = numerics.scale_multiply(numerics.rsqrt_scale(total + epsilon, PARAMS), constant,
                                   PARAMS)
    fields = {"norm_scale": tuple(norm)}
    if quantize:
        largest = max(largest, 1)
        output = numerics.scale_multiply(norm, numerics.scale_from_int(largest, PARAMS), PARAMS)
        shift = PARAMS.reciprocal_bits + largest.bit_length()
        fields.update(output_scale=tuple(output) if output.exponent in EXPONENTS else None,
                      reciprocal=(PARAMS.activation_max << shift) // largest,
                      largest_bits=largest.bit_length())
    return fields


def test_serial_engine_among_clients():
    """A real serial scalar engine on port 1, two clients hammering the multiplier on ports 0
    and 2 (no gaps, results held back at random): the engine's results are the numerics', the
    clients' products their own."""
    rng = random.Random(11)
    widest, top = (1 << sum_of_squares_bits(PARAMS)) - 1, 1 << (PARAMS.vector_bits - 1)
    requests = [(False, 0, 1, Scale(1 << 15, 0), 0), (True, 0, 1, Scale(1, -128), 0),
                (True, widest, widest, Scale(0xFFFF, 127), top), (True, 1, 0, Scale(1, 0), 1)]
    requests += [(rng.random() < 0.5, rng.getrandbits(rng.randrange(1, 40)),
                  rng.getrandbits(8) | 1, Scale(rng.getrandbits(16), rng.randrange(-40, 20)),
                  rng.getrandbits(rng.randrange(1, PARAMS.vector_bits))) for _ in range(16)]
    engine = SerialScalarEngine(PARAMS, tag_bits=TAG_BITS, tag=1)
    dut = ArbitratedMultiplier(engine)
    clients = Clients(dut, rng)
    results = []
    clients.others_done = lambda: len(results) == len(requests)

    async def engine_requests(ctx):
        await send_all(ctx, engine.request, [
            {"quantize": q, "sum_of_squares": total, "epsilon_term": epsilon,
             "constant": constant._asdict(), "largest": largest}
            for q, total, epsilon, constant, largest in requests])

    async def engine_results(ctx):
        for _ in range(LIMIT):
            ctx.set(engine.result.ready, rng.random() < 0.5)
            _, _, valid, ready, result = await ctx.tick().sample(
                engine.result.valid, engine.result.ready, engine.result.payload)
            if valid and ready:
                results.append(result)
                if len(results) == len(requests):
                    break

    async def engine_takes_at_once(ctx):
        # The arbiter offers the engine only its own results, which it takes as they come: it
        # never stalls the multiplier.
        while not clients.finished():
            _, _, valid, ready = await ctx.tick().sample(engine.multiplier_result.valid,
                                                         engine.multiplier_result.ready)
            assert ready or not valid

    stop = clients.others_done
    run(dut, engine_requests, engine_results, engine_takes_at_once,
        clients.producer(0, operand_pairs(rng, 2000), (0,), stop),
        clients.producer(2, operand_pairs(rng, 2000), (0, 0, 1), stop),
        clients.consumer(0, 0.6), clients.consumer(2, 0.5, 0.03))
    assert len(results) == len(requests)
    for request, result in zip(requests, results):
        wanted = engine_golden(request)
        got = {"norm_scale": (result.norm_scale.mantissa, result.norm_scale.exponent)}
        if request[0]:
            output = (result.output_scale.mantissa, result.output_scale.exponent)
            got.update(output_scale=output if wanted["output_scale"] else None,
                       reciprocal=result.reciprocal, largest_bits=result.largest_bits)
        assert got == wanted, request
    clients.check()
    assert min(len(clients.taken[i]) for i in (0, 2)) > 100  # they did compete


def test_yosys_luts():
    """``synth_ice40`` (Yosys 0.70), 3 clients and a 2-bit tag, measured: 142 SB_LUT4 (128 the
    operands' 3-to-1 mux, two a bit) and 2 flip-flops (the last client's index)."""
    mapped = synthesize(MultiplierArbiter(CLIENTS, TAG_BITS), "ice40").mapped
    assert mapped["SB_LUT4"] <= 150, mapped
    flip_flops = sum(count for cell, count in mapped.items() if cell.startswith("SB_DFF"))
    assert flip_flops <= 2, mapped
    assert "SB_CARRY" not in mapped and "SB_RAM40_4K" not in mapped
