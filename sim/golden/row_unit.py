"""Golden model of the row-wise unit (:mod:`tern_fpga.hw.row_unit`): one element-wise operation on
vectors.

Each operation is the function of :mod:`tern_fpga.contracts.numerics` that the golden model
(:mod:`tern_fpga.sim.golden.model`) gives the matching instruction, so the unit is checked against
the very definition the whole program is checked against:

========== ================================================ ==========================
operation  result                                           instruction
========== ================================================ ==========================
SIGMOID    ``numerics.sigmoid(a)``                          ``sigmoid``
SILU       ``numerics.silu(a)``                             ``silu``
MUL        ``numerics.multiply(a, b)``                      ``mul``
ADD        ``numerics.add(a, b)``                           ``add``
SUB        ``numerics.subtract(a, b)``                      ``sub``
ONE_MINUS  ``numerics.one_minus(a)``                        ``one_minus``
SCALE      ``numerics.apply_scale(a, scale)``               ``tmv`` (its row sums)
EMBED      ``a << shift``                                   ``embed`` (``shift = imm``)
========== ================================================ ==========================
"""

from __future__ import annotations

import numpy as np

from tern_fpga.contracts import numerics
from tern_fpga.contracts.isa import BINARY_OPERATIONS, RowOperation
from tern_fpga.contracts.numerics import Scale
from tern_fpga.contracts.params import AcceleratorParameters

__all__ = ["row_operation"]


def row_operation(operation: RowOperation, a, b=None, *, params: AcceleratorParameters,
                  scale: Scale | None = None, shift: int = 0) -> np.ndarray:
    """The result of ``operation`` on the vectors ``a`` (and ``b``), as ``np.int64``.

    Parameters
    ----------
    operation : RowOperation
    a, b : array of int
        Operands; ``b`` only for :data:`BINARY_OPERATIONS`.
    params : tern_fpga.contracts.params.AcceleratorParameters
    scale : Scale
        The scale of SCALE (required for it).
    shift : int
        The left shift of EMBED.

    Raises
    ------
    ValueError
        If ``b`` is missing for a binary operation or given for a unary one, or SCALE has no
        ``scale``.
    """
    operation = RowOperation(operation)
    if (b is None) == (operation in BINARY_OPERATIONS):
        needs = "needs" if operation in BINARY_OPERATIONS else "takes no"
        raise ValueError(f"{operation.name} {needs} second operand b")
    a = np.asarray(a, dtype=np.int64)
    if operation == RowOperation.SCALE:
        if scale is None:
            raise ValueError("SCALE needs a scale")
        return numerics.apply_scale(a, scale, params)
    if operation == RowOperation.EMBED:
        return a << shift
    unary = {RowOperation.SIGMOID: numerics.sigmoid, RowOperation.SILU: numerics.silu,
             RowOperation.ONE_MINUS: numerics.one_minus}
    if operation in unary:
        return unary[operation](a, params)
    binary = {RowOperation.MUL: numerics.multiply, RowOperation.ADD: numerics.add,
              RowOperation.SUB: numerics.subtract}
    return binary[operation](a, np.asarray(b, dtype=np.int64), params)
