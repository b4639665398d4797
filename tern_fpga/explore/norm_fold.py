"""Issue 15's numerics question, measured before anything changes: fold each NORM whose result
only QUANTs read into those QUANTs, so that one pass over the NORM's input ``x`` gathers what
both need (``docs/dataflow.md``: the step then needs 4,806 cycles at P = 512, V = 8 instead of
5,634, and the issue's 5,000).

Today a BitLinear's input is ``h = rmsnorm(x, w1)`` (rounded to Q.F and written), then
``quantize_activations(h, w2)``. Folded, with ``a = multiply(x, w1)`` and ``u' = multiply(a,
w2)``:

- the int8 values are ``quantize_activations``' own on ``u'`` (the block norm's scalar ``r1``
  divides out of ``u / max |u|``);
- the BitLinear norm's sum of squares is ``sum_of_squares(a) * r1**2`` (``r1**2`` a scale
  product, the sum times it rounded to an integer), where ``r1 = rsqrt(sum_of_squares(x) +
  eps1) * c1`` is the block norm's scale;
- the output scale is ``rsqrt(that + eps2) * c2 * r1 * max(max |u'|, 1)``.

:class:`FoldedGoldenModel` executes the compiled program that way (the folded NORMs write
nothing; only QUANTs read their results) and :func:`run` measures the acceptance test of
``docs/numerics.md`` on it. Nothing here changes the golden model, the compiler or the RTL.
"""

from __future__ import annotations

import numpy as np

from tern_fpga.contracts import numerics
from tern_fpga.contracts.isa import Opcode
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.explore.dataflow_schedule import fusion_plan
from tern_fpga.sim.golden.model import ExecutionError, GoldenModel

__all__ = ["FoldedGoldenModel", "folded_quantize"]


def folded_quantize(x, norm_weight, norm_epsilon: int, norm_constant: numerics.Scale,
                    weight, epsilon: int, constant: numerics.Scale,
                    params: AcceleratorParameters) -> tuple[np.ndarray, numerics.Scale]:
    """``quantize_activations(rmsnorm(x, norm_weight, ...), weight, ...)`` in one pass over
    ``x`` (the module's recipe): the int8 values and the output scale."""
    a = numerics.multiply(x, norm_weight, params)
    q, _ = numerics.quantize_activations(a, weight, epsilon, constant, params)
    largest = max(int(np.abs(numerics.multiply(a, weight, params)).max(initial=0)), 1)
    block_scale = numerics._norm_scale(x, norm_epsilon, norm_constant, params)
    squared = numerics.scale_multiply(block_scale, block_scale, params)
    sum_of_squares = numerics.round_shift(numerics.sum_of_squares(a, params) * squared.mantissa,
                                          -squared.exponent)
    norm_scale = numerics.scale_multiply(
        numerics.rsqrt_scale(int(sum_of_squares) + epsilon, params), constant, params)
    scale = numerics.scale_multiply(numerics.scale_multiply(norm_scale, block_scale, params),
                                    numerics.scale_from_int(largest, params), params)
    return q, scale


class FoldedGoldenModel(GoldenModel):
    """The golden model with each foldable NORM of the step folded into its QUANTs
    (:func:`tern_fpga.explore.dataflow_schedule.fusion_plan`), instruction by instruction.

    Raises
    ------
    ExecutionError
        If a folded NORM's input changed before a QUANT that reads it through the fold.
    """

    def __init__(self, params: AcceleratorParameters, sections: dict):
        super().__init__(params, sections, batched=False)
        step = []
        for instruction in self.program[self.step_entry:]:
            if instruction.opcode == Opcode.HALT:
                break
            step.append(instruction)
        self.folds = {self.step_entry + quant: self.step_entry + norm
                      for quant, norm in fusion_plan(step).items()}
        self._folded_norms = set(self.folds.values())
        self._inputs: dict[int, np.ndarray] = {}

    def run(self, entry: int):
        if entry != self.step_entry:
            super().run(entry)
            return
        self.token_written = False          # a new run (GoldenModel.run's rule)
        pc = entry
        while self.program[pc].opcode != Opcode.HALT:
            instruction = self.program[pc]
            if pc in self._folded_norms:
                self._inputs[pc] = self._read_a(instruction.a, instruction.length).copy()
            elif pc in self.folds:
                self._execute_folded(instruction, self.program[self.folds[pc]],
                                     self._inputs[self.folds[pc]])
            else:
                self.execute(instruction)
            self.instructions_executed += 1
            pc += 1

    def _execute_folded(self, quant, norm, x):
        n = quant.length
        if n != norm.length:
            raise ExecutionError(f"a QUANT of {n} elements reads a NORM of {norm.length}")
        if not np.array_equal(self._read_a(norm.a, n), x):
            raise ExecutionError(f"the input of the NORM folded into the QUANT at weight "
                                 f"constants {quant.imm} changed before the QUANT")
        norm_epsilon, norm_constant = self._constants(norm.imm)
        epsilon, constant = self._constants(quant.imm)
        q, scale = folded_quantize(x, self._read(norm.b, n), norm_epsilon, norm_constant,
                                   self._read(quant.b, n), epsilon, constant, self.params)
        self.activations[:n] = q
        self.activation_length = n
        self.scales[quant.dst] = scale
