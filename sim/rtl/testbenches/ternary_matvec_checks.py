"""cocotb tests of TernaryMatVec, run on Verilator by test_ternary_matvec_verilator.py.

The configuration (from :func:`tern_fpga.sim.rtl.cocotb_support.test_config`) names the parameters,
a list of matrix shapes ``[rows, in_features]`` sent back to back as one command each, and the
seeds. Each seed draws fresh matrices and vectors; the first seed runs without stalls and checks
that the weight stream never waited, the others stall all three streams at random rates.
"""

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.contracts.weight_layout import (
    CODE_RESERVED,
    int_to_weight_word,
    pack_weight_words,
    unpack_weight_words,
    weight_word_to_int,
)
from tern_fpga.sim.rtl.cocotb_support import start_clock_and_reset, test_config
from tern_fpga.sim.rtl.testbenches.ternary_matvec import make_job, run_jobs


def _setup():
    config = test_config()
    return config, AcceleratorParameters.from_dict(config["params"])


async def _check(dut, params, jobs, *, probability, seed):
    received, cycles = await run_jobs(dut, params, jobs, probability=probability, seed=seed)
    np.testing.assert_array_equal(received, np.concatenate([job.expected for job in jobs]))
    await ReadOnly()  # the values settled after the edge that took the last result
    assert dut.busy.value == 0, "busy is still high after the last result left"
    await RisingEdge(dut.clk)
    return cycles


def _with_reserved_codes(params, w_t, rng, count):
    """Words of ``w_t`` with ``count`` random lanes set to the reserved code 10, and their
    decoding (where those lanes read as 0)."""
    words = pack_weight_words(w_t, params)
    for index in rng.choice(len(words), count):
        lane = int(rng.integers(params.ternary_lanes))
        value = weight_word_to_int(words[index]) & ~(3 << 2 * lane) | CODE_RESERVED << 2 * lane
        words[index] = int_to_weight_word(value, params)
    return words, unpack_weight_words(words, params, *w_t.shape)


@cocotb.test()
async def random_matrices(dut):
    config, params = _setup()
    await start_clock_and_reset(dut)
    for seed in config["seeds"]:
        rng = np.random.default_rng(seed)
        jobs = []
        for rows, in_features in config["shapes"]:
            w_t = rng.integers(-1, 2, (rows, in_features))
            # Sparse rows too: a quarter of the matrices are mostly zeros.
            if rng.random() < 0.25:
                w_t *= rng.random(w_t.shape) < 0.1
            jobs.append(make_job(params, w_t, rng.integers(-128, 128, in_features),
                                 padding_seed=seed))
        stalls = seed != config["seeds"][0]
        probability = tuple(rng.uniform(0.3, 1.0, 3)) if stalls else (1.0, 1.0, 1.0)
        cycles = await _check(dut, params, jobs, probability=probability, seed=seed)
        if not stalls:
            gaps = np.diff(cycles["weights"])
            assert np.all(gaps == 1), f"the weight stream waited: gaps {sorted(set(gaps))}"


@cocotb.test()
async def extremes(dut):
    """All +1 and all -1 rows at the largest vector length with activations -128 and +127
    (the accumulator's full range), and the reserved code 10 in random lanes."""
    config, params = _setup()
    await start_clock_and_reset(dut)
    features = params.max_features
    rng = np.random.default_rng(config["seeds"][0])
    plus, minus = np.ones((3, features), int), -np.ones((3, features), int)
    jobs = [make_job(params, w_t, np.full(features, value))
            for w_t in (plus, minus) for value in (-128, 127)]
    assert jobs[2].expected[0] == 128 * features  # -1 * -128 at every column
    for rows, in_features in config["shapes"]:
        words, decoded = _with_reserved_codes(
            params, rng.integers(-1, 2, (rows, in_features)), rng, rows)
        jobs.append(make_job(params, decoded, rng.integers(-128, 128, in_features), words=words))
    await _check(dut, params, jobs, probability=(0.7, 0.8, 0.6), seed=1)
