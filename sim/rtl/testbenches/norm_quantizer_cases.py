"""Random NORM and QUANT commands for the norm and quantiser unit, with their golden results.

Shared by the Amaranth simulation (test_norm_quantizer.py) and the cocotb module on Verilator
(norm_quantizer_cocotb.py). :func:`make_case` draws one command from a named distribution of
``x`` and ``weight``; :class:`Case` holds what the unit's ports carry and what it must return,
computed by :mod:`tern_fpga.contracts.numerics`.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
from amaranth.hdl import Const
from amaranth.sim import Simulator

from tern_fpga.contracts import numerics
from tern_fpga.contracts.numerics import Scale
from tern_fpga.hw.norm_quantizer import (
    Operation,
    beats_per_pass,
    command_layout,
    operand_layout,
    result_layout,
)
from tern_fpga.hw.scale_layout import SCALE_EXPONENT_BITS, sum_of_squares_bits

__all__ = ["DISTRIBUTIONS", "Case", "make_case", "run_in_amaranth", "scale_from_payload"]

DISTRIBUTIONS = ("normal", "huge", "tiny", "equal", "outlier", "limits", "zero", "ragged_scale")


@dataclasses.dataclass
class Case:
    """One command: its stream payloads (ints) and the golden outputs.

    Members
    -------
    command : int
        The command payload.
    beats : list of int
        One pass of operand beats; the sender sends them twice.
    expected : list of int
        The result lanes, ``beats * V`` of them (lanes past ``n`` are 0).
    scale : Scale or None
        QUANT's output scale.
    """

    operation: Operation
    length: int
    command: int
    beats: list
    expected: list
    scale: Scale | None


def _vectors(distribution, n, params, rng):
    top = 1 << (params.vector_bits - 1)
    one = params.one
    if distribution == "normal":
        x = rng.normal(0, 2.0 ** rng.integers(6, 26), n)
        weight = rng.normal(one, one / 3, n)
    elif distribution == "huge":
        x = rng.integers(-top, top, n)
        weight = rng.integers(-top, top, n)
    elif distribution == "tiny":  # squares shift to zero: the sum is epsilon alone
        x = rng.integers(-4, 5, n)
        weight = rng.integers(-(1 << 20), 1 << 20, n)
    elif distribution == "equal":
        x = np.full(n, rng.integers(-top, top))
        weight = np.full(n, rng.integers(-4 * one, 4 * one))
    elif distribution == "outlier":
        x = rng.integers(-one, one, n)
        x[rng.integers(n)] = rng.choice([-top, top - 1])
        weight = rng.normal(one, one / 4, n)
    elif distribution == "limits":
        x = rng.choice([-top, top - 1, 0, 1, -1, one, -one], n)
        weight = rng.choice([-top, top - 1, 0, 1, -1, one], n)
    elif distribution == "zero":
        x = np.zeros(n)
        weight = rng.integers(-top, top, n)
    elif distribution == "ragged_scale":  # unnormalised constant mantissas, see _constant
        x = rng.integers(-(1 << 24), 1 << 24, n)
        weight = rng.integers(-4 * one, 4 * one, n)
    else:
        raise ValueError(f"unknown distribution {distribution!r}; choose one of {DISTRIBUTIONS}")
    return (np.clip(np.asarray(x, np.float64), -top, top - 1).astype(np.int64),
            np.clip(np.asarray(weight, np.float64), -top, top - 1).astype(np.int64))


def _epsilon(n, params, rng):
    kind = rng.integers(4)
    if kind == 0:  # what the compiler writes: round(eps * n * 2**G), at least 1
        return max(round(1e-6 * n * 2.0 ** params.sum_of_squares_frac_bits), 1)
    if kind == 1:
        return 1
    if kind == 2:
        return int(rng.integers(1, 1 << 40))
    return (1 << sum_of_squares_bits(params)) - 1  # the largest the port holds


def _constant(distribution, n, params, rng):
    """A constant that keeps the golden inside the hardware's domain: NORM scales below
    2**16 never shift left (numerics.apply_scale's int64 shift would wrap past 2**63), except
    for the tiny vectors, where left shifts that saturate are safe to test."""
    if distribution == "ragged_scale":  # any mantissa, zero (a zero scale) included
        mantissa = int(rng.integers(0, 1 << int(rng.integers(0, params.scale_mantissa_bits + 1))))
        return Scale(mantissa, int(rng.integers(-40, 1)))
    if distribution == "tiny":
        return Scale(int(rng.integers(1, 1 << params.scale_mantissa_bits)),
                     int(rng.integers(-10, 21)))
    factor = 2.0 ** rng.uniform(-9, 0)  # the BitLinear's mean|W| / 127, or 1 for a norm
    return numerics.scale_from_float(np.sqrt(n) * 2.0 ** (params.sum_of_squares_frac_bits / 2)
                                     * factor, params)


def _golden_wraps(x, weight, epsilon, constant, params):
    # numerics.apply_scale shifts int64 products left; the RTL saturates instead.
    u = numerics.multiply(x, weight, params)
    r = numerics._norm_scale(x, epsilon, constant, params)
    largest = int(np.abs(u).max()) * r.mantissa
    return r.exponent > 0 and largest.bit_length() + r.exponent >= 63


def _payload(layout, fields) -> int:
    return Const.cast(layout.const(fields)).value


def make_case(operation: Operation, length: int, distribution: str, params, rng) -> Case:
    """A random command of ``length`` elements drawn from ``distribution``."""
    lanes = params.vector_lanes
    x, weight = _vectors(distribution, length, params, rng)
    epsilon = _epsilon(length, params, rng)
    constant = _constant(distribution, length, params, rng)
    while operation == Operation.NORM and _golden_wraps(x, weight, epsilon, constant, params):
        constant = Scale(constant.mantissa, constant.exponent - 8)
    beats = beats_per_pass(length, params)
    # Padding lanes carry random values that the unit must ignore.
    top = 1 << (params.vector_bits - 1)
    padded_x, padded_weight = rng.integers(-top, top, (2, beats * lanes))
    padded_x[:length], padded_weight[:length] = x, weight
    layout = operand_layout(params)
    beat_payloads = [
        _payload(layout, {"x": padded_x[i:i + lanes].tolist(),
                          "weight": padded_weight[i:i + lanes].tolist()})
        for i in range(0, beats * lanes, lanes)]
    if operation == Operation.NORM:
        values, scale = numerics.rmsnorm(x, weight, epsilon, constant, params), None
    else:
        values, scale = numerics.quantize_activations(x, weight, epsilon, constant, params)
        exponent_top = 1 << (SCALE_EXPONENT_BITS - 1)
        assert -exponent_top <= scale.exponent < exponent_top, "output exponent off the port"
    expected = np.zeros(beats * lanes, np.int64)
    expected[:length] = values
    command = _payload(command_layout(params), {
        "operation": operation, "length": length, "epsilon_term": epsilon,
        "constant": {"mantissa": constant.mantissa, "exponent": constant.exponent}})
    return Case(operation=operation, length=length, command=command, beats=beat_payloads,
                expected=expected.tolist(), scale=scale)


def split_result(payload: int, params) -> list[int]:
    """The ``V`` signed lanes of a result payload."""
    bits = params.vector_bits
    width = result_layout(params).size
    assert payload >> width == 0
    lanes = [(payload >> (bits * j)) & ((1 << bits) - 1) for j in range(params.vector_lanes)]
    return [lane - (1 << bits) if lane >> (bits - 1) else lane for lane in lanes]


def scale_from_payload(payload: int, params) -> Scale:
    """A scale port's payload as a :class:`~tern_fpga.contracts.numerics.Scale`."""
    bits = params.scale_mantissa_bits
    exponent = payload >> bits
    if exponent >> (SCALE_EXPONENT_BITS - 1):
        exponent -= 1 << SCALE_EXPONENT_BITS
    return Scale(payload & ((1 << bits) - 1), exponent)


def run_in_amaranth(unit, cases, probability: float, seed, params):
    """``cases`` through ``unit`` (a norm and quantiser unit: ``NormQuantizer`` or the
    dataflow core's ``NormUnit``) in Amaranth's simulator, every stream stalling at random
    (operands and results ready with ``probability`` a cycle). Returns the result lanes and
    the scales, in the order each stream gave them."""
    stalls = random.Random(seed)

    def sender(port, payloads, chance):
        pattern = random.Random(stalls.random())

        async def process(ctx):
            for payload in payloads:
                while pattern.random() >= chance:
                    await ctx.tick()
                ctx.set(port.payload.as_value(), payload)
                ctx.set(port.valid, 1)
                await ctx.tick().until(port.ready)
                ctx.set(port.valid, 0)
        return process

    def receiver(port, count, chance, received):
        pattern = random.Random(stalls.random())

        async def process(ctx):
            while len(received) < count:
                ready = pattern.random() < chance
                ctx.set(port.ready, ready)
                *_, valid, payload = await ctx.tick().sample(port.valid, port.payload.as_value())
                if ready and valid:
                    received.append(payload)
            ctx.set(port.ready, 0)
        return process

    payloads, scales = [], []
    simulator = Simulator(unit)
    simulator.add_clock(1e-8)
    simulator.add_testbench(sender(unit.command, [c.command for c in cases], 0.7),
                            background=True)
    simulator.add_testbench(sender(unit.operands, [b for c in cases for b in c.beats * 2],
                                   probability), background=True)
    simulator.add_testbench(receiver(unit.scale, sum(c.scale is not None for c in cases), 0.5,
                                     scales))
    simulator.add_testbench(receiver(unit.result, sum(len(c.beats) for c in cases),
                                     probability, payloads))
    simulator.run()
    lanes = [lane for payload in payloads for lane in split_result(payload, params)]
    return lanes, [scale_from_payload(s, params) for s in scales]
