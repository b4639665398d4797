# amaranth: UnusedElaboratable=no
"""The dataflow core's sequencer (hw/dataflow/sequencer.py) in Amaranth's simulator: a program
memory filled partly at elaboration and partly by the host's 32-bit writes, random
instructions with HALTs among them, runs from random entries into a scoreboard stand-in that
stalls at random and a core that stays busy for a random while after the last instruction.
Each run's instructions equal :func:`run_instructions`' (the golden function), its token goes
to ``set_token``, ``done`` waits for ``idle`` and carries the token register, and the counters
count what the interface says."""

import random

import pytest
from amaranth.sim import Simulator

from tern_fpga.contracts.isa import FIELDS, Flag, Instruction, Opcode, encode
from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.dataflow.scoreboard import instruction_layout
from tern_fpga.hw.dataflow.sequencer import Sequencer, program_values
from tern_fpga.sim.golden.run_plan import run_instructions

PARAMS = PRESETS["demo"]
# The scoreboard's address fields' range: random fields stay inside what the payload holds.
ADDRESSES = instruction_layout(PARAMS)["dst"].shape.stop


def _random_program(rng, count):
    """``count`` random instructions, about one in six a HALT, the last a HALT; fields in
    the ranges the scoreboard's instruction layout holds."""
    opcodes = [opcode for opcode in Opcode if opcode != Opcode.HALT]
    program = []
    for index in range(count):
        halt = index == count - 1 or rng.random() < 1 / 6
        program.append(Instruction(
            opcode=Opcode.HALT if halt else rng.choice(opcodes),
            dst=rng.randrange(ADDRESSES), a=rng.randrange(ADDRESSES),
            b=rng.randrange(ADDRESSES), length=rng.randrange(1, 1 << FIELDS["length"][1]),
            imm=rng.randrange(1 << FIELDS["imm"][1]),
            flags=Flag(rng.randrange(1 << FIELDS["flags"][1]) & int(Flag.ARGMAX | Flag.NO_WRITE))))
    return program


@pytest.mark.parametrize("seed", [1, 2])
def test_runs_issue_the_golden_instructions(seed):
    rng = random.Random(seed)
    program = _random_program(rng, 40)
    values = program_values(encode(program))
    preloaded = rng.randrange(len(program))         # the rest the host writes
    dut = Sequencer(PARAMS, init=values[:preloaded])
    words = encode(program)
    entries = [rng.randrange(len(program)) for _ in range(6)]
    runs = []

    async def testbench(ctx):
        for address in range(4 * preloaded, len(words)):     # the host's 32-bit writes
            ctx.set(dut.host.addr, address >> 2)
            ctx.set(dut.host.write_data, int(words[address]) * (2**96 + 2**64 + 2**32 + 1))
            ctx.set(dut.host.write_en, 1 << (address & 3))
            await ctx.tick()
        ctx.set(dut.host.write_en, 0)
        for address in rng.sample(range(len(program)), len(program)):   # and reads
            ctx.set(dut.host.addr, address)
            ctx.set(dut.host.read_en, 1)
            await ctx.tick()
            ctx.set(dut.host.read_en, 0)
            assert ctx.get(dut.host.read_data) == values[address], f"instruction {address}"
        counted = 0
        for entry in entries:
            token = rng.randrange(PARAMS.embedding_memory_words)
            ctx.set(dut.run.payload, {"entry": entry, "token": token})
            ctx.set(dut.run.valid, 1)
            ctx.set(dut.set_token.ready, 1)
            ctx.set(dut.idle, 1)
            set_tokens, issued, cycles = [], [], 0
            while True:
                _, _, ready, token_valid, token_payload = await ctx.tick().sample(
                    dut.run.ready, dut.set_token.valid, dut.set_token.payload)
                if token_valid:
                    set_tokens.append(token_payload)
                if ready:
                    break
            ctx.set(dut.run.valid, 0)
            assert ctx.get(dut.busy)
            cycles_before = ctx.get(dut.cycles)
            register = rng.randrange(PARAMS.embedding_memory_words)
            ctx.set(dut.token, register)
            busy_for = None
            while True:
                cycles += 1
                take = rng.random() < 0.6
                ctx.set(dut.instruction.ready, take)
                ctx.set(dut.done.ready, rng.random() < 0.5)
                # The core stays busy while instructions come and a while after the last.
                ctx.set(dut.idle, busy_for == 0)
                _, _, valid, payload, done_valid, done_ready, done_payload = \
                    await ctx.tick().sample(dut.instruction.valid, dut.instruction.payload,
                                            dut.done.valid, dut.done.ready, dut.done.payload)
                assert not (done_valid and busy_for != 0), "done before the core was idle"
                if valid and take:
                    issued.append(payload)
                    busy_for = rng.randrange(0, 6)
                elif busy_for is None:
                    busy_for = rng.randrange(0, 6) if not valid else None
                elif busy_for:
                    busy_for -= 1
                if done_valid and done_ready:
                    assert done_payload == register
                    break
            ctx.set(dut.done.ready, 0)
            ctx.set(dut.instruction.ready, 0)
            assert not ctx.get(dut.busy)
            assert ctx.get(dut.cycles) - cycles_before == cycles
            counted += len(issued)
            assert ctx.get(dut.instructions) == counted
            runs.append((entry, token, set_tokens, issued))

    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(testbench)
    simulator.run()
    assert len(runs) == len(entries)
    for entry, token, set_tokens, issued in runs:
        assert set_tokens == [token]
        expected = run_instructions(program, entry)
        assert len(issued) == len(expected)
        for got, want in zip(issued, expected, strict=True):
            assert Opcode(got.opcode) == want.opcode
            assert (got.dst, got.a, got.b, got.length, got.imm, got.flags) == (
                want.dst, want.a, want.b, want.length, want.imm, int(want.flags))


def test_a_program_without_halt_is_refused_by_the_golden_function():
    program = [Instruction(opcode=Opcode.ADD, dst=0, a=0, b=0, length=1)]
    with pytest.raises(ValueError, match="no HALT follows entry 0"):
        run_instructions(program, 0)


def test_too_long_a_program_is_refused():
    with pytest.raises(ValueError, match="do not fit the preset's program memory of 512"):
        Sequencer(PARAMS, init=[0] * (PARAMS.program_words + 1))
