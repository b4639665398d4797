"""The dataflow norm unit's latencies, measured in Amaranth's simulator, in the terms of the
schedule model (:class:`tern_fpga.explore.dataflow_schedule.DataflowTiming`), so that the model
schedules the unit that exists rather than a guess."""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.dataflow.norm_unit import NormUnit
from tern_fpga.hw.norm_quantizer import Operation
from tern_fpga.sim.rtl.testbenches.norm_quantizer_cases import make_case

__all__ = ["measure_norm_unit", "norm_unit_timing"]


def measure_norm_unit(params: AcceleratorParameters, operation: Operation,
                      length: int) -> dict:
    """One command of ``length`` elements through :class:`NormUnit`, every stream always ready:
    the cycle of each event (``pass_one_last``: its first pass's last operand beat taken;
    ``statistics``: its statistics taken by the engine; ``lanes_first``: the first ``u`` beat
    taken by the scale lanes; ``first_result``, ``last_result``; ``scale``: QUANT's output
    scale offered) and whether the values were the golden model's."""
    case = make_case(operation, length, "normal", params, np.random.default_rng(length))
    unit = NormUnit(params)
    events, values = {}, []

    async def bench(ctx):
        ctx.set(unit.result.ready, 1)
        ctx.set(unit.scale.ready, 1)
        ctx.set(unit.command.payload.as_value(), case.command)
        ctx.set(unit.command.valid, 1)
        beats = case.beats * 2
        sent = 0
        for cycle in range(20 * len(beats) + 200):
            ctx.set(unit.operands.valid, sent < len(beats))
            if sent < len(beats):
                ctx.set(unit.operands.payload.as_value(), beats[sent])
            statistics = unit.statistics_unit.statistics
            u = unit.lanes.u
            sampled = await ctx.tick().sample(
                unit.command.ready, unit.operands.ready, statistics.valid, statistics.ready,
                u.valid, u.ready, unit.result.valid, unit.result.payload, unit.scale.valid)
            (_, _, command_ready, operand_ready, statistics_valid, statistics_ready, u_valid,
             u_ready, result_valid, result, scale_valid) = sampled
            if command_ready:
                ctx.set(unit.command.valid, 0)
            if operand_ready and sent < len(beats):
                if sent == len(case.beats) - 1:
                    events["pass_one_last"] = cycle
                sent += 1
            if statistics_valid and statistics_ready:
                events["statistics"] = cycle
            if u_valid and u_ready:
                events.setdefault("lanes_first", cycle)
            if result_valid:
                events.setdefault("first_result", cycle)
                events["last_result"] = cycle
                values.extend(int(value) for value in result)
            if scale_valid:
                events.setdefault("scale", cycle)

    simulator = Simulator(unit)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    events["exact"] = values == case.expected
    return events


def norm_unit_timing(params: AcceleratorParameters, length: int = 128) -> dict:
    """``DataflowTiming`` fields for :class:`NormUnit` at ``params``: ``norm_turnaround``
    (pass 1's last beat to the statistics, less ``log2 V`` as the model adds it),
    ``reciprocal_latency`` (statistics to QUANT's second pass), ``engine_latency`` (statistics
    to NORM's second pass, and to QUANT's output scale), ``norm_tail`` (a second-pass beat to
    its value written)."""
    quant = measure_norm_unit(params, Operation.QUANT, length)
    norm = measure_norm_unit(params, Operation.NORM, length)
    if not (quant["exact"] and norm["exact"]):
        raise AssertionError("the norm unit's values differ from the golden model's")
    log_lanes = params.vector_lanes.bit_length() - 1
    turnaround = quant["statistics"] - quant["pass_one_last"] - 1
    return {
        "norm_turnaround": turnaround - log_lanes,
        "reciprocal_latency": quant["lanes_first"] - quant["statistics"],
        "engine_latency": (norm["lanes_first"] - norm["statistics"],
                           quant["scale"] - quant["statistics"]),
        "norm_tail": quant["first_result"] - quant["lanes_first"] + 1,
    }
