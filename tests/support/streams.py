"""A dataflow reader's streams in Amaranth's simulator: its instructions sent, its output
streams taken with random stalls."""


async def send_all(ctx, port, payloads) -> None:
    """Each of ``payloads`` on the ``In`` stream ``port``, as soon as it is taken."""
    for payload in payloads:
        ctx.set(port.payload, payload)
        ctx.set(port.valid, 1)
        await ctx.tick().until(port.ready)
    ctx.set(port.valid, 0)


async def record_streams(ctx, rng, reader, decode: dict, wanted: dict, *, stalled: tuple,
                         limit: int) -> dict:
    """Each cycle: ``reader.go`` high with probability 0.8, each stream named in ``decode``
    ready with probability 0.6, and those in ``stalled`` also held back for 20 cycles at a
    time (the unit's credits run out). Every handshake's payload goes, as ``decode[name]``
    gives it, into the list ``name`` of the result, until each list holds ``wanted[name]``
    entries or ``limit`` cycles have gone (a lost beat would leave the loop waiting);
    ``"reads"`` counts the ``read`` pulses."""
    seen = {name: [] for name in decode}
    seen["reads"] = 0
    pause = 0
    ports = [getattr(reader, name) for name in decode]
    for _ in range(limit):
        if all(len(seen[name]) >= count for name, count in wanted.items()):
            break
        pause = rng.choice([0, 0, 0, 20]) if pause == 0 else pause - 1
        ctx.set(reader.go, rng.random() < 0.8)
        for name, port in zip(decode, ports):
            ctx.set(port.ready, (pause == 0 or name not in stalled) and rng.random() < 0.6)
        signals = [signal for port in ports for signal in (port.valid, port.ready, port.payload)]
        _, _, read, *sampled = await ctx.tick().sample(reader.read, *signals)
        seen["reads"] += read
        for index, name in enumerate(decode):
            valid, ready, payload = sampled[3 * index:3 * index + 3]
            if valid and ready:
                seen[name].append(decode[name](payload))
    return seen
