"""BitLinear's quantisation formulas against a direct NumPy computation of MODEL.md's."""

import numpy as np
import pytest
import torch

from tern_fpga.quant.bitlinear import (
    BITLINEAR_NORM_EPS,
    BitLinear,
    quantize_activations,
    rms_norm,
    round_half_away,
    ternarize,
)

from support.bitlinear import numpy_bitlinear, numpy_round_half_away


def test_round_half_away_ties():
    x = torch.tensor([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 0.49999999999999994, -0.0],
                     dtype=torch.float64)
    expected = torch.tensor([-4.0, -3.0, -2.0, -1.0, 1.0, 2.0, 3.0, 4.0, 0.0, 0.0],
                            dtype=torch.float64)
    assert torch.equal(round_half_away(x), expected)
    # In float32 the largest double below 0.5 is 0.5 itself, a tie.
    assert round_half_away(x.float())[8] == 1.0
    # torch.round differs exactly at the ties: that is why the helper exists.
    assert not torch.equal(torch.round(x), expected)


def test_round_half_away_random():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(10_000, generator=generator, dtype=torch.float64) * 300
    x[::7] = torch.round(x[::7]) + 0.5  # exact ties, both signs
    assert torch.equal(round_half_away(x), torch.from_numpy(numpy_round_half_away(x.numpy())))


def test_quantize_activations_ties_and_floor():
    # max|y| = 127 gives s_x = 1 exactly, so the row's values are the scaled values themselves.
    y = torch.tensor([[127.0, 2.5, -3.5, 0.5, -0.5, 1.25, -126.5],
                      [1e-6, -2e-6, 5e-7, 0.0, 0.0, 0.0, 0.0]])
    y_q, s_x = quantize_activations(y)
    assert y_q.dtype == torch.int8
    assert s_x.shape == (2, 1)
    assert s_x[0, 0] == 1.0
    assert s_x[1, 0] == np.float32(127) / np.float32(1e-5)  # the 1e-5 floor
    assert y_q[0].tolist() == [127, 3, -4, 1, -1, 1, -127]
    expected_small = numpy_round_half_away(y[1].numpy() * s_x[1].numpy())
    assert y_q[1].tolist() == expected_small.tolist() == [13, -25, 6, 0, 0, 0, 0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_quantize_activations_random(dtype):
    generator = torch.Generator().manual_seed(2)
    y = (torch.randn(64, 48, generator=generator) * torch.rand(64, 1, generator=generator) * 5)
    y = y.to(dtype)
    y_q, s_x = quantize_activations(y)
    y_np = y.numpy()
    # Same IEEE operations in the same dtype: the results are bit-identical.
    s_np = (np.asarray(127, y_np.dtype) /
            np.maximum(np.abs(y_np).max(axis=-1, keepdims=True), np.asarray(1e-5, y_np.dtype)))
    assert np.array_equal(s_x.numpy(), s_np)
    assert np.array_equal(y_q.numpy(), np.clip(numpy_round_half_away(y_np * s_np), -128, 127))
    assert y_q.abs().amax(dim=-1).eq(127).all()  # the largest value of every row hits 127


def test_ternarize_ties_to_even_and_clamp():
    # mean|W| = 1 gives s_w = 1: 0.5 -> 0 and -0.5 -> 0 (ties to even), 1.5 -> 2 -> clamp 1.
    weight = torch.tensor([[0.5, -0.5, 1.5], [-1.5, 1.0, -1.0]])
    w_t, s_w = ternarize(weight)
    assert w_t.dtype == torch.int8
    assert s_w == 1.0
    assert w_t.tolist() == [[0, 0, 1], [-1, 1, -1]]


def test_ternarize_floor():
    weight = torch.full((4, 4), 2e-6)
    weight[0, 0] = -3e-6
    w_t, s_w = ternarize(weight)
    assert s_w == pytest.approx(1e5)  # mean|W| is below the 1e-5 floor
    assert w_t.eq(0).all()


def test_ternarize_random():
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(40, 24, generator=generator, dtype=torch.float64) * 0.02
    w_t, s_w = ternarize(weight)
    s_np = 1 / max(np.abs(weight.numpy()).mean(), 1e-5)
    assert s_w == s_np
    assert np.array_equal(w_t.numpy(), np.clip(np.round(weight.numpy() * s_np), -1, 1))
    assert set(w_t.unique().tolist()) == {-1, 0, 1}


def test_rms_norm_eps():
    generator = torch.Generator().manual_seed(4)
    # Rows whose mean square is near 1e-6, where the eps matters.
    x = torch.randn(8, 32, generator=generator, dtype=torch.float64) * 1e-3
    weight = torch.rand(32, generator=generator, dtype=torch.float64) + 0.5
    x_np, w_np = x.numpy(), weight.numpy()

    def reference(eps):
        return x_np / np.sqrt(np.mean(x_np ** 2, axis=-1, keepdims=True) + eps) * w_np

    result = rms_norm(x, weight, 1e-6).numpy()
    np.testing.assert_allclose(result, reference(1e-6), rtol=1e-14)
    assert np.abs(result - reference(1e-8)).max() > 1e-2
    assert BitLinear(32, 8).norm.eps == BITLINEAR_NORM_EPS == 1e-6


def test_rms_norm_float32_computed_in_float32():
    x = torch.randn(4, 16, dtype=torch.bfloat16)
    assert rms_norm(x, torch.ones(16), 1e-6).dtype == torch.bfloat16


def test_bitlinear_forward_matches_integer_path():
    torch.manual_seed(5)
    layer = BitLinear(48, 20).double()
    with torch.no_grad():
        layer.norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 7, 48, dtype=torch.float64)
    expected, *_ = numpy_bitlinear(x.numpy(), layer.norm.weight.detach().numpy(),
                                   layer.weight.detach().numpy())
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    assert "weight" in dict(layer.named_parameters()) and "norm.weight" in layer.state_dict()
    assert "bias" not in layer.state_dict()


def test_bitlinear_straight_through_gradients():
    torch.manual_seed(6)
    layer = BitLinear(16, 12).double()
    x = torch.randn(5, 16, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(5, 12, dtype=torch.float64)
    layer(x).backward(grad_out)
    _, y_q, s_x, *_ = numpy_bitlinear(x.detach().numpy(), np.ones(16),
                                      layer.weight.detach().numpy())
    # The STE passes the gradient through the quantisers unchanged: dL/dW = g^T (y_q / s_x).
    np.testing.assert_allclose(layer.weight.grad.numpy(), grad_out.numpy().T @ (y_q / s_x),
                               rtol=1e-12)
    assert x.grad.abs().sum() > 0 and layer.norm.weight.grad.abs().sum() > 0
