""":mod:`tern_fpga.contracts.numerics` on batches of rows, for the batched run
(:mod:`tern_fpga.sim.golden.batched_run`).

Each method computes, for a ``[rows, length]`` ``np.int64`` array, what the function of
:mod:`~tern_fpga.contracts.numerics` of the same name computes for each row, with the same
integer operations in the same order, so the bits are the same (``tests/sim/
test_golden_batched_run.py`` pins each one to the definition on random and extreme inputs). What
differs is how many NumPy calls it takes, each on vectors of a few hundred elements where the
call costs more than the arithmetic: one call for all the rows of a batch; results written into
the vector memory directly where the rows are one view of it; constants held as 0-d arrays (the
cheapest operand a ufunc takes); a saturation as one ``clip`` ufunc; the sigmoid read from a
table of every input in its range; and no clamp of the quantiser's levels, which a bound proves
never exceed ``activation_max`` (see ``__init__``).
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
# The ufunc np.clip calls, without np.clip's Python wrapper (which costs ten times the clamp).
_clip = np._core.umath.clip
# Inputs of the sigmoid table; past this many the segments are interpolated instead.
_SIGMOID_TABLE_LIMIT = 1 << 22


@cache
def _sigmoid_segments(params: AcceleratorParameters) -> tuple[np.ndarray, np.ndarray]:
    """Each segment's start value and rise, from ``numerics.sigmoid_table``; one more segment
    past the last, starting at 1 and flat, for the inputs at and above the range."""
    table = numerics.sigmoid_table(params)
    starts = np.append(table[:-1], params.one)
    rises = np.append(np.diff(table), 0)
    return starts, rises


@cache
def _sigmoid_of_every_input(params: AcceleratorParameters) -> np.ndarray | None:
    """``numerics.sigmoid(x)`` for every ``x`` from ``-range`` to ``+range`` (in Q.F), indexed
    by ``x + range``, as int32 (8 MiB for the presets); ``None`` where it would be too large.
    Outside the range the definition gives the value at the nearer end, so a clipped input
    reads the right value."""
    reach = params.sigmoid_input_range * params.one
    if 2 * reach + 1 > _SIGMOID_TABLE_LIMIT or params.one >= 1 << 31:
        return None
    table = numerics.sigmoid(np.arange(-reach, reach + 1, dtype=np.int64), params)
    table = table.astype(np.int32)
    table.setflags(write=False)
    return table


class BatchedNumerics:
    """The row-batched arithmetic for one parameter set."""

    def __init__(self, params: AcceleratorParameters, sigmoid_table: bool = True):
        self.params = params
        high = (1 << (params.vector_bits - 1)) - 1
        self._high, self._low = np.array(high, np.int64), np.array(-high - 1, np.int64)
        self._frac = np.array(params.frac_bits, np.int64)
        self._frac_half = np.array(1 << (params.frac_bits - 1), np.int64)
        self._one = np.array(params.one, np.int64)
        self._square_shift = np.array(params.square_shift, np.int64)
        self._square_max = np.array((1 << params.square_saturation_bits) - 1, np.int64)
        reach = params.sigmoid_input_range * params.one
        self._reach = np.array(reach, np.int64)
        self._zero, self._span = np.array(0, np.int64), np.array(2 * reach, np.int64)
        self._sigmoid_table = _sigmoid_of_every_input(params) if sigmoid_table else None
        self._sigmoid_starts, self._sigmoid_rises = _sigmoid_segments(params)
        self._segment_shift = np.array(params.sigmoid_segment_shift, np.int64)
        self._segment_half = np.array((1 << params.sigmoid_segment_shift) >> 1, np.int64)
        self._fraction_mask = np.array((1 << params.sigmoid_segment_shift) - 1, np.int64)
        # m = max|u| <= 2**(vector_bits - 1) has at most vector_bits bits, so the quantiser's
        # shift s = reciprocal_bits + bit_length(m) is never cut to 62; then |u| <= m and
        # R = floor(A * 2**s / m) give |u| * R <= A * 2**s (no int64 overflow where that is
        # below 2**63), and the rounding lands at most on A: numerics' min(., A) is a no-op.
        most = params.reciprocal_bits + params.vector_bits
        self._levels_bounded = most <= _MAX_RIGHT_SHIFT and params.activation_max << most < 1 << 63
        self._activation_max = np.array(params.activation_max, np.int64)
        # Per-call scalars (a mantissa, a rounding half, a shift) go into 0-d arrays: a ufunc
        # converts a Python int operand at about twice the cost of the whole operation.
        self._factor, self._half, self._shift = (np.array(0, np.int64) for _ in range(3))
        self._ones: dict[int, np.ndarray] = {}
        self._reciprocal_roots: dict[int, Scale] = {}
        self.scales = ScaleArithmetic(params)

    # Each function returns its result in ``out`` where one is given (a view of the vector
    # memory: one NumPy call fewer than a copy), else in a new array.

    def saturate(self, values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Clamps ``values`` in place, or into ``out``."""
        return _clip(values, self._low, self._high, out=values if out is None else out)

    def multiply(self, a: np.ndarray, b: np.ndarray, out=None) -> np.ndarray:
        product = np.multiply(a, b)
        np.add(product, self._frac_half, out=product)
        np.right_shift(product, self._frac, out=product)
        return self.saturate(product, out)

    def add(self, a: np.ndarray, b: np.ndarray, out=None) -> np.ndarray:
        return self.saturate(np.add(a, b), out)

    def subtract(self, a: np.ndarray, b: np.ndarray, out=None) -> np.ndarray:
        return self.saturate(np.subtract(a, b), out)

    def one_minus(self, a: np.ndarray, out=None) -> np.ndarray:
        return self.saturate(np.subtract(self._one, a), out)

    def sigmoid(self, x: np.ndarray, out=None) -> np.ndarray:
        values = self._sigmoid_values(x)
        if out is None:
            return values.astype(np.int64)
        np.copyto(out, values)
        return out

    def silu(self, x: np.ndarray, out=None) -> np.ndarray:
        return self.multiply(x, self._sigmoid_values(x), out)

    def _sigmoid_values(self, x: np.ndarray) -> np.ndarray:
        """``numerics.sigmoid(x)``, int32 from the table or int64 from the segments. Past the
        range the table's ends, the segments' first start (no fraction) and the extra flat
        segment give the values the definition gives."""
        offset = np.add(x, self._reach)
        _clip(offset, self._zero, self._span, out=offset)
        if self._sigmoid_table is not None:
            return self._sigmoid_table.take(offset, mode="clip")
        index = np.right_shift(offset, self._segment_shift)
        np.bitwise_and(offset, self._fraction_mask, out=offset)
        rise = self._sigmoid_rises.take(index)
        np.multiply(rise, offset, out=rise)
        np.add(rise, self._segment_half, out=rise)
        np.right_shift(rise, self._segment_shift, out=rise)
        return np.add(self._sigmoid_starts.take(index), rise, out=rise)

    def sums_of_squares(self, x: np.ndarray) -> list[int]:
        """``numerics.sum_of_squares`` of each row (int64 sums, wrapping as the definition's).
        Rows that are one row broadcast (a group's instructions reading the same input) are
        summed once."""
        if len(x) > 1 and x.strides[0] == 0:
            return self.sums_of_squares(x[:1]) * len(x)
        squares = np.multiply(x, x)
        np.right_shift(squares, self._square_shift, out=squares)
        np.minimum(squares, self._square_max, out=squares)
        length = squares.shape[1]
        ones = self._ones.get(length)
        if ones is None:
            ones = self._ones[length] = np.ones(length, np.int64)
        if len(squares) == 1:
            return [int(np.dot(squares[0], ones))]
        return np.dot(squares, ones).tolist()

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
        """``numerics.apply_scale`` of row ``i`` of ``values`` (``np.int64``) by ``scales[i]``."""
        if len(scales) == 1 or len(set(scales)) == 1:
            mantissa, exponent = scales[0]
            self._factor[()] = mantissa
            product = np.multiply(values, self._factor)
            if exponent >= 0:
                self._shift[()] = min(exponent, _MAX_LEFT_SHIFT)
                np.left_shift(product, self._shift, out=product)
            else:
                shift = min(-exponent, _MAX_RIGHT_SHIFT)
                self._half[()], self._shift[()] = 1 << (shift - 1), shift
                np.add(product, self._half, out=product)
                np.right_shift(product, self._shift, out=product)
            return self.saturate(product, out)
        mantissas = np.array([[s.mantissa] for s in scales], np.int64)
        left = np.array([[min(max(s.exponent, 0), _MAX_LEFT_SHIFT)] for s in scales], np.int64)
        right = [min(max(-s.exponent, 0), _MAX_RIGHT_SHIFT) for s in scales]
        halves = np.array([[1 << (r - 1) if r else 0] for r in right], np.int64)
        product = np.multiply(values, mantissas)
        np.left_shift(product, left, out=product)
        np.add(product, halves, out=product)
        np.right_shift(product, np.array(right, np.int64)[:, None], out=product)
        return self.saturate(product, out)

    def quantize(self, x: np.ndarray, weight: np.ndarray, out: np.ndarray) -> list[int]:
        """The int8 activations of ``numerics.quantize_activations`` into ``out`` (float32 for
        the matrix product: exact), and each row's ``max(max|u|, 1)``, from which its scale
        follows."""
        u = self.multiply(x, weight)
        magnitude = np.abs(u)
        if len(magnitude) == 1:
            largest = [max(int(magnitude[0, magnitude[0].argmax()]), 1)]
        else:
            largest = [max(m, 1) for m in magnitude.max(axis=1).tolist()]
        exact_shifts = [self.params.reciprocal_bits + m.bit_length() for m in largest]
        reciprocals = [(self.params.activation_max << s) // m
                       for s, m in zip(exact_shifts, largest)]
        shifts = [min(s, _MAX_RIGHT_SHIFT) for s in exact_shifts]
        if len(largest) == 1:
            self._factor[()], self._half[()] = reciprocals[0], 1 << (shifts[0] - 1)
            self._shift[()] = shifts[0]
            np.multiply(magnitude, self._factor, out=magnitude)
            np.add(magnitude, self._half, out=magnitude)
            np.right_shift(magnitude, self._shift, out=magnitude)
        else:
            np.multiply(magnitude, np.array(reciprocals, np.int64)[:, None], out=magnitude)
            np.add(magnitude, np.array([1 << (s - 1) for s in shifts], np.int64)[:, None],
                   out=magnitude)
            np.right_shift(magnitude, np.array(shifts, np.int64)[:, None], out=magnitude)
        if not self._levels_bounded:
            np.minimum(magnitude, self._activation_max, out=magnitude)
        # u's sign on each level (a level of zero where u is zero), then float32.
        np.multiply(magnitude, np.sign(u), out=magnitude)
        out[...] = magnitude
        return largest
