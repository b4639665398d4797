"""An iCE40 unit that is a client of the shared multiplier (``hw/ice40/``), for its tests: on
one port of a two-port :class:`~tern_fpga.hw.ice40.multiplier_arbiter.MultiplierArbiter` in
front of a real :class:`~tern_fpga.hw.ice40.shared_multiplier.SharedMultiplier`, the other
port left to the test (a client that competes for the multiplier)."""

from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import wiring

from tern_fpga.hw.ice40.multiplier_arbiter import MultiplierArbiter
from tern_fpga.hw.ice40.shared_multiplier import SharedMultiplier, exact_product

#: The tag bits of the harness's multiplier, the unit's port and the test's.
TAG_BITS, UNIT_TAG, OTHER_TAG = 1, 1, 0


class UnitOnArbiter(Elaboratable):
    """``unit`` (built with ``tag_bits=TAG_BITS, tag=UNIT_TAG``) on port :data:`UNIT_TAG`;
    ``other_request`` and ``other_result``: port :data:`OTHER_TAG`, the test's; ``cycle``
    counts cycles."""

    def __init__(self, unit):
        self.unit = unit
        self.arbiter = MultiplierArbiter(2, TAG_BITS)
        self.multiplier = SharedMultiplier(TAG_BITS)
        self.other_request = self.arbiter.requests[OTHER_TAG]
        self.other_result = self.arbiter.results[OTHER_TAG]
        self.cycle = Signal(32)

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit, m.submodules.arbiter, m.submodules.multiplier = (
            unit, arbiter, multiplier) = self.unit, self.arbiter, self.multiplier
        wiring.connect(m, unit.multiplier_request, arbiter.requests[UNIT_TAG])
        wiring.connect(m, arbiter.results[UNIT_TAG], unit.multiplier_result)
        wiring.connect(m, arbiter.multiplier_request, multiplier.requests)
        wiring.connect(m, multiplier.results, arbiter.multiplier_result)
        m.d.sync += self.cycle.eq(self.cycle + 1)
        return m


class CompetingClient:
    """The test's client on :class:`UnitOnArbiter`'s other port: operand pairs (from ``edges``
    three times in ten, else random 32-bit) with random gaps, its results taken at random
    (and, with probability ``holds`` a result, held back 5 to 15 cycles, which stalls the
    multiplier for the unit too), until ``done`` (the test's list) is not empty; ``asked`` and
    ``received`` are what it sent and got."""

    def __init__(self, dut: UnitOnArbiter, rng, edges, done: list, *, holds: float = 0.0,
                 limit: int):
        self.dut, self.rng, self.edges, self.done = dut, rng, edges, done
        self.holds, self.limit = holds, limit
        self.asked, self.received = [], []

    def _operand(self) -> int:
        rng = self.rng
        return rng.choice(self.edges) if rng.random() < 0.3 else rng.getrandbits(32) - 2**31

    async def requests(self, ctx):
        port, rng = self.dut.other_request, self.rng
        while not self.done:
            ctx.set(port.valid, 0)
            while rng.random() < 0.2:
                await ctx.tick()
            pair = self._operand(), self._operand()
            ctx.set(port.payload, {"a": pair[0], "b": pair[1], "tag": 0})
            ctx.set(port.valid, 1)
            await ctx.tick().until(port.ready)
            self.asked.append(pair)
        ctx.set(port.valid, 0)

    async def results(self, ctx):
        port, rng, hold = self.dut.other_result, self.rng, 0
        for _ in range(self.limit):
            if self.done and len(self.received) == len(self.asked):
                break
            if hold == 0 and rng.random() < self.holds:
                hold = rng.randrange(5, 16)
            hold = max(hold - 1, 0)
            ctx.set(port.ready, bool(self.done) or (not hold and rng.random() < 0.6))
            _, _, valid, ready, product, tag = await ctx.tick().sample(
                port.valid, port.ready, port.payload.product, port.payload.tag)
            if valid and ready:
                self.received.append((product, tag))

    def check(self) -> None:
        """It got exactly its own products, once each, in order, with its tag."""
        assert self.received == [(exact_product(a, b), OTHER_TAG) for a, b in self.asked]
