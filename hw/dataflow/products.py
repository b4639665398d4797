"""Pipelined products that several dataflow units share: ``numerics.multiply`` of two
``vector_bits`` lanes (the element-wise unit's MUL and SILU, the norm unit's ``x * weight``)
and the exact square of a lane's magnitude (the norm's sum of squares).

Each is written against a ``stage(value, name, number, shape=None)`` callable that returns
``value`` registered under a name of the caller's lane, so the registers keep the unit's
stage numbers. Every product is split into 16-bit halves, one ``MULT18X18D`` a partial
product, with a register on each side of the DSPs that feeds or is fed by them alone (the
paths from fabric to the DSP row and back were the units' longest).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, unsigned

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.row_unit import _limit  # shared; row_unit.py is a design source

__all__ = ["HALF", "PRODUCT_STAGES", "SQUARE_STAGES", "rounded_product", "saturated", "square"]

# The operands split into a high half and an unsigned low half of HALF bits.
HALF = 16
#: Registers from :func:`rounded_product`'s first to its last, both counted.
PRODUCT_STAGES = 7
#: Registers from :func:`square`'s first to its last, both counted.
SQUARE_STAGES = 5


def rounded_product(stage, a, b, params: AcceleratorParameters, first: int) -> dict:
    """``numerics.multiply(a, b)`` (``round_shift(a * b, frac_bits)``, saturated) as stages
    ``first`` to ``first + 6``.

    ``first``: the operands again (a register that feeds only the DSPs); ``first + 1``: four
    partial products (the high halves signed, the low ones unsigned); ``first + 2``: the
    products again; ``first + 3``: ``outer = high_high * 2**32 + low_low`` (a concatenation)
    and the middle products' sum with the rounding constant below it; ``first + 4``: the low
    and high 32-bit halves of ``outer + middle``; ``first + 5``: the carry, and the quotient;
    ``first + 6``: whether it fits, its sign and its low bits. Returns those three: the
    caller's next register loads :func:`saturated` of them.
    """
    width = params.vector_bits
    a, b = stage(a, "multiplicand", first), stage(b, "factor", first)
    (a_high, a_low), (b_high, b_low) = ((value[HALF:].as_signed(), value[:HALF])
                                        for value in (a, b))
    high_high, high_low, low_high, low_low = (
        stage(stage(left * right, name, first + 1), name, first + 2)
        for left, right, name in ((a_high, b_high, "high_high"), (a_high, b_low, "high_low"),
                                  (a_low, b_high, "low_high"), (a_low, b_low, "low_low")))
    outer = stage(Cat(low_low, high_high).as_signed(), "outer", first + 3)
    middle_sum = stage(high_low + low_high, "middle", first + 3)
    middle = Cat(Const(1 << (params.frac_bits - 1), HALF), middle_sum).as_signed()
    low_half = stage(outer[:2 * HALF] + middle[:2 * HALF], "low_half", first + 4)
    high_half = stage(outer[2 * HALF:].as_signed() + middle[2 * HALF:].as_signed(),
                      "high_half", first + 4)
    rounded = Cat(low_half[:2 * HALF], high_half + low_half[2 * HALF]).as_signed()
    quotient = stage(rounded >> params.frac_bits, "quotient", first + 5)
    upper = quotient[width - 1:]
    return {"fits": stage(upper.all() | ~upper.any(), "fits", first + 6),
            "negative": stage(quotient[-1], "negative", first + 6),
            "quotient": stage(quotient[:width], "quotient", first + 6)}


def saturated(product: dict, width: int):
    """The value of :func:`rounded_product`'s result: its quotient or the limit it passed."""
    return Mux(product["fits"], product["quotient"], _limit(product["negative"], width))


def square(stage, magnitude, first: int):
    """``magnitude ** 2`` (``magnitude`` unsigned, at most ``2 * HALF`` bits) as stages
    ``first`` to ``first + 4``: the operand again; three partial products (``high * low``
    counts twice); the products again; ``outer = high**2 * 2**32 + low**2`` and
    ``2 * high * low * 2**16``; their sum (the value returned)."""
    magnitude = stage(magnitude, "magnitude", first, unsigned(2 * HALF))
    high, low = magnitude[HALF:], magnitude[:HALF]
    high_high, high_low, low_low = (
        stage(stage(left * right, name, first + 1), name, first + 2)
        for left, right, name in ((high, high, "square_high"), (high, low, "square_middle"),
                                  (low, low, "square_low")))
    outer = stage(Cat(low_low, high_high), "square_outer", first + 3)
    middle = stage(high_low << (HALF + 1), "square_middle", first + 3)
    return stage(outer + middle, "square", first + 4, unsigned(4 * HALF))
