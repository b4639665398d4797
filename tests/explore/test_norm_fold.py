"""The NORM-into-QUANT fold experiment (explore/norm_fold.py): its one-pass recipe against NORM
then QUANT on fresh random vectors, and the folded golden model on the shipped micro model
(which NORMs it folds, and that it follows the float model as closely as the golden model)."""

import numpy as np
import pytest

from tern_fpga.contracts import numerics, paths
from tern_fpga.contracts.params import PRESETS
from tern_fpga.explore.norm_fold import FoldedGoldenModel, folded_quantize

DEMO = PRESETS["demo"]


@pytest.mark.parametrize("seed", range(4))
def test_the_fold_is_norm_then_quant_but_for_one_rounding(seed):
    """The int8 values differ only where one sits on a rounding boundary (by one level, in a
    few lanes), and the output scale by the rounding of a Q.16 vector (well under 1 %)."""
    rng = np.random.default_rng(seed)
    n = 128 * (seed + 1)
    x = numerics.to_fixed(rng.normal(0, 2.0 ** rng.integers(-2, 6), n), DEMO)
    norm_weight = numerics.to_fixed(rng.normal(1, 0.3, n), DEMO)
    weight = numerics.to_fixed(rng.normal(1, 0.3, n), DEMO)
    epsilon = max(round(1e-6 * n * 2.0 ** DEMO.sum_of_squares_frac_bits), 1)
    norm_constant = numerics.scale_from_float(
        np.sqrt(n) * 2.0 ** (DEMO.sum_of_squares_frac_bits / 2), DEMO)
    constant = numerics.scale_from_float(
        np.sqrt(n) * 2.0 ** (DEMO.sum_of_squares_frac_bits / 2) * 0.7 / 127, DEMO)
    h = numerics.rmsnorm(x, norm_weight, epsilon, norm_constant, DEMO)
    q, scale = numerics.quantize_activations(h, weight, epsilon, constant, DEMO)
    folded_q, folded_scale = folded_quantize(x, norm_weight, epsilon, norm_constant, weight,
                                             epsilon, constant, DEMO)
    difference = np.abs(q.astype(int) - folded_q.astype(int))
    assert difference.max() <= 1 and np.count_nonzero(difference) <= n // 20
    assert np.count_nonzero(q) > n // 2
    ratio = numerics.scale_to_float(folded_scale) / numerics.scale_to_float(scale)
    assert abs(ratio - 1) < 1e-3, ratio


def test_the_folded_golden_model_on_the_micro_model():
    from tern_fpga.quant.checkpoint import load_pretrained
    from tern_fpga.quant.compiler import compile_model
    from tern_fpga.sim.golden.model import GoldenModel

    params = PRESETS["micro"]
    compiled = compile_model(load_pretrained(paths.CHECKPOINTS / "micro"), params)
    folded = FoldedGoldenModel(params, compiled.sections())
    plain = GoldenModel(params, compiled.sections())
    # In each of the four layers the token mixer's norm into its three gates' QUANTs and the
    # channel mixer's into its QUANT; the final norm into the LM head's: nine NORMs into
    # seventeen QUANTs (the output gate's norm feeds element-wise work and stays).
    assert len(set(folded.folds.values())) == 9 and len(folded.folds) == 17
    text = b"The quick brown fox jumps over the lazy dog, then naps. " * 2
    same = 0
    for token in text:
        same += folded.step(token) == plain.step(token)
    assert same >= 0.9 * len(text), same
