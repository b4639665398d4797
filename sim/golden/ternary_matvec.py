"""Golden model of the ternary matrix-vector unit (``hw/ternary_matvec.py``): ``y = W_t @ x`` for a
ternary matrix ``W_t [out_features, in_features]`` (values -1, 0, +1) and an int8 vector ``x``,
exactly, in integers. The weights reach the unit as weight words; their layout is
:mod:`tern_fpga.contracts.weight_layout`'s.

This module never imports Amaranth.
"""

from __future__ import annotations

import numpy as np

from tern_fpga.contracts.weight_layout import check_ternary

__all__ = ["ternary_matvec"]


def ternary_matvec(w_t, activations) -> np.ndarray:
    """The exact product ``w_t @ activations`` in int64, as the unit computes it.

    Parameters
    ----------
    w_t : array of int, shape ``[out_features, in_features]``
        Ternary weights, each -1, 0 or +1.
    activations : array of int, shape ``[in_features]``
        Quantised activations, each from -128 to 127.

    Returns
    -------
    numpy.ndarray of int64, shape ``[out_features]``

    Raises
    ------
    ValueError
        If a weight is not ternary, an activation is out of the int8 range, or the shapes
        disagree.
    """
    w_t = check_ternary(w_t)
    activations = np.asarray(activations)
    if activations.shape != (w_t.shape[1],):
        raise ValueError(f"activations must have shape ({w_t.shape[1]},) to match w_t of shape "
                         f"{w_t.shape}, not {activations.shape}")
    bad = np.flatnonzero((activations < -128) | (activations > 127))
    if len(bad):
        raise ValueError(f"activations must be int8 (-128 to 127); "
                         f"activations[{bad[0]}] = {activations[bad[0]]}")
    return w_t.astype(np.int64) @ activations.astype(np.int64)
