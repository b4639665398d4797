"""The matrix reader (hw/dataflow/matrix_reader.py) alone, in Amaranth's simulator: the started
TMVs' scales go out in start order, each the value of its register in a cycle where the
register was final (``scale_ready``), and the matrix pipe's ``released`` pulses reach the
scoreboard (``release``) only for TMVs whose scale has gone out: what lets a younger QUANT
write the register. The core's tests (test_dataflow_core.py) check the whole on real values;
there the pipe's queues are deep enough that a release never comes before its scale, so this
order is checked here."""

import random

import pytest

from tern_fpga.contracts.isa import SCALE_REGISTERS, Opcode
from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.dataflow.matrix_reader import MatrixReader

from support.simulation import simulate

PARAMS = PRESETS["micro"]
TMVS = 40


@pytest.mark.parametrize("seed", range(2))
def test_scales_go_in_start_order_and_releases_wait_for_them(seed):
    rng = random.Random(f"matrix-reader{seed}")
    dut = MatrixReader(PARAMS, max_segments=2)
    registers = [rng.randrange(SCALE_REGISTERS) for _ in range(TMVS)]

    async def testbench(ctx, dut):
        values = [rng.randrange(1 << PARAMS.scale_mantissa_bits) for _ in range(SCALE_REGISTERS)]
        ready = [1] * SCALE_REGISTERS
        fed = started = sent = releases = pipe_releases = finished = 0
        expected = []                   # each started TMV's possible scales (final values)
        for cycle in range(4000):
            # Registers turn non-final and change value, then turn final, at random.
            for register in range(SCALE_REGISTERS):
                if rng.random() < 0.05:
                    ready[register] ^= 1
                    if not ready[register]:
                        values[register] = rng.randrange(1 << PARAMS.scale_mantissa_bits)
                ctx.set(dut.scales[register].mantissa, values[register])
            ctx.set(dut.scale_ready, sum(bit << index for index, bit in enumerate(ready)))
            if fed < TMVS:
                ctx.set(dut.instruction.payload, {"opcode": Opcode.TMV, "dst": 0, "a": 1,
                                                  "b": registers[fed], "length": 4,
                                                  "imm": 0, "flags": 0})
            ctx.set(dut.instruction.valid, fed < TMVS)
            ctx.set(dut.go, rng.random() < 0.7)
            ctx.set(dut.command.ready, rng.random() < 0.7)
            ctx.set(dut.scale.ready, rng.random() < 0.4)
            pulse = pipe_releases < started and rng.random() < 0.3
            ctx.set(dut.released, pulse)
            finish = finished < pipe_releases and rng.random() < 0.5      # the pipe's done
            ctx.set(dut.done.valid, finish)
            sampled = await ctx.tick().sample(
                dut.instruction.ready, dut.read, dut.release, dut.scale.valid,
                dut.scale.ready, dut.scale.payload)
            instruction_taken, read, release, scale_valid, scale_ready, scale = sampled[2:]
            fed += fed < TMVS and instruction_taken
            pipe_releases += pulse
            finished += finish
            if read:
                started += 1
            if scale_valid and scale_ready:
                assert sent < started, f"a scale out before its TMV started (cycle {cycle})"
                assert scale.mantissa in expected[sent], (
                    f"TMV {sent}'s scale {scale.mantissa} was never register "
                    f"{registers[sent]}'s final value")
                sent += 1
            # A scale is sent from the output register: it may be taken only later, but it was
            # read when final; record what each started TMV may legally receive.
            while len(expected) < started:
                expected.append(set())
            for index in range(sent, started):
                if ready[registers[index]]:
                    expected[index].add(values[registers[index]])
            if release:
                releases += 1
                assert releases <= pipe_releases, "a release the pipe did not give"
                assert releases <= sent + 1, (
                    f"TMV {releases - 1} released before its scale was taken (cycle {cycle})")
            if releases == TMVS and sent == TMVS:
                break
        assert (fed, started, sent, releases) == (TMVS,) * 4

    simulate(dut, testbench)
