"""The dataflow core's matrix pipe (``hw/dataflow/matrix_pipe.py``) with block-RAM weight and
activation memories, in Amaranth's simulator: what its tests and ``make bench`` run.

:func:`tmv_case` builds TMVs on random weights (two activation vectors, one per buffer, each with
its own width and segment count) with the golden model's values and tokens;
:func:`run_tmvs` runs them through the pipe, applies its writes to a model of the vector
memory and returns what came out and when.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
from amaranth.hdl import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from tern_fpga.contracts import numerics
from tern_fpga.contracts.segmented_layout import (
    pack_segmented_words,
    segmented_activation_words,
    segmented_shape,
)
from tern_fpga.contracts.weight_layout import weight_word_to_int
from tern_fpga.hw.dataflow.matrix_pipe import MatrixPipe, activation_words

__all__ = ["PipeHarness", "PipeRun", "TMVCase", "run_tmvs", "tmv_case"]


class PipeHarness(wiring.Component):
    """The pipe with its weight and activation memories, filled at reset; the prefetch is
    always taken and every weight word available (block RAM)."""

    def __init__(self, params, max_segments, weight_words, activation_rows):
        self.pipe = MatrixPipe(params, max_segments=max_segments)
        self._params = params
        self._weights = weight_words
        self._activations = activation_rows
        super().__init__({name: member for name, member in self.pipe.signature.members.items()
                          if name in ("command", "scale", "write", "done", "busy")})

    def elaborate(self, platform):
        m = Module()
        m.submodules.pipe = pipe = self.pipe
        params = self._params
        m.submodules.weights = weights = Memory(
            shape=unsigned(2 * params.ternary_lanes), depth=len(self._weights),
            init=self._weights)
        m.submodules.activations = activations = Memory(
            shape=unsigned(8 * params.ternary_lanes), depth=len(self._activations),
            init=self._activations)
        weight_read, activation_read = weights.read_port(), activations.read_port()
        m.d.comb += [
            weight_read.addr.eq(pipe.matrix_addr), weight_read.en.eq(pipe.matrix_en),
            pipe.matrix_data.eq(weight_read.data), pipe.matrix_available.eq(1),
            pipe.prefetch.ready.eq(1),
            activation_read.addr.eq(pipe.activation_addr),
            activation_read.en.eq(pipe.activation_en),
            pipe.activation_data.eq(activation_read.data),
            self.busy.eq(pipe.busy),
        ]
        for name in ("command", "scale", "write", "done"):
            wiring.connect(m, getattr(pipe, name), wiring.flipped(getattr(self, name)))
        return m


@dataclasses.dataclass
class TMVCase:
    """Weight words, activation rows and commands (each a dict: ``payload`` for the pipe,
    ``scale`` (its ``scale`` stream's payload), ``values`` (``None`` for NO_WRITE), ``token``,
    ``dst``, ``words``)."""

    weight_words: list
    activation_rows: list
    commands: list

    @property
    def words(self) -> int:
        return sum(command["words"] for command in self.commands)

    def expected_memory(self) -> dict:
        """Vector element -> value, as the golden model writes them."""
        expected = {}
        for command in self.commands:
            if command["values"] is not None:
                expected.update({command["dst"] + row: int(value)
                                 for row, value in enumerate(command["values"])})
        return expected


def tmv_case(params, max_segments, shapes, rng: random.Random, *, buffers=None) -> TMVCase:
    """TMVs of ``shapes`` (``(rows, buffer, no_write)`` each) on random ternary weights.

    ``buffers`` gives each activation buffer's ``(segments, in_features)``; by default random
    ones (buffer 0 with ``max_segments``). The destinations are disjoint, each a multiple of
    ``V``.
    """
    lanes = params.vector_lanes
    buffer_words = activation_words(params, max_segments)
    if buffers is None:
        buffers = []
        for buffer in range(2):
            segments = max_segments if buffer == 0 else 1 << rng.randrange(
                max_segments.bit_length())
            width = params.ternary_lanes // segments
            buffers.append((segments, rng.randrange(
                1, min(params.max_features, buffer_words * width) + 1)))
    vectors = []
    activation_rows = [0] * (2 * buffer_words)
    for buffer, (segments, in_features) in enumerate(buffers):
        x = np.random.default_rng(rng.getrandbits(32)).integers(-128, 128, size=in_features)
        vectors.append(x)
        shape = segmented_shape(1, in_features, params, segments)
        for beat, row in enumerate(segmented_activation_words(x, shape)):
            activation_rows[buffer * buffer_words + beat] = sum(
                (int(value) & 0xFF) << (8 * lane) for lane, value in enumerate(row))
    weight_words, commands, dst = [], [], 0
    for rows, buffer, no_write in shapes:
        (segments, in_features), x = buffers[buffer], vectors[buffer]
        w_t = np.random.default_rng(rng.getrandbits(32)).integers(-1, 2, (rows, in_features))
        shape = segmented_shape(rows, in_features, params, segments)
        words = pack_segmented_words(w_t, params, segments)
        scale = numerics.Scale(rng.randrange(1 << params.scale_mantissa_bits),
                               rng.randrange(-30, 4))
        sums = w_t.astype(np.int64) @ x
        commands.append({
            "payload": {"weight_start": len(weight_words), "words": shape.words,
                        "rows": rows, "beats": shape.beats,
                        "segments_log2": segments.bit_length() - 1,
                        "activation_start": buffer * buffer_words, "dst": dst,
                        "no_write": no_write},
            "scale": {"mantissa": scale.mantissa, "exponent": scale.exponent},
            "values": None if no_write else numerics.apply_scale(sums, scale, params),
            "token": int(np.argmax(sums)), "dst": dst, "words": shape.words})
        weight_words += [weight_word_to_int(word) for word in words]
        dst += -(-rows // lanes) * lanes + lanes * rng.randrange(2)
    return TMVCase(weight_words, activation_rows, commands)


@dataclasses.dataclass
class PipeRun:
    """What came out: ``memory`` (element -> value written), ``tokens`` (one a command) and
    ``cycles`` (from the first command offered to the last ``done`` taken)."""

    memory: dict
    tokens: list
    cycles: int


def run_tmvs(params, max_segments, case: TMVCase, *, write_ready=1.0, done_ready=1.0,
             scale_delay=0, rng: random.Random | None = None) -> PipeRun:
    """Run ``case``'s commands back to back; the write and done streams are ready with the
    given probabilities (1: always). Each command's scale is offered ``scale_delay`` cycles
    after the command is taken (at random from 0 to ``-scale_delay`` if negative), as the
    core's scale may come some cycles after a TMV's start.

    Raises
    ------
    RuntimeError
        If the pipe does not finish within 60 cycles a word (it hangs).
    """
    rng = rng or random.Random(0)
    dut = PipeHarness(params, max_segments, case.weight_words, case.activation_rows)
    memory, tokens, cycles = {}, [], []
    commands = case.commands

    taken = []                                        # the cycle each command was taken
    delays = [rng.randrange(-scale_delay + 1) if scale_delay < 0 else scale_delay
              for _ in commands]

    async def feed(ctx):
        cycle = 0
        for command in commands:
            ctx.set(dut.command.payload, command["payload"])
            ctx.set(dut.command.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(dut.command.ready)
                cycle += 1
                if ready:
                    break
            taken.append(cycle)
        ctx.set(dut.command.valid, 0)

    async def feed_scales(ctx):
        cycle = 0
        for index, command in enumerate(commands):
            while len(taken) <= index or cycle < taken[index] + delays[index]:
                await ctx.tick()
                cycle += 1
            ctx.set(dut.scale.payload, command["scale"])
            ctx.set(dut.scale.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(dut.scale.ready)
                cycle += 1
                if ready:
                    break
            ctx.set(dut.scale.valid, 0)

    async def drain(ctx):
        for cycle in range(60 * case.words + 2000):
            write = rng.random() < write_ready
            done = rng.random() < done_ready
            ctx.set(dut.write.ready, write)
            ctx.set(dut.done.ready, done)
            _, _, write_valid, written, done_valid, finished = await ctx.tick().sample(
                dut.write.valid, dut.write.payload, dut.done.valid, dut.done.payload)
            if write and write_valid:
                for lane in range(params.vector_lanes):
                    if written.mask >> lane & 1:
                        memory[written.address * params.vector_lanes + lane] = int(
                            written.data[lane])
            if done and done_valid:
                tokens.append(int(finished.token))
                if len(tokens) == len(commands):
                    cycles.append(cycle + 1)
                    break
        await ctx.tick()
        if ctx.get(dut.busy):
            raise RuntimeError("the matrix pipe is still busy after its last done")

    simulator = Simulator(dut)
    simulator.add_clock(1e-6)
    simulator.add_testbench(feed)
    simulator.add_testbench(feed_scales)
    simulator.add_testbench(drain)
    simulator.run()
    if not cycles:
        raise RuntimeError(f"the matrix pipe gave {len(tokens)} of {len(commands)} done beats "
                           f"in {60 * case.words + 2000} cycles")
    return PipeRun(memory, tokens, cycles[0])
