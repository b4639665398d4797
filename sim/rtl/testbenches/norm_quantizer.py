"""cocotb tests of NormQuantizer, run on Verilator by test_norm_quantizer.py and by
tern_fpga/explore/bench_norm_quantizer.py.

The configuration (:func:`tern_fpga.sim.rtl.cocotb_support.test_config`) names the parameters, a
list of commands ``[operation, length, distribution]`` sent back to back, a seed and the chances per
cycle that each stream moves (``probabilities``: one round of the commands per set). Every
result lane and every QUANT scale is compared with :mod:`tern_fpga.contracts.numerics` (through
:mod:`norm_quantizer_cases`).
"""

import json

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.norm_quantizer import Operation
from tern_fpga.sim.rtl.cocotb_support import (
    StreamDriver,
    StreamSink,
    start_clock_and_reset,
    test_config,
)
from tern_fpga.sim.rtl.testbenches.norm_quantizer_cases import (
    make_case,
    scale_from_payload,
    split_result,
)


async def run_cases(dut, params, cases, probability, seed):
    """Send ``cases`` back to back (each command's beats twice) and collect the outputs.

    Returns the result lanes, the scales and the transfer cycles of each stream.
    """
    command_p, operand_p, result_p, scale_p = probability
    commands = StreamDriver(dut, "command", probability=command_p, seed=seed)
    operands = StreamDriver(dut, "operands", probability=operand_p, seed=seed + 1)
    results = StreamSink(dut, "result", probability=result_p, seed=seed + 2)
    scales = StreamSink(dut, "scale", probability=scale_p, seed=seed + 3)
    quant_count = sum(case.operation == Operation.QUANT for case in cases)
    senders = [
        cocotb.start_soon(commands.send(case.command for case in cases)),
        cocotb.start_soon(operands.send(beat for case in cases for beat in case.beats * 2)),
    ]
    scale_task = cocotb.start_soon(scales.receive(quant_count))
    received = await results.receive(sum(len(case.beats) for case in cases))
    received_scales = await scale_task
    for sender in senders:
        await sender
    lanes = [lane for payload in received for lane in split_result(payload, params)]
    cycles = {"command": commands.transfer_cycles, "operands": operands.transfer_cycles,
              "result": results.transfer_cycles, "scale": scales.transfer_cycles}
    return lanes, [scale_from_payload(s, params) for s in received_scales], cycles


def _draw(config, params, seed):
    rng = np.random.default_rng(seed)
    return [make_case(Operation[operation], length, distribution, params, rng)
            for operation, length, distribution in config["commands"]]


@cocotb.test()
async def random_commands(dut):
    """The configured commands against the golden, once per configured set of stall
    chances (``probabilities``), with fresh random vectors each time."""
    config = test_config()
    params = AcceleratorParameters.from_dict(config["params"])
    await start_clock_and_reset(dut)
    for round_, probability in enumerate(config["probabilities"]):
        seed = config["seed"] + 1000 * round_
        cases = _draw(config, params, seed)
        lanes, scales, _ = await run_cases(dut, params, cases, probability, seed)
        start = 0
        for index, case in enumerate(cases):
            got = lanes[start:start + len(case.expected)]
            start += len(case.expected)
            if got != case.expected:
                wrong = next(i for i, (a, b) in enumerate(zip(got, case.expected)) if a != b)
                raise AssertionError(
                    f"round {round_}, command {index} ({case.operation.name}, "
                    f"n={case.length}, {config['commands'][index][2]}): lane {wrong} is "
                    f"{got[wrong]}, golden {case.expected[wrong]}")
        assert scales == [case.scale for case in cases if case.scale is not None]
        await ReadOnly()
        assert dut.busy.value == 0, "busy is still high after the last output left"
        await RisingEdge(dut.clk)


@cocotb.test()
async def throughput(dut):
    """The configured commands with no stalls; checks the results and writes the transfer
    cycles as JSON to the configured ``report`` path (for the benchmark)."""
    config = test_config()
    params = AcceleratorParameters.from_dict(config["params"])
    cases = _draw(config, params, config["seed"])
    await start_clock_and_reset(dut)
    lanes, scales, cycles = await run_cases(dut, params, cases, (1, 1, 1, 1), config["seed"])
    assert lanes == [lane for case in cases for lane in case.expected]
    assert scales == [case.scale for case in cases if case.scale is not None]
    _write_report(config["report"], cycles)


def _write_report(path, cycles):
    with open(path, "w") as report:
        json.dump(cycles, report)
