""":mod:`tern_fpga.contracts.numerics` on batches of rows, for the batched run
(:mod:`tern_fpga.sim.golden.batched_run`).

Each method computes, for a ``[rows, length]`` ``np.int64`` array, what the function of
:mod:`~tern_fpga.contracts.numerics` of the same name computes for each row, with the same
integer operations in the same order, so the bits are the same (``tests/sim/
test_golden_batched_run.py`` pins each one to the definition on random and extreme inputs). What
differs is how many NumPy calls it takes: fewer, written into the vector memory directly where
the rows are one view of it, and one call for all the rows of a batch.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from tern_fpga.contracts import numerics
from tern_fpga.contracts.numerics import Scale
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.sim.golden.scale_arithmetic import ScaleArithmetic

__all__ = ["BatchedNumerics"]

# numerics.apply_scale's largest left shift and round_shift's largest right shift.
_MAX_LEFT_SHIFT, _MAX_RIGHT_SHIFT = 42, 62


@cache
def _sigmoid_segments(params: AcceleratorParameters) -> tuple[np.ndarray, np.ndarray]:
    """Each segment's start value and rise, from ``numerics.sigmoid_table``; one more segment
    past the last, starting at 1 and flat, for the inputs at and above the range."""
    table = numerics.sigmoid_table(params)
    starts = np.append(table[:-1], params.one)
    rises = np.append(np.diff(table), 0)
    return starts, rises


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
        self._sigmoid_starts, self._sigmoid_rises = _sigmoid_segments(params)
        self._segment_shift = params.sigmoid_segment_shift
        self._segment_half = np.int64((1 << params.sigmoid_segment_shift) >> 1)   # 0 for 0
        self._fraction_mask = np.int64((1 << params.sigmoid_segment_shift) - 1)
        self._reciprocal_roots: dict[int, Scale] = {}
        self.scales = ScaleArithmetic(params)

    # Each function returns its result in ``out`` where one is given (a view of the vector
    # memory: one NumPy call fewer than a copy), else in a new array.

    def saturate(self, values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Clamps ``values`` in place, or into ``out``."""
        np.minimum(values, self._high, out=values)
        return np.maximum(values, self._low, out=values if out is None else out)

    def multiply(self, a: np.ndarray, b: np.ndarray, out=None) -> np.ndarray:
        product = a * b
        product += self._frac_half
        product >>= self._frac
        return self.saturate(product, out)

    def add(self, a: np.ndarray, b: np.ndarray, out=None) -> np.ndarray:
        return self.saturate(a + b, out)

    def subtract(self, a: np.ndarray, b: np.ndarray, out=None) -> np.ndarray:
        return self.saturate(a - b, out)

    def one_minus(self, a: np.ndarray, out=None) -> np.ndarray:
        return self.saturate(self._one - a, out)

    def sigmoid(self, x: np.ndarray, out=None) -> np.ndarray:
        """An input below the range lands on the first segment's start with no fraction, one
        at or above it on the extra flat segment: the values ``numerics.sigmoid`` gives them."""
        offset = np.minimum(x, self._reach)
        np.maximum(offset, -self._reach, out=offset)
        offset += self._reach
        index = offset >> self._segment_shift
        offset &= self._fraction_mask
        rise = self._sigmoid_rises[index]
        rise *= offset
        rise += self._segment_half
        rise >>= self._segment_shift
        return np.add(self._sigmoid_starts[index], rise, out=out)

    def silu(self, x: np.ndarray, out=None) -> np.ndarray:
        return self.multiply(x, self.sigmoid(x), out)

    def sums_of_squares(self, x: np.ndarray) -> list[int]:
        """``numerics.sum_of_squares`` of each row."""
        squares = x * x
        squares >>= self._square_shift
        np.minimum(squares, self._square_max, out=squares)
        return [int(squares.sum())] if len(squares) == 1 else squares.sum(axis=1).tolist()

    def norm_scale(self, sum_of_squares: int, epsilon_term: int, constant: Scale) -> Scale:
        """``rsqrt(sum_of_squares + epsilon_term) * constant``. The reciprocal square root is
        remembered: the QUANTs of one input share it, and it is Python integer arithmetic."""
        value = sum_of_squares + epsilon_term
        root = self._reciprocal_roots.get(value)
        if root is None:
            if len(self._reciprocal_roots) > 4096:
                self._reciprocal_roots.clear()
            root = self._reciprocal_roots[value] = self.scales.rsqrt(value)
        return self.scales.multiply(root, constant)

    def apply_scales(self, values: np.ndarray, scales: list[Scale], out=None) -> np.ndarray:
        """``numerics.apply_scale`` of row ``i`` by ``scales[i]``."""
        if len(scales) == 1 or len(set(scales)) == 1:
            mantissa, exponent = scales[0]
            product = values * mantissa
            if exponent >= 0:
                product <<= min(exponent, _MAX_LEFT_SHIFT)
            else:
                shift = min(-exponent, _MAX_RIGHT_SHIFT)
                product += 1 << (shift - 1)
                product >>= shift
            return self.saturate(product, out)
        mantissas = np.array([[s.mantissa] for s in scales], np.int64)
        left = np.array([[min(max(s.exponent, 0), _MAX_LEFT_SHIFT)] for s in scales], np.int64)
        right = [min(max(-s.exponent, 0), _MAX_RIGHT_SHIFT) for s in scales]
        halves = np.array([[1 << (r - 1) if r else 0] for r in right], np.int64)
        product = values * mantissas
        product <<= left
        product += halves
        product >>= np.array(right, np.int64)[:, None]
        return self.saturate(product, out)

    def quantize(self, x: np.ndarray, weight: np.ndarray, out: np.ndarray) -> list[int]:
        """The int8 activations of ``numerics.quantize_activations`` into ``out`` (float32 for
        the matrix product: exact), and each row's ``max(max|u|, 1)``, from which its scale
        follows."""
        u = self.multiply(x, weight)
        magnitude = np.abs(u)
        peaks = [int(magnitude.max())] if len(magnitude) == 1 else \
            magnitude.max(axis=1).tolist()
        largest = [max(m, 1) for m in peaks]
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
        # u's sign on each level (a level of zero where u is zero: its magnitude rounds to 0).
        np.copysign(magnitude, u, out=out, casting="unsafe")
        return largest
