"""Reading a memory back through a read port in Amaranth's simulator."""


async def read_back(ctx, port, words: int, decode) -> list:
    """Words ``0 .. words - 1`` through ``port`` (``addr``, ``en``, ``data`` a cycle later),
    each as ``decode(word)``."""
    result = []
    for address in range(words):
        ctx.set(port.addr, address)
        ctx.set(port.en, 1)
        await ctx.tick()
        result.append(decode(ctx.get(port.data)))
    return result
