"""The random block's error against float64: float32 at the noise floor, the golden model where
float64 sits under 1e-4 input noise, and the prototype precision back near the floor."""

import numpy as np
import pytest
import torch

from tern_fpga.contracts.params import preset
from tern_fpga.explore.block_noise import QUANTISERS, block_noise, random_block

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def result():
    tokens = torch.randint(0, 256, (8,), generator=torch.Generator().manual_seed(0)).tolist()
    return block_noise(random_block(256, 704), preset("large"), tokens, noise_levels=(1e-4,))


def test_float32_stays_at_the_float_noise_floor(result):
    assert result.median(result.float32_error) < 1e-5
    assert all(flips == 0 for flips in result.float32_flips.values())


def test_golden_error_is_the_flip_cascade_of_a_1e4_input_error(result):
    golden = result.median(result.golden_error)
    perturbed = result.median(result.perturbed_error[1e-4])
    assert golden > 1000 * result.median(result.float32_error)
    assert 0.5 < golden / perturbed < 2, (golden, perturbed)


def test_flips_grow_along_the_block(result):
    flips = result.golden_flips
    assert set(flips) == set(QUANTISERS)
    first = max(flips[name] for name in ("i_proj", "f_proj", "g_proj"))
    assert first < 0.01 < flips["o_proj"] < 0.1 < flips["gate_proj"], flips


def test_prototype_precision_removes_most_of_the_error(result):
    assert np.median(result.prototype_error) < result.median(result.golden_error) / 100


def test_more_than_one_layer_is_refused():
    model = random_block(64, 176)
    model.config.num_hidden_layers = 2
    with pytest.raises(ValueError, match="2 layers"):
        block_noise(model, preset("large"), [1, 2])
