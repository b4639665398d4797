"""Integer arithmetic of the accelerator: the definition the RTL must match bit for bit.

Every function here is exact integer arithmetic on ``np.int64`` arrays (or Python ints for the
per-token scalars), parameterised by :class:`tern_fpga.contracts.params.AcceleratorParameters`. The
formats, rounding rules and error bounds are written up in ``docs/numerics.md``; in short:

* vectors are signed ``vector_bits``-wide fixed point with ``frac_bits`` fractional bits
  ("Q.F"), and every rescaling rounds half up (``floor(v / 2**s + 1/2)``), then saturates;
* per-token scales are :class:`Scale` pseudo-floats ``mantissa * 2**exponent`` with an unsigned,
  normalised ``scale_mantissa_bits``-bit mantissa;
* activations are quantised to int8 with ties away from zero, as the model's GPU kernel does.
"""

from __future__ import annotations

import math
from functools import cache
from typing import NamedTuple

import numpy as np

from tern_fpga.contracts.params import AcceleratorParameters

__all__ = [
    "Scale",
    "add",
    "apply_scale",
    "from_fixed",
    "multiply",
    "one_minus",
    "quantize_activations",
    "rmsnorm",
    "round_shift",
    "rsqrt_scale",
    "rsqrt_table",
    "saturate",
    "scale_from_float",
    "scale_from_int",
    "scale_multiply",
    "scale_to_float",
    "sigmoid",
    "sigmoid_table",
    "silu",
    "subtract",
    "sum_of_squares",
    "to_fixed",
]

# A right shift by more than this gives the same result as by this for any |value| < 2**61.
_MAX_SHIFT = 62


class Scale(NamedTuple):
    """A positive pseudo-float ``mantissa * 2**exponent`` (``mantissa`` 0 means zero)."""

    mantissa: int
    exponent: int


def round_shift(value, shift: int):
    """``floor(value / 2**shift + 1/2)`` for ``shift > 0``; ``value * 2**-shift`` otherwise.

    Works on Python ints and ``np.int64`` arrays; the caller keeps ``|value| < 2**62``.
    """
    if shift <= 0:
        return value << -shift
    shift = min(shift, _MAX_SHIFT)
    return (value + (1 << (shift - 1))) >> shift


def saturate(value, bits: int):
    """Clamp to the signed ``bits``-wide range."""
    high = (1 << (bits - 1)) - 1
    return np.maximum(np.minimum(value, high), -high - 1)


def to_fixed(values, params: AcceleratorParameters) -> np.ndarray:
    """Float values to the vector format (round half up, saturate). For constants and tests."""
    scaled = np.floor(np.asarray(values, dtype=np.float64) * params.one + 0.5)
    high = float((1 << (params.vector_bits - 1)) - 1)
    return np.clip(scaled, -high - 1, high).astype(np.int64)


def from_fixed(values, params: AcceleratorParameters) -> np.ndarray:
    """Vector-format integers to float64."""
    return np.asarray(values, dtype=np.float64) / params.one


# Scales -------------------------------------------------------------------------------------


def _normalise(value: int, exponent: int, params: AcceleratorParameters) -> Scale:
    bits = params.scale_mantissa_bits
    if value <= 0:
        return Scale(0, 0)
    excess = value.bit_length() - bits
    mantissa = round_shift(value, excess)
    if mantissa >> bits:  # rounding carried into a new bit
        mantissa >>= 1
        excess += 1
    return Scale(int(mantissa), exponent + excess)


def scale_from_int(value: int, params: AcceleratorParameters) -> Scale:
    """The exact (for up to ``scale_mantissa_bits`` significant bits) scale of a positive int."""
    return _normalise(int(value), 0, params)


def scale_from_float(value: float, params: AcceleratorParameters) -> Scale:
    """Nearest scale to a positive float (compile-time constants)."""
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"a scale must be a positive finite number, not {value!r}")
    mantissa, exponent = math.frexp(value)  # value = mantissa * 2**exponent, mantissa in [.5, 1)
    bits = params.scale_mantissa_bits
    return _normalise(round(mantissa * (1 << (bits + 8))), exponent - bits - 8, params)


def scale_multiply(a: Scale, b: Scale, params: AcceleratorParameters) -> Scale:
    """Product of two scales, rounded half up to ``scale_mantissa_bits``."""
    return _normalise(a.mantissa * b.mantissa, a.exponent + b.exponent, params)


def scale_to_float(scale: Scale) -> float:
    return math.ldexp(scale.mantissa, scale.exponent)


def apply_scale(values, scale: Scale, params: AcceleratorParameters) -> np.ndarray:
    """``round(values * scale)`` into the vector format: one multiply and one rounding shift."""
    product = np.asarray(values, dtype=np.int64) * scale.mantissa
    if scale.exponent >= 0:
        shifted = product << min(scale.exponent, _MAX_SHIFT - 20)
    else:
        shifted = round_shift(product, -scale.exponent)
    return saturate(shifted, params.vector_bits)


# Element-wise ---------------------------------------------------------------------------------


def multiply(a, b, params: AcceleratorParameters) -> np.ndarray:
    """Fixed-point product ``a * b`` in Q.F."""
    product = np.asarray(a, dtype=np.int64) * np.asarray(b, dtype=np.int64)
    return saturate(round_shift(product, params.frac_bits), params.vector_bits)


def add(a, b, params: AcceleratorParameters) -> np.ndarray:
    return saturate(np.asarray(a, dtype=np.int64) + b, params.vector_bits)


def subtract(a, b, params: AcceleratorParameters) -> np.ndarray:
    return saturate(np.asarray(a, dtype=np.int64) - b, params.vector_bits)


def one_minus(a, params: AcceleratorParameters) -> np.ndarray:
    return saturate(params.one - np.asarray(a, dtype=np.int64), params.vector_bits)


@cache
def sigmoid_table(params: AcceleratorParameters) -> np.ndarray:
    """``2**T + 1`` sigmoid samples in Q.F at the segment ends over ``[-range, +range]``."""
    count = 1 << params.sigmoid_table_bits
    points = -params.sigmoid_input_range + np.arange(count + 1) * (
        2 * params.sigmoid_input_range / count)
    table = np.floor(params.one / (1 + np.exp(-points)) + 0.5).astype(np.int64)
    table.setflags(write=False)
    return table


def sigmoid(x, params: AcceleratorParameters) -> np.ndarray:
    """Table sigmoid with linear interpolation; 0 below ``-range``, exactly 1 from ``+range``."""
    table = sigmoid_table(params)
    shift = params.sigmoid_segment_shift
    offset = np.asarray(x, dtype=np.int64) + params.sigmoid_input_range * params.one
    span = 2 * params.sigmoid_input_range * params.one
    inside = np.clip(offset, 0, span - 1)
    index = inside >> shift
    fraction = inside & ((1 << shift) - 1)
    low = table[index]
    result = low + round_shift((table[index + 1] - low) * fraction, shift)
    return np.where(offset < 0, table[0], np.where(offset >= span, params.one, result))


def silu(x, params: AcceleratorParameters) -> np.ndarray:
    """``x * sigmoid(x)`` in Q.F."""
    return multiply(x, sigmoid(x, params), params)


# Reciprocal square root -----------------------------------------------------------------------


@cache
def rsqrt_table(params: AcceleratorParameters) -> np.ndarray:
    """Seeds ``round(2**16 / sqrt((i + 1/2) / 2**T))`` for ``i < 2**T`` (the lower quarter is
    never addressed: normalised inputs lie in ``[1/4, 1)``)."""
    count = 1 << params.rsqrt_table_bits
    index = np.arange(count)
    table = np.floor(65536 / np.sqrt((np.maximum(index, count // 4) + 0.5) / count) + 0.5)
    table = table.astype(np.int64)
    table.setflags(write=False)
    return table


def rsqrt_scale(value: int, params: AcceleratorParameters) -> Scale:
    """``1 / sqrt(value)`` of a positive integer, as a :class:`Scale`.

    ``value`` is normalised by an even shift to ``w`` in ``[2**30, 2**32)``; the table gives a
    seed ``y ~ 2**30 / sqrt(w / 2**32)`` (Q.30) refined by Newton steps
    ``y <- y * (3 - w y**2) / 2`` with every product truncated to 64 bits.
    """
    value = int(value)
    if value <= 0:
        raise ValueError(f"rsqrt needs a positive value, not {value}")
    shift = value.bit_length() - 32
    shift += shift & 1
    normalised = value >> shift if shift >= 0 else value << -shift
    y = int(rsqrt_table(params)[normalised >> (32 - params.rsqrt_table_bits)]) << 14
    for _ in range(params.rsqrt_newton_steps):
        y_squared = (y * y) >> 30                      # Q.30, about 2**32 / w
        error = (normalised * y_squared) >> 32         # Q.30, about 1.0
        y = (y * ((3 << 30) - error)) >> 31            # Q.30
    # 1/sqrt(value) = (y / 2**30) / 2**16 / 2**(shift / 2)
    return _normalise(y, -46 - shift // 2, params)


# Norm and quantiser -----------------------------------------------------------------------------


def sum_of_squares(x, params: AcceleratorParameters) -> int:
    """``sum(min(x**2 >> square_shift, 2**S - 1))``, format Q.(2F - square_shift)."""
    x = np.asarray(x, dtype=np.int64)
    # |x| < 2**31 so x*x < 2**62: no int64 overflow before the shift.
    squares = np.minimum((x * x) >> params.square_shift, (1 << params.square_saturation_bits) - 1)
    return int(squares.sum())


def _norm_scale(x, epsilon_term: int, constant: Scale, params: AcceleratorParameters) -> Scale:
    return scale_multiply(rsqrt_scale(sum_of_squares(x, params) + epsilon_term, params),
                          constant, params)


def rmsnorm(x, weight, epsilon_term: int, constant: Scale,
            params: AcceleratorParameters) -> np.ndarray:
    """RMSNorm with weight: ``(x * weight) * r``, ``r = rsqrt(sum x**2 + eps n) * constant``.

    ``epsilon_term`` is ``round(eps * n * 2**G)`` and ``constant`` is ``sqrt(n) * 2**(G/2)`` with
    ``G = sum_of_squares_frac_bits``: both are compile-time constants (see the compiler).
    """
    return apply_scale(multiply(x, weight, params),
                       _norm_scale(x, epsilon_term, constant, params), params)


def quantize_activations(x, weight, epsilon_term: int, constant: Scale,
                         params: AcceleratorParameters) -> tuple[np.ndarray, Scale]:
    """A BitLinear's input side: int8 activations and the per-token output scale.

    ``u = x * weight``; ``m = max(max|u|, 1)``; ``q = round_half_away(127 u / m)`` through the
    reciprocal ``R = floor(127 * 2**(B + e) / m)`` (``e`` = bit length of ``m``,
    ``B = reciprocal_bits``). The output scale is ``rsqrt(sum x**2 + eps n) * constant * m`` where
    ``constant = sqrt(n) * 2**(G/2) * mean|W| / 127``: multiplying the matrix unit's integer
    result by it gives the BitLinear output in Q.F (the norm's rsqrt cancels out of ``q``).
    """
    u = multiply(x, weight, params)
    magnitude = np.abs(u)
    largest = max(int(magnitude.max(initial=0)), 1)
    shift = params.reciprocal_bits + largest.bit_length()
    reciprocal = (params.activation_max << shift) // largest
    levels = np.minimum(round_shift(magnitude * reciprocal, shift), params.activation_max)
    q = np.where(u < 0, -levels, levels).astype(np.int8)
    scale = scale_multiply(_norm_scale(x, epsilon_term, constant, params),
                           scale_from_int(largest, params), params)
    return q, scale
