"""How many cycles a decode step could take if the core overlapped its units fully: a bound.

The core overlaps little (``hw/core.py``): a TMV runs on in its matrix context while the
sequencer runs the next instruction if that is an independent QUANT, and everything else waits
(:func:`tern_fpga.explore.cycle_model.cycles_per_token`, which matches Verilator to the cycle). This
module schedules the same program onto the three units as a dataflow machine would, to say what
more overlap could buy before anyone builds it:

- each instruction keeps the cycles the cycle model gives it, less the sequencer's fetch and
  decode (an overlapping sequencer would fetch ahead);
- it starts when every earlier instruction it depends on has finished and its unit is free.
  Dependences are the program's own: reading what an earlier instruction writes (RAW), and
  writing what an earlier one reads or writes (WAR, WAW), on vector-memory elements, on the
  scale registers, on the token, and on the activation buffer, which is double-buffered
  together with the scale register (a QUANT waits only for the TMVs that read the buffer and
  scale it overwrites; the compiler names scale register 0 throughout, the core has four);
- the units are the matrix unit (TMV), the norm unit (NORM, QUANT) and the row unit
  (element-wise and EMBED), one instruction each at a time, in program order per unit. A TMV's
  SCALE is taken to be in the matrix unit's own tail, which the core does not have today (it
  borrows the row unit).

Nothing is reordered beyond that, and the compiler's memory allocation is kept, so the result
is a *projected* lower bound for this program on this core's units, not a design.
"""

from __future__ import annotations

from dataclasses import dataclass

from tern_fpga.contracts.isa import Flag, Opcode
from tern_fpga.explore.cycle_model import SEQUENCER_CYCLES, cycles_per_token, instruction_cycles
from tern_fpga.sim.golden.run_plan import step_instructions

__all__ = ["OverlapBound", "overlap_bound"]

_UNIT_OF_OPCODE_NAME = {"TMV": "matrix", "NORM": "norm", "QUANT": "norm"}


@dataclass(frozen=True)
class OverlapBound:
    """Cycles of one step: as the core runs it, and the two bounds."""

    core: int              # the core today (the cycle model)
    overlapped: int        # one instruction a unit at a time, dependences kept
    critical_path: int     # unlimited units: the longest dependence chain
    ideal: int             # ternary weights / P

    def ratios(self) -> dict[str, float]:
        return {name: getattr(self, name) / self.ideal
                for name in ("core", "overlapped", "critical_path")}


def _accesses(instruction, activation_buffer: int):
    """(reads, writes): sets of resource keys that ``instruction`` touches."""

    op, n = instruction.opcode, instruction.length

    def elements(start, length=n):
        return {("vector", address) for address in range(start, start + length)}

    reads, writes = set(), set()
    if op == Opcode.ZERO:
        writes = elements(instruction.dst)
    elif op == Opcode.EMBED:
        reads, writes = {("token",)}, elements(instruction.dst)
    elif op == Opcode.NORM:
        reads = elements(instruction.a) | elements(instruction.b)
        writes = elements(instruction.dst)
    elif op == Opcode.QUANT:
        reads = elements(instruction.a) | elements(instruction.b)
        writes = {("activations", activation_buffer), ("scale", activation_buffer)}
    elif op == Opcode.TMV:
        reads = {("activations", activation_buffer), ("scale", activation_buffer)}
        if not instruction.flags & Flag.NO_WRITE:
            writes = elements(instruction.dst)
        if instruction.flags & Flag.ARGMAX:
            writes |= {("token",)}
    elif op in (Opcode.SIGMOID, Opcode.SILU, Opcode.ONE_MINUS):
        reads, writes = elements(instruction.a), elements(instruction.dst)
    else:  # binary element-wise
        reads = elements(instruction.a) | elements(instruction.b)
        writes = elements(instruction.dst)
    return reads, writes


def overlap_bound(compiled) -> OverlapBound:
    """The bounds for one step (the ``step`` entry up to HALT) of a compiled model."""

    params = compiled.params
    step = step_instructions(compiled)

    core = cycles_per_token(compiled)
    ideal = sum(ins.length * ins.a for ins in step if ins.opcode == Opcode.TMV)

    last_write: dict = {}      # resource -> finish time of its last writer
    last_read: dict = {}       # resource -> latest finish time of its readers since then
    unit_free = {"matrix": 0, "norm": 0, "row": 0}
    chain_write: dict = {}     # the same, without unit limits
    chain_read: dict = {}
    buffer = 0
    overlapped = critical = 0
    for instruction in step:
        if instruction.opcode == Opcode.QUANT:
            buffer ^= 1        # double-buffered activations: QUANTs alternate
        reads, writes = _accesses(instruction, buffer)
        cycles = instruction_cycles(instruction, params) - (SEQUENCER_CYCLES - 1)
        unit = _UNIT_OF_OPCODE_NAME.get(instruction.opcode.name, "row")
        for write_times, read_times, limited in ((last_write, last_read, True),
                                                 (chain_write, chain_read, False)):
            ready = max([write_times.get(key, 0) for key in reads | writes]
                        + [read_times.get(key, 0) for key in writes] + [0])
            start = max(ready, unit_free[unit]) if limited else ready
            finish = start + cycles
            for key in reads:
                read_times[key] = max(read_times.get(key, 0), finish)
            for key in writes:
                write_times[key] = finish
                read_times.pop(key, None)
            if limited:
                unit_free[unit] = finish
                overlapped = max(overlapped, finish)
            else:
                critical = max(critical, finish)
    return OverlapBound(core, overlapped, critical, ideal)
