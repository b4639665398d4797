"""BitLinear: the ternary-weight, int8-activation projection of the MatMul-free LM.

Every projection of the model (the LM head included) is a :class:`BitLinear` that owns its own
RMSNorm weight and has no bias. Training uses fake quantisation with the straight-through
estimator; the helpers :func:`quantize_activations` and :func:`ternarize` give the integer
values themselves, for the exporter and the golden model. The formulas are MODEL.md's:

    y   = rms_norm(x, norm_weight, 1e-6)
    s_x = 127 / max(max|y|, 1e-5)             per token
    y_q = clamp(round_half_away(y * s_x), -128, 127)
    s_w = 1 / max(mean|W|, 1e-5)              per tensor
    W_t = clamp(round_half_even(W * s_w), -1, 1)
    out = (y_q / s_x) @ (W_t / s_w)^T
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "BITLINEAR_NORM_EPS", "BitLinear", "RMSNorm", "quantize_activations", "rms_norm",
    "round_half_away", "ternarize",
]

# The fused kernel of the reference code is called without an eps, so its default applies,
# not the 1e-8 the module is built with (MODEL.md, "Two details").
BITLINEAR_NORM_EPS = 1e-6
ACTIVATION_SCALE_FLOOR = 1e-5
WEIGHT_SCALE_FLOOR = 1e-5


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # Norms and scales are computed in fp32 like the reference kernels, or in fp64 when the
    # model runs in fp64 (used to compare implementations without rounding flips).
    return torch.float64 if dtype == torch.float64 else torch.float32


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer, ties away from zero (the GPU kernel's ``round``).

    Exact for every finite float: the fraction ``x - trunc(x)`` is computed without rounding,
    unlike ``floor(|x| + 0.5)``, which rounds 0.49999999999999994 up.
    """
    whole = torch.trunc(x)
    fraction = x - whole
    return whole + torch.sign(x) * (fraction.abs() >= 0.5).to(x.dtype)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm over the last dimension: ``x / sqrt(mean(x^2) + eps) * weight``.

    Computed in fp32 (fp64 for fp64 input) and returned in ``x``'s dtype.
    """
    dtype = _compute_dtype(x.dtype)
    x_c = x.to(dtype)
    rstd = 1 / torch.sqrt(x_c.square().mean(dim=-1, keepdim=True) + eps)
    return (x_c * rstd * weight.to(dtype)).to(x.dtype)


def activation_scale(y: torch.Tensor) -> torch.Tensor:
    """``s_x = 127 / max(max|y|, 1e-5)`` per row (last dimension kept, size 1)."""
    # A true division: ``127.0 / tensor`` would compute ``reciprocal(tensor) * 127``, which
    # rounds differently; the exporter and golden model divide too.
    peak = y.abs().amax(dim=-1, keepdim=True).clamp(min=ACTIVATION_SCALE_FLOOR)
    return torch.div(peak.new_tensor(127.0), peak)


def weight_scale(weight: torch.Tensor) -> torch.Tensor:
    """``s_w = 1 / max(mean|W|, 1e-5)`` over the whole tensor (a 0-d tensor)."""
    mean = weight.abs().mean().clamp(min=WEIGHT_SCALE_FLOOR)
    return torch.div(mean.new_tensor(1.0), mean)


def quantize_activations(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Int8 activations of the (already normed) rows ``y``.

    Returns
    -------
    y_q : torch.Tensor
        ``int8``, same shape as ``y``: ``clamp(round_half_away(y * s_x), -128, 127)``.
    s_x : torch.Tensor
        Per-row scale, shape ``y.shape[:-1] + (1,)``, dtype of ``y``; ``y ~ y_q / s_x``.
    """
    s_x = activation_scale(y)
    y_q = round_half_away(y * s_x).clamp(-128, 127)
    return y_q.to(torch.int8), s_x


def ternarize(weight: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Ternary weights ``W_t`` in {-1, 0, 1} (``int8``) and the per-tensor scale ``s_w``.

    Rounds ties to even (``torch.round``), as the reference code does. ``W ~ W_t / s_w``.
    """
    s_w = weight_scale(weight)
    w_t = torch.round(weight * s_w).clamp(-1, 1)
    return w_t.to(torch.int8), float(s_w)


def _fake_quantize_activations(y: torch.Tensor) -> torch.Tensor:
    s_x = activation_scale(y)
    return round_half_away(y * s_x).clamp(-128, 127) / s_x


def _fake_ternarize(weight: torch.Tensor) -> torch.Tensor:
    s_w = weight_scale(weight)
    return torch.round(weight * s_w).clamp(-1, 1) / s_w


def straight_through(x: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
    """``quantized`` in the forward pass, identity gradient to ``x`` in the backward pass."""
    return x + (quantized - x).detach()


class RMSNorm(nn.Module):
    """RMSNorm with a learnable weight (``weight [size]``, initialised to ones).

    Parameters
    ----------
    size : int
        Length of the normalised (last) dimension.
    eps : float
        Added to the mean square.
    """

    def __init__(self, size: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class BitLinear(nn.Module):
    """Projection with RMSNorm, int8 per-token activations and ternary per-tensor weights.

    Parameters
    ----------
    in_features, out_features : int
        Sizes of the input and output rows.

    Members
    -------
    weight : nn.Parameter
        Full-precision latent weights, ``[out_features, in_features]``; ternarised at every
        forward.
    norm : RMSNorm
        The input norm, ``norm.weight [in_features]``, eps 1e-6.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.norm = RMSNorm(in_features, BITLINEAR_NORM_EPS)
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        y = straight_through(y, _fake_quantize_activations(y))
        w = straight_through(self.weight, _fake_ternarize(self.weight))
        return F.linear(y, w.to(y.dtype))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"
