"""cocotb testbench of :class:`tern_fpga.hw.ternary_matvec.TernaryMatVec`, shared by tests and
benchmarks.

:func:`make_job` turns a matrix and a vector into what the unit's ports carry; :func:`run_jobs`
(simulator side) sends a list of jobs back to back through the command, weight and activation
streams, with random stalls if asked, and collects the results and the cycle of every transfer.
The cocotb test :func:`throughput` is what
:func:`tern_fpga.explore.bench_ternary_matvec.measure_matvec_throughput`
runs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cocotb
import numpy as np

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.contracts.weight_layout import beats_per_row, pack_weight_words, weight_word_to_int
from tern_fpga.sim.golden.ternary_matvec import ternary_matvec
from tern_fpga.sim.rtl.cocotb_support import (
    StreamDriver,
    StreamSink,
    pack_lanes,
    start_clock_and_reset,
    test_config,
)

__all__ = ["TOPLEVEL", "MatVecJob", "command_payload", "make_job", "run_jobs"]

TOPLEVEL = "ternary_matvec"


@dataclasses.dataclass
class MatVecJob:
    """One command's worth of stream traffic and its expected results.

    Members
    -------
    rows, beats : int
        The command.
    words : list of int
        ``rows * beats`` weight words, in order.
    activation_beats : list of int
        The ``beats`` activation words, sent again for every row.
    expected : numpy.ndarray of int64
        The golden results, one per row.
    """

    rows: int
    beats: int
    words: list
    activation_beats: list
    expected: np.ndarray


def make_job(params, w_t, activations, *, padding_seed: int = 0, words=None) -> MatVecJob:
    """The job that computes ``w_t @ activations``.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
    w_t : array of int, shape ``[rows, in_features]``
        Ternary matrix; the expected results are :func:`tern_fpga.sim.golden.ternary_matvec` of it.
    activations : array of int, shape ``[in_features]``
    padding_seed : int
        Seed of the random int8 values sent in padding columns, which the unit must ignore.
    words : array of uint64, optional
        Weight words to send instead of ``pack_weight_words(w_t, params)`` (for words that the
        exporter would never write); ``w_t`` must then be their decoding.
    """
    rows, in_features = np.shape(w_t)
    lanes = params.ternary_lanes
    beats = beats_per_row(in_features, params)
    if words is None:
        words = pack_weight_words(w_t, params)
    padded = np.random.default_rng(padding_seed).integers(-128, 128, beats * lanes)
    padded[:in_features] = activations
    activation_beats = [pack_lanes(block, params.activation_bits)
                        for block in padded.reshape(beats, lanes)]
    return MatVecJob(rows=rows, beats=beats, words=[weight_word_to_int(w) for w in words],
                     activation_beats=activation_beats,
                     expected=ternary_matvec(w_t, activations))


def command_payload(params, rows: int, beats: int) -> int:
    """The command stream's payload for ``(rows, beats)`` as an int."""
    from amaranth.hdl import Const  # here, not at the top: loads Amaranth

    from tern_fpga.hw.ternary_matvec import command_layout  # here, not at the top: loads Amaranth

    return Const.cast(command_layout(params).const({"rows": rows, "beats": beats})).value


async def run_jobs(dut, params, jobs, *, probability=(1.0, 1.0, 1.0), seed: int = 0):
    """Run ``jobs`` back to back through the unit (simulator side).

    Parameters
    ----------
    dut : cocotb handle of the unit, clock running and out of reset
    params : tern_fpga.contracts.params.AcceleratorParameters
    jobs : list of MatVecJob
    probability : (float, float, float)
        Chance per cycle that weights, activations and results (ready) move; 1 never stalls.
    seed : int
        Seed of the stall patterns.

    Returns
    -------
    results : list of int
        Every row's result, in order.
    cycles : dict
        ``weights``, ``activations`` and ``result``: the clock cycle of each transfer.
    """
    weight_p, activation_p, result_p = probability
    commands = StreamDriver(dut, "command", seed=seed)
    weights = StreamDriver(dut, "weights", probability=weight_p, seed=seed + 1)
    activations = StreamDriver(dut, "activations", probability=activation_p, seed=seed + 2)
    results = StreamSink(dut, "result", probability=result_p, signed=True, seed=seed + 3)
    senders = [
        cocotb.start_soon(commands.send(command_payload(params, job.rows, job.beats)
                                        for job in jobs)),
        cocotb.start_soon(weights.send(word for job in jobs for word in job.words)),
        cocotb.start_soon(activations.send(beat for job in jobs for _ in range(job.rows)
                                           for beat in job.activation_beats)),
    ]
    received = await results.receive(sum(job.rows for job in jobs))
    for sender in senders:
        await sender
    return received, {"weights": weights.transfer_cycles,
                      "activations": activations.transfer_cycles,
                      "result": results.transfer_cycles}


@cocotb.test()
async def throughput(dut):
    """Run one random matrix with no stalls, check the results, and write the transfer
    cycles as JSON to the configured ``report`` path (for the benchmark)."""

    config = test_config()
    params = AcceleratorParameters.from_dict(config["params"])
    rng = np.random.default_rng(config["seed"])
    shape = (config["out_features"], config["in_features"])
    job = make_job(params, rng.integers(-1, 2, shape), rng.integers(-128, 128, shape[1]))
    await start_clock_and_reset(dut)
    received, cycles = await run_jobs(dut, params, [job])
    np.testing.assert_array_equal(received, job.expected)
    Path(config["report"]).write_text(json.dumps(cycles))
