"""Cycles a decode step would take on the dataflow core (issue 15, ``docs/dataflow.md``): a
schedule of the compiled program, beat by beat, on the units the core is built from.

:func:`tern_fpga.explore.schedule.overlap_bound` lets an instruction start only when the ones it
depends on have finished. The dataflow core streams instead: an element-wise instruction takes
a beat as soon as the beats it reads are in the vector memory, so it runs behind the TMV or the
instruction that produces them. This module schedules the program that way, to say what the
core can reach before it is wired together, and which parameters (``P``, ``V``, the norm unit's
latency) decide it:

- the matrix side (``MatrixPipe``) reads one weight word a cycle, TMVs back to back; a TMV may
  start when the QUANT that fills its activation buffer has written its last beat (every group
  reads the whole buffer); the values of row group ``g`` are in the vector memory
  ``(g + 1) * beats + MATRIX_DRAIN`` cycles after the TMV starts;
- the element-wise unit (``ElementwiseUnit``) takes ``V`` elements a cycle; beat ``j`` issues
  when every element it reads is written and after the unit's previous beat, and its result is
  written ``ELEMENTWISE_LATENCY`` cycles later;
- the norm unit (NORM, QUANT) makes two passes: the first streams like an element-wise
  instruction, then the scalar engine runs, then the second pass writes;
- write-after-read and write-after-write on a vector element delay the writer's beat until
  after the earlier access (the compiler reuses buffers); the activation buffers alternate
  between QUANTs, and a QUANT waits until the TMVs that read its buffer have read it;
- each unit runs its instructions in program order, one beat a cycle.

The result is *projected*: the units' latencies are those of the units built so far (measured
in simulation, see the constants) and of today's norm unit, which the dataflow core has still
to replace.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tern_fpga.contracts.isa import Flag, Opcode
from tern_fpga.contracts.segmented_layout import best_segments, segmented_shape
from tern_fpga.sim.golden.run_plan import step_instructions

__all__ = ["DataflowSchedule", "DataflowTiming", "dataflow_schedule", "fused_step", "fusion_plan"]

#: Cycles from a TMV's command to its last values in the vector memory, beyond its weight words:
#: one TMV alone in ``MatrixPipe`` at P = 256 takes its words plus 22 cycles from the command to
#: its ``done`` (``tests/explore/test_dataflow_schedule.py`` checks this in simulation; 26 before
#: the pipe's command queue and output FIFOs became first-word-fall-through and the queue passed
#: a command to an idle reader in the cycle it comes, 2026-12-07).
MATRIX_DRAIN = 21
#: ``ElementwiseUnit.latency`` (14), its output FIFO (2), a vector-memory read and a write.
ELEMENTWISE_LATENCY = 18


@dataclasses.dataclass(frozen=True)
class DataflowTiming:
    """The units' figures the schedule uses (defaults: see the module's constants and
    :mod:`tern_fpga.explore.cycle_model` for today's norm unit)."""

    max_segments: int = 2
    matrix_drain: int = MATRIX_DRAIN
    elementwise_latency: int = ELEMENTWISE_LATENCY
    #: Norm unit: cycles from pass 1's last beat to pass 2's first, less the scalar engine's.
    norm_turnaround: int = 3 + 7 + 3
    #: Norm unit: cycles from a pass-2 beat to its value written.
    norm_tail: int = 5
    #: The scalar engine's latency for NORM and for QUANT.
    engine_latency: tuple[int, int] = (23, 27)
    #: Schedule a NORM whose result only QUANTs read as part of those QUANTs: each takes the
    #: NORM's input and makes one pass for both statistics (a numerics change the golden model
    #: does not have; ``docs/dataflow.md``).
    fuse_norm_into_quant: bool = False
    #: When set: QUANT's second pass waits only for the reciprocal (its ``q`` does not depend on
    #: the rsqrt), computed in this many cycles; the output scale (the engine's full latency)
    #: need only reach the TMV's row-sum scaler, one activation pass into the TMV.
    reciprocal_latency: int | None = None


@dataclasses.dataclass(frozen=True)
class DataflowSchedule:
    """One step: ``cycles`` (to the LM head's last word and its ArgMax), ``matrix_busy`` (the
    weight words, read one a cycle), ``matrix_idle`` (cycles the matrix side waits for
    activations) and per instruction its ``(opcode, start, finish)``."""

    cycles: int
    matrix_busy: int
    matrix_idle: int
    timeline: tuple

    @property
    def matrix_utilisation(self) -> float:
        return self.matrix_busy / self.cycles


def dataflow_schedule(compiled, *, ternary_lanes: int | None = None,
                      vector_lanes: int | None = None,
                      timing: DataflowTiming = DataflowTiming()) -> DataflowSchedule:
    """Schedule the ``step`` entry (up to HALT) of a compiled model on the dataflow core with
    ``P = ternary_lanes`` and ``V = vector_lanes`` (by default the compiled preset's)."""
    compiled_lanes = compiled.params.ternary_lanes
    params = dataclasses.replace(
        compiled.params, ternary_lanes=ternary_lanes or compiled_lanes,
        vector_lanes=vector_lanes or compiled.params.vector_lanes)
    lanes = params.vector_lanes
    written = np.zeros(params.vector_memory_words, dtype=np.int64)   # cycle a value is in
    last_read = np.zeros(params.vector_memory_words, dtype=np.int64)
    buffer_ready = [0, 0]        # cycle a QUANT's last activation is in each buffer
    buffer_read = [0, 0]         # cycle the last TMV reading a buffer read its last word
    scale_ready = [0, 0]         # cycle the scalar engine has a QUANT's output scale
    free = {"matrix": 0, "elementwise": 0, "norm": 0}
    buffer, matrix_busy, matrix_idle, timeline = 0, 0, 0, []

    def stream(start, length, sources, dst, latency, own_free):
        """Issue times of ``ceil(length / V)`` beats reading ``sources`` (start elements) and
        writing ``dst`` (or ``None``) ``latency`` cycles after; returns the issue times."""
        beats = -(-length // lanes)
        issue = np.empty(beats, dtype=np.int64)
        time = max(start, own_free)
        for beat in range(beats):
            elements = slice(beat * lanes, min(length, (beat + 1) * lanes))
            ready = max([int(written[source + elements.start:source + elements.stop].max())
                         for source in sources] + [time])
            if dst is not None:
                region = slice(dst + elements.start, dst + elements.stop)
                ready = max(ready, int(last_read[region].max()) + 1 - latency,
                            int(written[region].max()) + 1 - latency)
            issue[beat] = time = ready
            time += 1
        for source in sources:
            for beat, moment in enumerate(issue):
                region = slice(source + beat * lanes, source + min(length, (beat + 1) * lanes))
                last_read[region] = np.maximum(last_read[region], moment)
        if dst is not None:
            for beat, moment in enumerate(issue):
                written[dst + beat * lanes:dst + min(length, (beat + 1) * lanes)] = \
                    moment + latency
        return issue

    step = step_instructions(compiled)
    if timing.fuse_norm_into_quant:
        step = fused_step(step)
    for instruction in step:
        opcode, n = instruction.opcode, instruction.length
        if opcode == Opcode.TMV:
            in_features = instruction.a * compiled_lanes     # words a row at the compiled P
            segments = best_segments(n, in_features, params, timing.max_segments)
            shape = segmented_shape(n, in_features, params, segments)
            # The scaler needs the scale with the first group's sums, a pass over the
            # activations after the start.
            start = max(free["matrix"], buffer_ready[buffer],
                        scale_ready[buffer] - shape.beats)
            matrix_idle += start - free["matrix"]
            matrix_busy += shape.words
            free["matrix"] = start + shape.words
            buffer_read[buffer] = max(buffer_read[buffer], start + shape.words - 1)
            finish = start + shape.words + timing.matrix_drain
            if not instruction.flags & Flag.NO_WRITE:
                rows = np.arange(n)
                times = start + (rows // segments + 1) * shape.beats + timing.matrix_drain
                region = slice(instruction.dst, instruction.dst + n)
                # A TMV's writes wait for earlier readers and writers of its destination: the
                # whole TMV starts later (its reads cannot pause for one row).
                late = int(max((last_read[region] + 1 - times).max(),
                               (written[region] + 1 - times).max(), 0))
                start, times, finish = start + late, times + late, finish + late
                free["matrix"] += late
                matrix_idle += late
                written[region] = times
            timeline.append((opcode.name, start, finish))
        elif opcode in (Opcode.NORM, Opcode.QUANT):
            quant = opcode == Opcode.QUANT
            pass_one = stream(0, n, [instruction.a], None, 0, free["norm"])
            turnaround = timing.norm_turnaround + int(math.log2(lanes))
            engine_done = int(pass_one[-1]) + 1 + turnaround + timing.engine_latency[quant]
            second = engine_done
            if quant:
                buffer ^= 1
                if timing.reciprocal_latency is not None:
                    second = int(pass_one[-1]) + 1 + turnaround + timing.reciprocal_latency
                scale_ready[buffer] = engine_done
                second = max(second, buffer_read[buffer] + 1)
                pass_two = stream(second, n, [instruction.a], None, 0, 0)
                buffer_ready[buffer] = int(pass_two[-1]) + timing.norm_tail
                buffer_read[buffer] = 0
                finish = buffer_ready[buffer]
            else:
                pass_two = stream(second, n, [instruction.a], instruction.dst,
                                  timing.norm_tail, 0)
                finish = int(pass_two[-1]) + timing.norm_tail
            free["norm"] = int(pass_two[-1]) + 1
            timeline.append((opcode.name, int(pass_one[0]), finish))
        else:
            sources = [instruction.a] if opcode != Opcode.EMBED else []
            if opcode in (Opcode.MUL, Opcode.ADD, Opcode.SUB):
                sources.append(instruction.b)
            if opcode == Opcode.ZERO:
                sources = []
            issue = stream(0, n, sources, instruction.dst, timing.elementwise_latency,
                           free["elementwise"])
            free["elementwise"] = int(issue[-1]) + 1
            timeline.append((opcode.name, int(issue[0]),
                             int(issue[-1]) + timing.elementwise_latency))
    cycles = max(finish for _, _, finish in timeline)
    return DataflowSchedule(cycles, matrix_busy, matrix_idle, tuple(timeline))


def fusion_plan(step) -> dict[int, int]:
    """For a NORM whose result is read only by QUANTs (until it is overwritten), each of those
    QUANTs' index in ``step`` mapped to the NORM's: such a QUANT may read the NORM's input and
    make one pass for both (``docs/dataflow.md``, "NORM folded")."""
    plan = {}
    for index, norm in enumerate(step):
        if norm.opcode != Opcode.NORM:
            continue
        result = range(norm.dst, norm.dst + norm.length)
        readers = []
        for later, instruction in enumerate(step[index + 1:], index + 1):
            sources = [instruction.a] + ([instruction.b] if instruction.opcode in (
                Opcode.MUL, Opcode.ADD, Opcode.SUB) else [])
            if any(_overlaps(result, range(source, source + instruction.length))
                   for source in sources if instruction.opcode != Opcode.EMBED):
                readers.append(later)
            if instruction.opcode not in (Opcode.TMV, Opcode.QUANT) and _overlaps(
                    result, range(instruction.dst, instruction.dst + instruction.length)):
                break
            if instruction.opcode == Opcode.TMV and not instruction.flags & Flag.NO_WRITE \
                    and _overlaps(result, range(instruction.dst,
                                                instruction.dst + instruction.length)):
                break
        if readers and all(step[later].opcode == Opcode.QUANT and step[later].a == norm.dst
                           for later in readers):
            plan.update((later, index) for later in readers)
    return plan


def fused_step(step):
    """``step`` with each NORM of :func:`fusion_plan` removed, and its QUANTs reading the
    NORM's input instead."""
    plan = fusion_plan(step)
    folded = set(plan.values())
    return [dataclasses.replace(instruction, a=step[plan[index]].a) if index in plan
            else instruction for index, instruction in enumerate(step) if index not in folded]


def _overlaps(first: range, second: range) -> bool:
    return first.start < second.stop and second.start < first.stop
