"""The per-token scale (:class:`tern_fpga.contracts.numerics.Scale`) as it travels between the
units: its port layout, shared by the norm and quantiser unit, the scalar engine, the row unit
and the core."""

from __future__ import annotations

import math

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from tern_fpga.contracts.params import AcceleratorParameters

__all__ = ["SCALE_EXPONENT_BITS", "scale_layout", "sum_of_squares_bits"]

# The width of a Scale's signed exponent on the units' ports (a local constant: the parameters
# have no field for it). The compiler's constants and the scales they produce stay
# within about [-60, 10]; the numerics leave the exponent unbounded.
SCALE_EXPONENT_BITS = 8


def sum_of_squares_bits(params: AcceleratorParameters) -> int:
    """Width of the sum of squares and of ``epsilon_term``: ``max_features`` squares, each below
    ``2**square_saturation_bits``, sum below ``2**62``."""
    return params.square_saturation_bits + math.ceil(math.log2(params.max_features))


def scale_layout(params: AcceleratorParameters) -> data.StructLayout:
    """A :class:`tern_fpga.contracts.numerics.Scale` on a port: ``mantissa`` (unsigned,
    ``scale_mantissa_bits``) and ``exponent`` (signed, :data:`SCALE_EXPONENT_BITS`)."""
    return data.StructLayout({
        "mantissa": unsigned(params.scale_mantissa_bits),
        "exponent": signed(SCALE_EXPONENT_BITS),
    })
