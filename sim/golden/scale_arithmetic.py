"""The per-token scale arithmetic of :mod:`tern_fpga.contracts.numerics` (``scale_multiply``,
``scale_from_int``, ``rsqrt_scale``) for the batched run: the same Python integer operations,
with the parameters and the reciprocal-square-root seeds looked up once instead of at every
call (the golden model does about fifty of these a token, and the lookups were most of their
cost). ``tests/sim/test_golden_batched_run.py`` pins each to its definition.
"""

from __future__ import annotations

from tern_fpga.contracts import numerics
from tern_fpga.contracts.numerics import Scale
from tern_fpga.contracts.params import AcceleratorParameters

__all__ = ["ScaleArithmetic"]

_MAX_SHIFT = 62     # numerics.round_shift's largest right shift


class ScaleArithmetic:
    """Scales for one parameter set."""

    def __init__(self, params: AcceleratorParameters):
        self._bits = params.scale_mantissa_bits
        self._seeds = numerics.rsqrt_table(params).tolist()
        self._seed_shift = 32 - params.rsqrt_table_bits
        self._newton_steps = params.rsqrt_newton_steps

    def normalise(self, value: int, exponent: int) -> Scale:
        """``value * 2**exponent`` rounded half up to a normalised mantissa."""
        if value <= 0:
            return Scale(0, 0)
        excess = value.bit_length() - self._bits
        if excess > 0:
            shift = min(excess, _MAX_SHIFT)
            mantissa = (value + (1 << (shift - 1))) >> shift
        else:
            mantissa = value << -excess
        if mantissa >> self._bits:      # rounding carried into a new bit
            mantissa >>= 1
            excess += 1
        return Scale(mantissa, exponent + excess)

    def multiply(self, a: Scale, b: Scale) -> Scale:
        return self.normalise(a[0] * b[0], a[1] + b[1])

    def from_int(self, value: int) -> Scale:
        return self.normalise(value, 0)

    def rsqrt(self, value: int) -> Scale:
        """``1 / sqrt(value)`` of a positive integer (``numerics.rsqrt_scale``)."""
        if value <= 0:
            raise ValueError(f"rsqrt needs a positive value, not {value}")
        shift = value.bit_length() - 32
        shift += shift & 1
        normalised = value >> shift if shift >= 0 else value << -shift
        y = self._seeds[normalised >> self._seed_shift] << 14
        for _ in range(self._newton_steps):
            y_squared = (y * y) >> 30
            error = (normalised * y_squared) >> 32
            y = (y * ((3 << 30) - error)) >> 31
        return self.normalise(y, -46 - shift // 2)
