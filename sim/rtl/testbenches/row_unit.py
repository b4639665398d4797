"""Stimulus, scoreboard and the cocotb test of :class:`tern_fpga.hw.row_unit.RowUnit` and of the
dataflow core's :class:`tern_fpga.hw.dataflow.elementwise.ElementwiseUnit` (config ``unit``:
``"elementwise"``; every operation but SCALE).

:func:`make_jobs` draws commands with fresh random operands and their golden results
(:func:`tern_fpga.sim.golden.row_unit.row_operation`); :func:`stream_payloads` turns them into the
integers that the command, ``a`` and ``b`` streams carry; :func:`check_results` compares the result
beats. ``test_row_unit.py`` uses the same three with Amaranth's simulator, and runs
:func:`random_commands` below in Verilator.
"""

from __future__ import annotations

import dataclasses

import cocotb
import numpy as np

from tern_fpga.contracts.isa import BINARY_OPERATIONS, RowOperation
from tern_fpga.contracts.numerics import Scale
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.sim.golden.row_unit import row_operation
from tern_fpga.sim.rtl.cocotb_support import (
    StreamDriver,
    StreamSink,
    pack_lanes,
    start_clock_and_reset,
    test_config,
)

__all__ = ["RowJob", "check_results", "make_jobs", "simulate", "stream_payloads",
           "unpack_result"]


@dataclasses.dataclass
class RowJob:
    """One command, its operands and the golden result."""

    operation: RowOperation
    a: np.ndarray
    b: np.ndarray | None
    scale: Scale
    shift: int
    expected: np.ndarray


def make_jobs(params, rng: np.random.Generator, *, repeats: int = 4, sweep: bool = True,
              operations=tuple(RowOperation)) -> list[RowJob]:
    """Commands of each of ``operations``, ``repeats`` each (SCALE six times as many, for its
    exponents), in random order, with lengths 1, ``V``, ``V + 1`` and random ones (most not a
    multiple of ``V``). With ``sweep``, SIGMOID and SILU also get every segment boundary of the
    table."""
    lanes = params.vector_lanes
    lengths = [1, lanes, lanes + 1] + list(rng.integers(1, 4 * lanes + 2, repeats))
    plan = [(operation, int(rng.choice(lengths)))
            for operation in operations
            for _ in range(repeats * (6 if operation == RowOperation.SCALE else 1))]
    plan += [(operation, length) for operation in operations for length in (1, lanes + 1)]
    jobs = [_job(params, rng, operation, length) for operation, length in plan]
    if sweep:
        boundaries = _sigmoid_boundaries(params)
        jobs += [_job(params, rng, operation, len(boundaries), a=boundaries)
                 for operation in (RowOperation.SIGMOID, RowOperation.SILU)]
    return [jobs[index] for index in rng.permutation(len(jobs))]


def _job(params, rng, operation, length, a=None) -> RowJob:
    scale, shift = Scale(0, 0), 0
    if operation == RowOperation.SCALE:
        scale = _scale(params, rng)
        a = _row_sums(params, rng, length) if a is None else a
    elif operation == RowOperation.EMBED:
        half = 1 << (params.embedding_bits - 1)
        top = params.vector_bits - params.embedding_bits
        shift = int(rng.choice([0, top, rng.integers(0, top + 1)]))
        a = rng.integers(-half, half, length)
        a[rng.random(length) < 0.2] = rng.choice([-half, half - 1])
    elif a is None:
        a = _vector_values(params, rng, length)
    b = _vector_values(params, rng, length) if operation in BINARY_OPERATIONS else None
    expected = row_operation(operation, a, b, params=params, scale=scale, shift=shift)
    return RowJob(operation, np.asarray(a, np.int64), b, scale, shift, expected)


def _vector_values(params, rng, count: int) -> np.ndarray:
    """Vector-format values from several ranges: near zero, near the sigmoid's range ends,
    anywhere, and at the int limits (so that products and sums saturate)."""
    width, one = params.vector_bits, params.one
    low, high = -(1 << (width - 1)), (1 << (width - 1)) - 1
    edge = params.sigmoid_input_range * one
    kinds = [
        rng.integers(-8 * one, 8 * one, count),
        rng.choice([-edge, edge]) + rng.integers(-3 * one, 3 * one, count),
        rng.integers(low, high, count, endpoint=True),
        np.where(rng.random(count) < 0.5, low + rng.integers(0, 4, count),
                 high - rng.integers(0, 4, count)),
        rng.integers(-4, 5, count),
    ]
    kind = rng.integers(0, len(kinds), count)
    return np.clip(np.choose(kind, kinds), low, high).astype(np.int64)


def _row_sums(params, rng, count: int) -> np.ndarray:
    """Matrix-unit row sums (``accumulator_bits`` wide), some at the limits, a few wider."""
    half = 1 << (params.accumulator_bits - 1)
    sums = rng.integers(-half, half, count)
    limits = rng.random(count) < 0.2
    sums[limits] = rng.choice([-half, half - 1, -1, 0, 1], int(limits.sum()))
    wide = rng.random(count) < 0.1
    sums[wide] = _vector_values(params, rng, int(wide.sum()))
    return sums


def _scale(params, rng) -> Scale:
    """Mostly normalised mantissas; exponents from tiny to huge, past both limits of the
    command's field and of the golden's shifts, and where products wrap in int64."""
    bits = params.scale_mantissa_bits
    mantissa = int(rng.choice([
        rng.integers(1 << (bits - 1), 1 << bits), rng.integers(0, 1 << bits), 0, 1,
        (1 << bits) - 1], p=[0.6, 0.2, 0.05, 0.05, 0.1]))
    exponent = int(rng.choice([
        rng.integers(-40, 5), rng.integers(-70, 50), rng.integers(-300, 300),
        rng.choice([-63, -62, -61, -49, -48, -1, 0, 15, 16, 29, 41, 42, 43, 127, -128])],
        p=[0.4, 0.3, 0.1, 0.2]))
    return Scale(mantissa, exponent)


def _sigmoid_boundaries(params) -> np.ndarray:
    """Each segment's first, second, middle and last input, and both ends of the range."""
    edge = params.sigmoid_input_range * params.one
    width = 1 << params.sigmoid_segment_shift
    starts = -edge + width * np.arange(1 << params.sigmoid_table_bits)
    inside = (starts[:, None] + np.array([0, 1, width // 2, width - 1])).reshape(-1)
    return np.concatenate([inside, [-edge - 1, edge - 1, edge, edge + 1]]).astype(np.int64)


def stream_payloads(params, jobs, *, padding_seed: int = 0, layout=None):
    """The integers the streams carry: ``(commands, a_beats, b_beats)``. Padding lanes of a
    last beat get random values, which the unit must not let into a masked lane. ``layout``:
    the command's (the row unit's by default); a ``scale`` field is filled where it has one."""
    from amaranth.hdl import Const  # here, not at the top: loads Amaranth

    # here, not at the top: loads Amaranth
    from tern_fpga.hw.row_unit import command_layout, scale_fields

    rng = np.random.default_rng(padding_seed)
    layout = command_layout(params) if layout is None else layout
    names = {name for name, _ in layout}
    commands, a_beats, b_beats = [], [], []
    for job in jobs:
        fields = {"operation": job.operation, "length": len(job.a), "shift": job.shift}
        if "scale" in names:
            fields["scale"] = scale_fields(job.scale, params)
        commands.append(Const.cast(layout.const(fields)).value)
        a_beats += _beats(params, job.a, rng)
        if job.b is not None:
            b_beats += _beats(params, job.b, rng)
    return commands, a_beats, b_beats


def simulate(unit, params, jobs, *, probability: float, seed: int, layout=None):
    """Run ``jobs`` through ``unit`` (a row unit or an element-wise unit; ``layout`` its
    command's, see :func:`stream_payloads`) in Amaranth's simulator, every stream valid or
    ready with ``probability`` a cycle. Returns the result payloads and the cycles at which
    the first command, ``a`` and ``b`` beats moved, the first result (``result``) and the last
    (``final``). Asserts that ``unit.busy`` is low after the last result."""
    # here, not at the top: loads Amaranth (the cocotb test does without it)
    from amaranth.hdl import Module, Signal
    from amaranth.sim import Simulator  # here, not at the top: loads Amaranth

    commands, a_beats, b_beats = stream_payloads(params, jobs, padding_seed=seed,
                                                 layout=layout)
    count = result_beat_count(params, jobs)
    rng = np.random.default_rng(seed)
    results, moments = [], {}
    cycle = Signal(32)

    def sender(port, payloads, name):
        async def send(ctx):
            for payload in payloads:
                while rng.random() >= probability:
                    ctx.set(port.valid, 0)
                    await ctx.tick()
                ctx.set(port.payload.as_value(), payload)
                ctx.set(port.valid, 1)
                await ctx.tick().until(port.ready)
                moments.setdefault(name, ctx.get(cycle))
            ctx.set(port.valid, 0)
        return send

    async def receive(ctx):
        while len(results) < count:
            ready = rng.random() < probability
            ctx.set(unit.result.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(unit.result.valid,
                                                           unit.result.payload.as_value())
            if ready and valid:
                moments.setdefault("result", ctx.get(cycle))
                moments["final"] = ctx.get(cycle)
                results.append(payload)
        ctx.set(unit.result.ready, 0)
        await ctx.tick()
        assert not ctx.get(unit.busy), "busy after the last result"

    top = Module()
    top.submodules.unit = unit
    top.d.sync += cycle.eq(cycle + 1)
    simulator = Simulator(top)
    simulator.add_clock(1e-8)
    for name, port, payloads in (("command", unit.command, commands), ("a", unit.a, a_beats),
                                 ("b", unit.b, b_beats)):
        simulator.add_testbench(sender(port, payloads, name), background=True)
    simulator.add_testbench(receive)
    simulator.run()
    return results, moments


def _beats(params, values, rng) -> list[int]:
    lanes, width = params.vector_lanes, params.vector_bits
    padded = rng.integers(-(1 << (width - 1)), 1 << (width - 1), -(-len(values) // lanes) * lanes)
    padded[:len(values)] = values
    return [pack_lanes(beat, width) for beat in padded.reshape(-1, lanes)]


def unpack_result(value: int, params) -> tuple[list[int], int, int]:
    """A result payload as ``(lanes, mask, last)``."""
    lanes, width = params.vector_lanes, params.vector_bits
    data = [(value >> (width * lane)) & ((1 << width) - 1) for lane in range(lanes)]
    data = [lane - (1 << width) if lane >> (width - 1) else lane for lane in data]
    return data, (value >> (width * lanes)) & ((1 << lanes) - 1), value >> (width * lanes + lanes)


def result_beat_count(params, jobs) -> int:
    return sum(-(-len(job.a) // params.vector_lanes) for job in jobs)


def check_results(params, jobs, results) -> None:
    """Assert that the result payloads are the jobs' golden results, masks and last flags.

    Raises
    ------
    AssertionError
        Naming the first job (operation, operands) and element that differ.
    """
    lanes = params.vector_lanes
    beats = iter(results)
    for number, job in enumerate(jobs):
        count = -(-len(job.a) // lanes)
        got, masks, lasts = [], [], []
        for _ in range(count):
            data, mask, last = unpack_result(next(beats), params)
            got += data
            masks.append(mask)
            lasts.append(last)
        final = len(job.a) - (count - 1) * lanes
        assert masks == [(1 << lanes) - 1] * (count - 1) + [(1 << final) - 1], \
            f"job {number} ({job.operation.name}, length {len(job.a)}): masks {masks}"
        assert lasts == [0] * (count - 1) + [1], f"job {number}: last flags {lasts}"
        got = np.array(got[:len(job.a)], dtype=np.int64)
        wrong = np.flatnonzero(got != job.expected)
        assert not wrong.size, (
            f"job {number} ({job.operation.name}, scale {job.scale}, shift {job.shift}): "
            f"{wrong.size} wrong, first at element {wrong[0]}: a={job.a[wrong[0]]}"
            + (f" b={job.b[wrong[0]]}" if job.b is not None else "")
            + f" -> {got[wrong[0]]}, golden {job.expected[wrong[0]]}")
    assert next(beats, None) is None, "more result beats than the jobs ask for"


@cocotb.test()
async def random_commands(dut):
    """Random commands of every operation, random stalls on every stream, golden results."""

    config = test_config()
    params = AcceleratorParameters.from_dict(config["params"])
    seed = config["seed"]
    layout, operations = None, tuple(RowOperation)
    if config.get("unit") == "elementwise":
        # here, not at the top: loads Amaranth
        from tern_fpga.hw.dataflow.elementwise import OPERATIONS, command_layout

        layout, operations = command_layout(params), OPERATIONS
    jobs = make_jobs(params, np.random.default_rng(seed), repeats=config["repeats"],
                     operations=operations)
    commands, a_beats, b_beats = stream_payloads(params, jobs, padding_seed=seed, layout=layout)
    probability = config["probability"]
    await start_clock_and_reset(dut)
    senders = [cocotb.start_soon(StreamDriver(dut, name, probability=probability, seed=seed + i)
                                 .send(payloads))
               for i, (name, payloads) in enumerate(
                   (("command", commands), ("a", a_beats), ("b", b_beats)))]
    sink = StreamSink(dut, "result", probability=probability, seed=seed + 3)
    results = await sink.receive(result_beat_count(params, jobs))
    for sender in senders:
        await sender
    check_results(params, jobs, results)
