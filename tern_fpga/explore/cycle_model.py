"""The core's instruction-level cycle model: cycles per instruction and per token of a compiled
program, equal to Verilator's count at every simulated point (``docs/sweep.md``), and the
Verilator run it is checked against (:func:`simulate_cycles`)."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

from tern_fpga.contracts import paths
from tern_fpga.contracts.isa import Flag, Opcode
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.quant.config import HGRNBitConfig
from tern_fpga.sim.rtl.core_case import run_core, write_case

__all__ = ["MATRIX_HANDOVER_CYCLES", "SEQUENCER_CYCLES", "compiled_layout", "cycles_per_token",
           "instruction_cycles", "runs_beside", "simulate_cycles"]

# Every instruction spends FETCH, DECODE and NEXT in the sequencer; HALT only the first two.
SEQUENCER_CYCLES = 3
# Cycles between the sequencer offering the first operand beat and the read port's data.
_READ_CYCLES = 1
# NORM and QUANT read three constants, one a cycle, before the unit takes its command.
_CONSTANT_CYCLES = 3
# A matrix instruction's tail after the unit's last row sum: the result FIFO, the packing of
# V sums into one SCALE beat and its write.
_TMV_TAIL_CYCLES = 3
# A NO_WRITE matrix instruction's tail after the unit's last row sum: its result FIFO.
_NO_WRITE_TAIL_CYCLES = 2
# NORM/QUANT: the reduction tree's input and output registers, the accumulators and the hand
# over to the scalar engine and back (docs/hardware.md: 7 + log2 V + engine latency between
# vectors), and the core's write of the last result.
_NORM_PIPELINE_CYCLES = 7
_NORM_TAIL_CYCLES = 5


def instruction_cycles(instruction, params: AcceleratorParameters) -> int:
    """Cycles the core spends on one instruction, from its fetch to the next fetch.

    A matrix instruction of ``rows`` rows of ``beats`` words takes one word a cycle; with
    one-word rows the row unit's SCALE takes ``V`` row sums a beat and one cycle to hand the
    beat over, so the rows then flow at ``V / (V + 1)`` a cycle.
    """
    from tern_fpga.hw.row_unit import RowUnit  # here, not at the top: loads Amaranth

    opcode, lanes = instruction.opcode, params.vector_lanes
    beats = -(-instruction.length // lanes)
    if opcode == Opcode.HALT:
        return SEQUENCER_CYCLES - 1
    if opcode == Opcode.ZERO:
        return SEQUENCER_CYCLES + beats
    if opcode in (Opcode.NORM, Opcode.QUANT):
        engine = _latencies(params)[2 if opcode == Opcode.QUANT else 1]
        return (SEQUENCER_CYCLES + _CONSTANT_CYCLES + 2 * beats + _NORM_PIPELINE_CYCLES
                + int(math.log2(lanes)) + engine + _NORM_TAIL_CYCLES)
    if opcode == Opcode.TMV:
        rows, words_per_row = instruction.length, instruction.a
        if instruction.flags & Flag.NO_WRITE:    # ends with the last row sum: no SCALE
            return (SEQUENCER_CYCLES + _READ_CYCLES + rows * words_per_row
                    + _latencies(params)[0] + _NO_WRITE_TAIL_CYCLES)
        stream = rows * words_per_row if words_per_row > 1 else rows + -(-rows // lanes) - 1
        return (SEQUENCER_CYCLES + _READ_CYCLES + stream + _latencies(params)[0]
                + RowUnit.latency + _TMV_TAIL_CYCLES)
    return SEQUENCER_CYCLES + _READ_CYCLES + beats + RowUnit.latency   # the row unit's


@functools.cache
def _latencies(params: AcceleratorParameters) -> tuple[int, int, int]:
    """The matrix unit's latency and the scalar engine's for NORM and QUANT."""
    from tern_fpga.hw.scalar_engine import ScalarEngine  # here, not at the top: loads Amaranth
    from tern_fpga.hw.ternary_matvec import TernaryMatVec  # here, not at the top: loads Amaranth

    matvec, engine = TernaryMatVec(params), ScalarEngine(params)
    for unit in (matvec, engine):
        unit._MustUse__silence = True   # built only to ask its latency, never elaborated
    return matvec.latency, engine.latency(quantize=False), engine.latency(quantize=True)


# A TMV leaves the sequencer after its decode (NEXT, then the next FETCH and DECODE), and
# runs on in the core's matrix context; the sequencer's next instruction waits in DECODE for
# it to finish, two cycles sooner than a sequencer that waited in place would move on.
MATRIX_HANDOVER_CYCLES = 2


def runs_beside(tmv, instruction) -> bool:
    """Whether the core runs ``instruction``, the one after ``tmv``, beside it (``hw/core.py``,
    DECODE): a QUANT that reads nothing the TMV writes. (The core also checks that no other
    QUANT has refilled the activations since the TMV began, which holds for the instruction
    right after it.)"""

    if tmv.opcode != Opcode.TMV or instruction.opcode != Opcode.QUANT:
        return False
    if tmv.flags & Flag.NO_WRITE:
        return True
    result = range(tmv.dst, tmv.dst + tmv.length)
    return not any(start < result.stop and result.start < start + instruction.length
                   for start in (instruction.a, instruction.b))


def cycles_per_token(compiled) -> int:
    """Cycles of one step of a compiled model (its ``step`` entry up to and including HALT),
    from the core taking the run command to its offering the token: the cycle model.

    Each instruction costs :func:`instruction_cycles`, but a TMV and the instruction after it
    overlap: that instruction starts three cycles after the TMV's decode if it
    :func:`runs_beside` the TMV, and the one after them waits for both; otherwise it waits for
    the TMV, which then costs :data:`MATRIX_HANDOVER_CYCLES` fewer cycles."""

    params = compiled.params
    step = compiled.program[compiled.entry_points["step"]:]
    total, index = 0, 0
    while index < len(step):
        instruction = step[index]
        cycles = instruction_cycles(instruction, params)
        if instruction.opcode == Opcode.HALT:
            return total + cycles
        index += 1
        if instruction.opcode == Opcode.TMV:
            cycles -= MATRIX_HANDOVER_CYCLES
            if index < len(step) and runs_beside(instruction, step[index]):
                beside = instruction_cycles(step[index], params)
                cycles = max(cycles, SEQUENCER_CYCLES + beside)
                index += 1
        total += cycles
    raise ValueError("the program's step has no HALT")


def simulate_cycles(model, params: AcceleratorParameters, work: Path) -> int:
    """Cycles of one step of ``model`` on the core in Verilator: the testbench's ``profile``
    (program counter sampled every cycle, from the run command to the token; the golden
    model's results are checked by the tests, not here). Builds the core (1-2 minutes, cached
    by :mod:`tern_fpga.sim.rtl.cocotb_support`)."""
    case = Path(work) / "case.npz"
    write_case(model, params, [ord("T")], 1, case)
    return sum(run_core(params, case, "profile", Path(work))["profile"].values())


@functools.cache
def compiled_layout(model_name: str, params: AcceleratorParameters):
    """The program of the shipped ``model_name`` checkpoint's shape for ``params``."""

    # here, not at the top: loads Amaranth
    from tern_fpga.quant.compiler import compile_layout

    config = json.loads((paths.CHECKPOINTS / model_name / "config.json").read_text())
    return compile_layout(HGRNBitConfig.from_dict(config), params)
