"""MODEL.md's BitLinear computed directly in NumPy, the reference of the quantisation tests."""

import numpy as np


def numpy_round_half_away(z):
    # np.round rounds ties to even; at exact ties step away from zero instead.
    tie = np.abs(z - np.trunc(z)) == 0.5
    return np.where(tie, np.trunc(z) + np.sign(z), np.round(z))


def numpy_bitlinear(x, norm_weight, weight):
    """MODEL.md's integer path: ``(y_q @ W_t^T) / (s_x * s_w)``, with its pieces."""
    y = x / np.sqrt(np.mean(x ** 2, axis=-1, keepdims=True) + 1e-6) * norm_weight
    s_x = 127 / np.maximum(np.abs(y).max(axis=-1, keepdims=True), 1e-5)
    y_q = np.clip(numpy_round_half_away(y * s_x), -128, 127)
    s_w = 1 / max(np.abs(weight).mean(), 1e-5)
    w_t = np.clip(np.round(weight * s_w), -1, 1)
    return (y_q @ w_t.T) / (s_x * s_w), y_q, s_x, w_t, s_w
