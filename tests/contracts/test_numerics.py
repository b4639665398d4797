"""The integer numerics against exact or float references (tern_fpga/contracts/numerics.py)."""

import math
import zlib
from fractions import Fraction

import numpy as np
import pytest

from tern_fpga.contracts import numerics
from tern_fpga.contracts.numerics import Scale
from tern_fpga.contracts.params import PRESETS

PARAMS = PRESETS["demo"]


@pytest.fixture
def rng(request):
    # zlib.crc32, not hash(): str hashes change between processes (PYTHONHASHSEED).
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


def test_round_shift_is_floor_plus_half(rng):
    values = rng.integers(-2**40, 2**40, 5000)
    for shift in (1, 7, 16, 33):
        expected = [math.floor(Fraction(int(v), 2**shift) + Fraction(1, 2)) for v in values[:300]]
        assert numerics.round_shift(values[:300], shift).tolist() == expected
    assert numerics.round_shift(5, -3) == 40


def test_saturate_clamps_at_both_ends():
    values = np.array([2**40, -2**40, 5, -(2**31), 2**31 - 1, 2**31], dtype=np.int64)
    assert numerics.saturate(values, 32).tolist() == [2**31 - 1, -2**31, 5, -2**31,
                                                      2**31 - 1, 2**31 - 1]


def test_scales_multiply_and_apply_exactly(rng):
    bits = PARAMS.scale_mantissa_bits
    for _ in range(200):
        value = float(np.exp(rng.uniform(-30, 30)))
        scale = numerics.scale_from_float(value, PARAMS)
        assert 2 ** (bits - 1) <= scale.mantissa < 2 ** bits
        assert abs(numerics.scale_to_float(scale) / value - 1) <= 2.0 ** -bits
    a, b = Scale(40000, -20), Scale(50000, 3)
    product = numerics.scale_multiply(a, b, PARAMS)
    exact = Fraction(40000 * 50000) * Fraction(2) ** -17
    assert abs(Fraction(product.mantissa) * Fraction(2) ** product.exponent / exact - 1) < 2**-15
    values = rng.integers(-2**30, 2**30, 300)
    scale = Scale(45678, -27)
    expected = [max(-2**31, min(2**31 - 1, math.floor(Fraction(int(v) * 45678, 2**27)
                                                      + Fraction(1, 2)))) for v in values]
    assert numerics.apply_scale(values, scale, PARAMS).tolist() == expected
    assert numerics.apply_scale([2**30], Scale(65535, 10), PARAMS).tolist() == [2**31 - 1]


def test_rsqrt_relative_error_below_two_to_minus_fifteen(rng):
    values = [int(v) for v in rng.integers(1, 2**62, 3000, dtype=np.int64)]
    values += [1, 2, 3, 4, 2**31, 2**32 - 1, 2**32, 2**33 + 1, 2**62 - 1]
    for v in values:
        scale = numerics.rsqrt_scale(v, PARAMS)
        assert abs(numerics.scale_to_float(scale) * math.sqrt(v) - 1) < 2.0 ** -15, v
    with pytest.raises(ValueError, match="positive"):
        numerics.rsqrt_scale(0, PARAMS)


def test_sigmoid_and_silu_error_bounds(rng):
    x = np.concatenate([rng.normal(0, 4, 20000), rng.uniform(-40, 40, 2000), [-16, 16, 0]])
    fixed = numerics.to_fixed(x, PARAMS)
    exact = 1 / (1 + np.exp(-numerics.from_fixed(fixed, PARAMS)))
    got = numerics.from_fixed(numerics.sigmoid(fixed, PARAMS), PARAMS)
    assert np.abs(got - exact).max() < 2.5e-4     # measured 1.96e-4 with 256 segments
    order = np.argsort(fixed)
    assert (np.diff(numerics.sigmoid(fixed[order], PARAMS)) >= 0).all()
    assert numerics.sigmoid([-(2**31)], PARAMS)[0] == 0
    assert numerics.sigmoid([2**31 - 1], PARAMS)[0] == PARAMS.one
    silu = numerics.from_fixed(numerics.silu(fixed, PARAMS), PARAMS)
    assert np.abs(silu - numerics.from_fixed(fixed, PARAMS) * exact).max() < 2e-3


def _norm_constants(n, extra=1.0, eps=1e-6):
    g = PARAMS.sum_of_squares_frac_bits
    return round(eps * n * 2.0**g), numerics.scale_from_float(math.sqrt(n) * 2 ** (g / 2) * extra,
                                                              PARAMS)


def test_rmsnorm_matches_float(rng):
    for n in (64, 128, 512):
        x = rng.normal(0, rng.uniform(0.1, 20), n)
        w = rng.normal(1, 0.3, n)
        xf, wf = numerics.to_fixed(x, PARAMS), numerics.to_fixed(w, PARAMS)
        got = numerics.from_fixed(numerics.rmsnorm(xf, wf, *_norm_constants(n), PARAMS), PARAMS)
        xr, wr = numerics.from_fixed(xf, PARAMS), numerics.from_fixed(wf, PARAMS)
        expected = xr / np.sqrt(np.mean(xr**2) + 1e-6) * wr
        assert np.abs(got - expected).max() < 1e-4 * np.abs(expected).max() + 2e-5


def test_quantize_activations_matches_the_model_formula(rng):
    flips = total = 0
    for n in (64, 256, 1000):
        x = rng.normal(0, rng.uniform(0.05, 10), n)
        w = rng.normal(1, 0.2, n)
        mean_abs_w = 0.37
        xf, wf = numerics.to_fixed(x, PARAMS), numerics.to_fixed(w, PARAMS)
        q, scale = numerics.quantize_activations(
            xf, wf, *_norm_constants(n, mean_abs_w / 127), PARAMS)
        xr, wr = numerics.from_fixed(xf, PARAMS), numerics.from_fixed(wf, PARAMS)
        y = xr / np.sqrt(np.mean(xr**2) + 1e-6) * wr
        scaled = y * 127 / np.abs(y).max()
        reference = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
        # u = x * w is rounded to Q.F before quantising (half an LSB each for u and for
        # m = max|u|), which moves 127 u / m by up to 2 * 127 / 2**(F+1) / m, and the
        # reciprocal's truncation by 127 / 2**B more: that close to a tie, either way is right.
        band = 127 / 2 ** PARAMS.frac_bits / np.abs(xr * wr).max() + \
            127 / 2 ** PARAMS.reciprocal_bits
        near_tie = np.abs(np.abs(scaled) - np.floor(np.abs(scaled)) - 0.5) < band
        flips += int((q != reference)[~near_tie].sum())
        total += n
        assert np.abs(q).max() == 127
        # The scale turns integer row sums back into the BitLinear's output (in Q.F).
        expected_scale = np.abs(y).max() / 127 * mean_abs_w * PARAMS.one
        assert abs(numerics.scale_to_float(scale) / expected_scale - 1) < 1e-4
    assert flips == 0, f"{flips} of {total} activations differ away from ties"


def test_quantize_all_zero_vector_gives_zero_activations():
    q, scale = numerics.quantize_activations(np.zeros(16, np.int64), np.full(16, 65536),
                                             *_norm_constants(16), PARAMS)
    assert not q.any() and scale.mantissa > 0


def test_sum_of_squares_saturates_instead_of_wrapping():
    n = PARAMS.max_features
    huge = np.full(n, 2**31 - 1, dtype=np.int64)
    total = numerics.sum_of_squares(huge, PARAMS)
    assert 0 < total < 2**62
    assert total == n * (2**PARAMS.square_saturation_bits - 1)
