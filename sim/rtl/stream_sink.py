"""The consumer side of a unit's ``Out`` stream in Amaranth's simulator, for the dataflow
units' tests: take results with random back-pressure, count the cycles, then check that the unit
has gone idle; or take the one result of a unit that works on one request at a time."""

from __future__ import annotations

__all__ = ["take_one", "take_results"]


async def take_results(ctx, port, busy, count: int, *, rng=None, ready_probability: float = 1.0,
                       limit: int) -> tuple[list, int]:
    """Take ``count`` payloads from the stream ``port``, ready with ``ready_probability`` a
    cycle (drawn from ``rng``); return them and the cycles it took. After the last, one more
    cycle, then ``busy`` must be low (not checked if ``busy`` is None: a unit with another
    output still at work).

    Raises
    ------
    AssertionError
        If ``count`` results do not come within ``limit`` cycles, or ``busy`` stays high.
    """
    results = []
    for cycle in range(limit):
        ready = ready_probability >= 1.0 or rng.random() < ready_probability
        ctx.set(port.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
        if ready and valid:
            results.append(payload)
        if len(results) == count:
            await ctx.tick()
            assert busy is None or not ctx.get(busy), "busy after the last result"
            return results, cycle + 1
    raise AssertionError(f"{len(results)} of {count} results within {limit} cycles")


async def take_one(ctx, port, *, rng=None, ready_probability: float = 1.0,
                   limit: int) -> tuple[object, int]:
    """Take one payload from the stream ``port``, ready with ``ready_probability`` a cycle
    (drawn from ``rng``); return it and the cycles it took, the one that takes it included
    (always ready: the unit's latency from the edge that took its request).

    Raises
    ------
    AssertionError
        If no result comes within ``limit`` cycles.
    """
    for cycle in range(1, limit + 1):
        ready = ready_probability >= 1.0 or rng.random() < ready_probability
        ctx.set(port.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
        if ready and valid:
            ctx.set(port.ready, 0)
            return payload, cycle
    raise AssertionError(f"no result within {limit} cycles")
