"""Programs on the dataflow core (:mod:`tern_fpga.hw.dataflow.core`) in Amaranth's simulator:
a run's instructions from a golden model's state (:func:`run_program`), a compiled model's decode
step (:func:`step_after_prompt`), and the memories they start from (:func:`core_contents`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from amaranth.sim import Simulator

from tern_fpga.contracts.isa import Instruction, Opcode
from tern_fpga.contracts.lanes import unpack_lanes
from tern_fpga.contracts.segmented_layout import plain_matrix, segment_program
from tern_fpga.hw.dataflow.core import dataflow_core
from tern_fpga.sim.golden.model import GoldenModel
from tern_fpga.sim.golden.run_plan import step_instructions

__all__ = ["CoreRun", "core_contents", "golden_before_step", "run_program", "step_after_prompt"]


@dataclasses.dataclass
class CoreRun:
    """What a program left: ``memory`` (the vector memory, an element a value), ``token``
    (the token register) and ``cycles`` (the sequencer's count: from the ``run`` beat until
    the ``done`` beat, every result written)."""

    memory: np.ndarray
    token: int
    cycles: int


def core_contents(golden, program, max_segments: int) -> dict:
    """:func:`dataflow_core`'s memories for running ``program`` (a run's instructions, no
    HALT) from ``golden``'s state: its vector memory, embeddings and constants, its weights in
    the segmented layout (:func:`~tern_fpga.contracts.segmented_layout.segment_program`) and
    the segmented program with a HALT."""

    segmented, weights = segment_program(
        program, lambda instruction: plain_matrix(golden.weights, instruction), golden.params,
        max_segments)
    return {"vector": golden.memory.copy(), "embeddings": golden.embeddings,
            "constants": golden.constants, "weights": weights,
            "program": [*segmented, Instruction(opcode=Opcode.HALT)]}


def run_program(golden, program, *, max_segments: int, slots: int = 6,
                limit: int = 100_000) -> CoreRun:
    """``program`` (a run's instructions, no HALT) through the core from ``golden``'s state
    (a :class:`~tern_fpga.sim.golden.model.GoldenModel` before it runs ``program``: its vector
    memory, embeddings, constants and token; its weights, in the plain layout, go into the
    segmented one with :func:`~tern_fpga.contracts.segmented_layout.segment_program`): the
    program and a HALT in the program memory, one ``run`` beat from entry 0 with the golden
    model's token, until ``done``. ``cycles`` is the sequencer's count, from the ``run`` beat to
    the ``done`` beat.

    Raises
    ------
    RuntimeError
        If no ``done`` comes within ``limit`` cycles (a deadlock).
    """
    params = golden.params
    lanes, words = params.vector_lanes, params.vector_memory_words // params.vector_lanes
    design = dataflow_core(params, **core_contents(golden, program, max_segments), slots=slots,
                           max_segments=max_segments)
    sequencer = design.sequencer
    results = {}

    async def run(ctx):
        ctx.set(sequencer.run.payload, {"entry": 0, "token": golden.token})
        ctx.set(sequencer.run.valid, 1)
        await ctx.tick().until(sequencer.run.ready)
        ctx.set(sequencer.run.valid, 0)
        ctx.set(sequencer.done.ready, 1)
        for _ in range(limit):
            _, _, done, token = await ctx.tick().sample(sequencer.done.valid,
                                                        sequencer.done.payload)
            if done:
                break
        else:
            return
        ctx.set(sequencer.done.ready, 0)
        results["cycles"], results["token"] = ctx.get(sequencer.cycles), token
        memory = []
        for address in range(words):
            ctx.set(design.read.addr, address)
            ctx.set(design.read.en, 1)
            await ctx.tick()
            memory += unpack_lanes(ctx.get(design.read.data), params.vector_bits, lanes)
        results["memory"] = np.array(memory, dtype=np.int64)

    simulator = Simulator(design.top)
    simulator.add_clock(1e-8)
    simulator.add_testbench(run)
    simulator.run()
    if "cycles" not in results:
        raise RuntimeError(f"the core sent no done within {limit} cycles: a deadlock")
    return CoreRun(results["memory"], int(results["token"]), results["cycles"])


def golden_before_step(compiled, prompt) -> GoldenModel:
    """The golden model of a compiled model with the tokens of ``prompt`` but the last
    stepped, and the last in its token register: the state a decode step on it starts from."""
    golden = GoldenModel(compiled.params, compiled.sections())
    for token in prompt[:-1]:
        golden.step(token)
    golden.token, golden.token_written = prompt[-1], False      # a new run from here
    return golden


def step_after_prompt(compiled, prompt, *, max_segments: int) -> tuple[CoreRun, GoldenModel]:
    """A compiled model's decode step through the core, on the last token of ``prompt`` from the
    state the tokens before it left (:func:`golden_before_step`), and the golden model after
    the same step, for comparing: the whole vector memory and the token register."""
    golden = golden_before_step(compiled, prompt)
    program = step_instructions(compiled)
    run = run_program(golden, program, max_segments=max_segments)
    for instruction in program:
        golden.execute(instruction)
    return run, golden
