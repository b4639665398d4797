"""Running one component in Amaranth's simulator with one testbench."""

from amaranth.sim import Simulator


def simulate(dut, testbench, *, period: float = 1e-6) -> None:
    """``testbench(ctx, dut)`` (an async function) against ``dut`` on a clock of ``period``
    seconds, until the testbench returns."""

    async def bench(ctx):
        await testbench(ctx, dut)

    simulator = Simulator(dut)
    simulator.add_clock(period)
    simulator.add_testbench(bench)
    simulator.run()
