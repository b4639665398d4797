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

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Mux, Shape, Signal, unsigned

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.row_unit import _limit  # shared; row_unit.py is a design source

__all__ = ["HALF", "TARGETS", "checked_target", "four_products", "partial_product",
           "rounded_product", "saturated", "square"]

#: Where a design goes: ``None`` (simulation, or any FPGA: a ``*`` between fabric registers)
#: or ``"ecp5"`` (``MULT18X18D`` instances that use the DSP's own input and output registers).
TARGETS = (None, "ecp5")
DSP_BITS = 18

# The operands split into a high half and an unsigned low half of HALF bits.
HALF = 16


def checked_target(target):
    """``target`` if it is one of :data:`TARGETS`."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
    return target


def partial_product(m, stage, left, right, name: str, number: int, target=None):
    """``left * right`` with its operands registered at stage ``number`` and the product at
    ``number + 1`` (each operand at most 18 bits signed or 17 unsigned).

    ``target`` None: fabric registers around a ``*`` (Yosys maps it to a DSP, its own registers
    unused). ``"ecp5"``: one ``MULT18X18D`` whose input and output registers are those stages,
    so that the paths between the fabric and the DSP row are whole cycles. Yosys has only a
    black box of the cell, so Amaranth's simulator runs the fabric form; Verilator runs this
    one on ``sim/rtl/models/MULT18X18D.v``.
    """
    if target is None:
        operands = stage(left, f"{name}_left", number), stage(right, f"{name}_right", number)
        return stage(operands[0] * operands[1], name, number + 1)
    checked_target(target)
    shapes = [Shape.cast(value.shape()) for value in (left, right)]
    if any(shape.width + (not shape.signed) > DSP_BITS for shape in shapes):
        raise ValueError(f"{name}: operands of {shapes} do not fit an 18 x 18 multiplier")
    width = (left * right).shape()
    extended = [Signal(DSP_BITS, name=f"{name}_{side}") for side in ("a", "b")]
    m.d.comb += [extended[0].eq(left.as_signed() if shapes[0].signed else left),
                 extended[1].eq(right.as_signed() if shapes[1].signed else right)]
    product = Signal(2 * DSP_BITS, name=f"{name}_p")
    ports = {f"i_{side}{bit}": value[bit] for side, value in zip("AB", extended)
             for bit in range(DSP_BITS)}
    ports |= {f"i_C{bit}": 0 for bit in range(DSP_BITS)}
    ports |= {f"o_P{bit}": product[bit] for bit in range(2 * DSP_BITS)}
    ports |= {f"i_{pin}{index}": ClockSignal() if (pin, index) == ("CLK", 0) else
              int((pin, index) == ("CE", 0))
              for pin in ("CLK", "CE", "RST") for index in range(4)}
    m.submodules += Instance(
        "MULT18X18D", p_REG_INPUTA_CLK="CLK0", p_REG_INPUTB_CLK="CLK0",
        p_REG_OUTPUT_CLK="CLK0", p_GSR="DISABLED",
        i_SIGNEDA=int(shapes[0].signed), i_SIGNEDB=int(shapes[1].signed), i_SOURCEA=0,
        i_SOURCEB=0, **ports)
    result = Signal(width, name=f"{name}_{number + 1}")
    m.d.comb += result.eq(product[:Shape.cast(width).width])
    return result


def four_products(m, stage, a, b, first: int, target=None) -> dict:
    """The four partial products of ``a = (a_high, a_low)`` and ``b = (b_high, b_low)``
    (halves given by the caller, each :func:`partial_product`'s operand), by name
    (``high_high``, ``high_low``, ``low_high``, ``low_low``): the operands at stage ``first``,
    the products at ``first + 1`` and again at ``first + 2`` (a register fed by the DSP alone).
    """
    (a_high, a_low), (b_high, b_low) = a, b
    return {name: stage(partial_product(m, stage, left, right, name, first, target), name,
                        first + 2)
            for left, right, name in ((a_high, b_high, "high_high"), (a_high, b_low, "high_low"),
                                      (a_low, b_high, "low_high"), (a_low, b_low, "low_low"))}


def rounded_product(m, stage, a, b, params: AcceleratorParameters, first: int,
                    target=None) -> dict:
    """``numerics.multiply(a, b)`` (``round_shift(a * b, frac_bits)``, saturated) as stages
    ``first`` to ``first + 6``.

    ``first``: the operands again (registers that feed only the DSPs, or the DSPs' own:
    :func:`partial_product`); ``first + 1``: four partial products (the high halves signed,
    the low ones unsigned); ``first + 2``: the products again; ``first + 3``: ``outer =
    high_high * 2**32 + low_low`` (a concatenation) and the middle products' sum with the
    rounding constant below it; ``first + 4``: the low and high 32-bit halves of ``outer +
    middle``; ``first + 5``: the carry, and the quotient; ``first + 6``: whether it fits, its
    sign and its low bits. Returns those three: the caller's next register loads
    :func:`saturated` of them.
    """
    width = params.vector_bits
    pieces = four_products(m, stage, *((value[HALF:].as_signed(), value[:HALF])
                                       for value in (a, b)), first, target)
    outer = stage(Cat(pieces["low_low"], pieces["high_high"]).as_signed(), "outer", first + 3)
    middle_sum = stage(pieces["high_low"] + pieces["low_high"], "middle", first + 3)
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


def square(m, stage, magnitude, first: int, target=None):
    """``magnitude ** 2`` (``magnitude`` unsigned, at most ``2 * HALF`` bits) as stages
    ``first`` to ``first + 4``: the operand again; three partial products (``high * low``
    counts twice, :func:`partial_product`); the products again; ``outer = high**2 * 2**32 +
    low**2`` and ``2 * high * low * 2**16``; their sum (the value returned)."""
    magnitude = magnitude.as_unsigned()
    high, low = magnitude[HALF:2 * HALF], magnitude[:HALF]
    high_high, high_low, low_low = (
        stage(partial_product(m, stage, left, right, name, first, target), name, first + 2)
        for left, right, name in ((high, high, "square_high"), (high, low, "square_middle"),
                                  (low, low, "square_low")))
    outer = stage(Cat(low_low, high_high), "square_outer", first + 3)
    middle = stage(high_low << (HALF + 1), "square_middle", first + 3)
    return stage(outer + middle, "square", first + 4, unsigned(4 * HALF))
