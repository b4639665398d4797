""":mod:`tern_fpga.contracts.numerics` on batches of rows, for the batched run
(:mod:`tern_fpga.sim.golden.batched_run`).

Each method computes, for a ``[rows, length]`` ``np.int64`` array, what the function of
:mod:`~tern_fpga.contracts.numerics` of the same name computes for each row, with the same
integer operations in the same order, so the bits are the same (``tests/sim/
test_golden_batched_run.py`` pins each one to the definition on random and extreme inputs). What
differs is how many NumPy calls it takes: fewer, on preallocated arrays, and one call for all
the rows of a batch; the sigmoid is one table lookup over every input of its interpolated range.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from tern_fpga.contracts import numerics
from tern_fpga.contracts.numerics import Scale
from tern_fpga.contracts.params import AcceleratorParameters

__all__ = ["BatchedNumerics"]

# numerics.apply_scale's largest left shift and round_shift's largest right shift.
_MAX_LEFT_SHIFT, _MAX_RIGHT_SHIFT = 42, 62
# A sigmoid table over every input of the interpolated range, up to this many entries (16 MiB).
_MAX_SIGMOID_TABLE = 1 << 21


@cache
def _sigmoid_everywhere(params: AcceleratorParameters) -> np.ndarray | None:
    """``numerics.sigmoid`` of every input from ``-range - 1`` to ``range``, in Q.F: below that
    span it equals its first entry, above it its last (``None`` if the span is too large)."""
    reach = params.sigmoid_input_range * params.one
    if 2 * reach + 2 > _MAX_SIGMOID_TABLE + 2:
        return None
    table = numerics.sigmoid(np.arange(-reach - 1, reach + 1, dtype=np.int64), params)
    table.setflags(write=False)
    return table


class BatchedNumerics:
    """The row-batched arithmetic for one parameter set."""

    def __init__(self, params: AcceleratorParameters):
        self.params = params
        high = (1 << (params.vector_bits - 1)) - 1
        self._high, self._low = np.int64(high), np.int64(-high - 1)
        self._frac, self._frac_half = params.frac_bits, np.int64(1 << (params.frac_bits - 1))
        self._one = np.int64(params.one)
        self._square_shift = params.square_shift
        self._square_max = np.int64((1 << params.square_saturation_bits) - 1)
        self._reach = params.sigmoid_input_range * params.one
        self._sigmoid_table = _sigmoid_everywhere(params)
        self._norm_scales: dict[tuple[int, Scale], Scale] = {}

    def saturate(self, values: np.ndarray) -> np.ndarray:
        """In place."""
        np.minimum(values, self._high, out=values)
        return np.maximum(values, self._low, out=values)

    def multiply(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        product = a * b
        product += self._frac_half
        product >>= self._frac
        return self.saturate(product)

    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.saturate(a + b)

    def subtract(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.saturate(a - b)

    def one_minus(self, a: np.ndarray) -> np.ndarray:
        return self.saturate(self._one - a)

    def sigmoid(self, x: np.ndarray) -> np.ndarray:
        if self._sigmoid_table is None:
            return numerics.sigmoid(x, self.params)
        index = np.minimum(x, self._reach)
        np.maximum(index, -self._reach - 1, out=index)
        index += self._reach + 1
        return self._sigmoid_table[index]

    def silu(self, x: np.ndarray) -> np.ndarray:
        return self.multiply(x, self.sigmoid(x))

    def sums_of_squares(self, x: np.ndarray) -> list[int]:
        """``numerics.sum_of_squares`` of each row."""
        squares = x * x
        squares >>= self._square_shift
        np.minimum(squares, self._square_max, out=squares)
        return squares.sum(axis=1).tolist()

    def norm_scale(self, sum_of_squares: int, epsilon_term: int, constant: Scale) -> Scale:
        """``rsqrt(sum_of_squares + epsilon_term) * constant``, remembered: the QUANTs of one
        input share it, and ``rsqrt_scale`` is Python integer arithmetic."""
        key = (sum_of_squares + epsilon_term, constant)
        scale = self._norm_scales.get(key)
        if scale is None:
            if len(self._norm_scales) > 4096:
                self._norm_scales.clear()
            scale = numerics.scale_multiply(numerics.rsqrt_scale(key[0], self.params), constant,
                                            self.params)
            self._norm_scales[key] = scale
        return scale

    def apply_scales(self, values: np.ndarray, scales: list[Scale]) -> np.ndarray:
        """``numerics.apply_scale`` of row ``i`` by ``scales[i]``."""
        if all(scale == scales[0] for scale in scales):
            mantissa, exponent = scales[0]
            product = values * mantissa
            if exponent >= 0:
                product <<= min(exponent, _MAX_LEFT_SHIFT)
            else:
                shift = min(-exponent, _MAX_RIGHT_SHIFT)
                product += 1 << (shift - 1)
                product >>= shift
            return self.saturate(product)
        mantissas = np.array([[s.mantissa] for s in scales], np.int64)
        left = np.array([[min(max(s.exponent, 0), _MAX_LEFT_SHIFT)] for s in scales], np.int64)
        right = [min(max(-s.exponent, 0), _MAX_RIGHT_SHIFT) for s in scales]
        halves = np.array([[1 << (r - 1) if r else 0] for r in right], np.int64)
        product = values * mantissas
        product <<= left
        product += halves
        product >>= np.array(right, np.int64)[:, None]
        return self.saturate(product)

    def quantize(self, x: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """The int8 activations (as ``np.int64``) of ``numerics.quantize_activations`` and each
        row's ``max(max|u|, 1)``, from which its scale follows."""
        u = self.multiply(x, weight)
        magnitude = np.abs(u)
        largest = [max(m, 1) for m in magnitude.max(axis=1).tolist()]
        exact_shifts = [self.params.reciprocal_bits + m.bit_length() for m in largest]
        reciprocals = [(self.params.activation_max << s) // m
                       for s, m in zip(exact_shifts, largest)]
        shifts = [min(s, _MAX_RIGHT_SHIFT) for s in exact_shifts]
        if len(largest) == 1:
            magnitude *= reciprocals[0]
            magnitude += 1 << (shifts[0] - 1)
            magnitude >>= shifts[0]
        else:
            magnitude *= np.array(reciprocals, np.int64)[:, None]
            magnitude += np.array([1 << (s - 1) for s in shifts], np.int64)[:, None]
            magnitude >>= np.array(shifts, np.int64)[:, None]
        np.minimum(magnitude, self.params.activation_max, out=magnitude)
        magnitude *= np.sign(u)      # zero where u is: its magnitude rounds to zero
        return magnitude, largest
