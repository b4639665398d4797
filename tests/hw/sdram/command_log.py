"""The SDRAM commands that the simulation core logged, and the timing rules checked on them.

LiteDRAM's ``DFITimingsChecker`` (inside the sim core) checks tRP, tRCD, tRFC, tWR, tWTR, tCCD
and tRC per bank and prints "violation" lines; it checks the refresh rate only once per 64 ms of
simulated time and has no rule for the mode register. This module reads the core's command log
(``tern-dfi <cycle> <command> <bank> <address> <cke>``) and checks, independently of LiteDRAM's
own settings, what a chip needs: the init sequence, tMRD, the CAS latency loaded, tRP, tRCD and
tRFC from the datasheet in nanoseconds, and every refresh interval against tREFI.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

from tern_fpga.hw.sdram.init_sequence import COMMANDS, T_MRD_CYCLES
from tern_fpga.hw.sdram.litedram_core import COMMAND_LOG_TAG

NAMES = {code: name for name, code in COMMANDS.items()}
# IS42S16160 (the slower of the ULX3S's two chips) in ns, and 8,192 refreshes in 64 ms.
DATASHEET_NS = {"tRP": 20.0, "tRCD": 20.0, "tRFC": 70.0}
T_REFI_NS = 64e6 / 8192


@dataclasses.dataclass(frozen=True)
class Command:
    cycle: int
    name: str
    bank: int
    address: int
    cke: int


def parse(log_text: str) -> list[Command]:
    commands = []
    for line in log_text.splitlines():
        fields = line.split()
        if len(fields) == 6 and fields[0] == COMMAND_LOG_TAG:
            cycle, code, bank, address, cke = map(int, fields[1:])
            commands.append(Command(cycle, NAMES.get(code, f"?{code:04b}"), bank, address, cke))
    return commands


def cycles(ns: float, clock_hz: float) -> int:
    return math.ceil(ns * 1e-9 * clock_hz - 1e-9)


def timing_errors(commands: list[Command], clock_hz: float) -> list[str]:
    """Violations of tRP, tRCD, tRFC (datasheet, in clock cycles at ``clock_hz``) and tMRD."""
    need = {name: cycles(ns, clock_hz) for name, ns in DATASHEET_NS.items()}
    errors = []
    last = {}  # (bank, command name) -> cycle; PRE-all and REF count for every bank
    for command in commands:
        banks = range(4) if command.name in ("REF", "MRS") or (
            command.name == "PRE" and command.address & (1 << 10)) else [command.bank]
        for bank in banks:
            rules = {"ACT": [("PRE", "tRP"), ("REF", "tRFC")], "REF": [("PRE", "tRP"),
                     ("REF", "tRFC")], "RD": [("ACT", "tRCD")], "WR": [("ACT", "tRCD")],
                     "PRE": [("REF", "tRFC")], "MRS": [("PRE", "tRP"), ("REF", "tRFC")]}
            for previous, rule in rules.get(command.name, []):
                when = last.get((bank, previous))
                if when is not None and command.cycle - when < need[rule]:
                    errors.append(f"cycle {command.cycle}: {command.name} on bank {bank} "
                                  f"{command.cycle - when} cycles after {previous}, "
                                  f"{rule} needs {need[rule]}")
            mrs = last.get((bank, "MRS"))
            if mrs is not None and command.name != "MRS" and command.cycle - mrs < T_MRD_CYCLES:
                errors.append(f"cycle {command.cycle}: {command.name} "
                              f"{command.cycle - mrs} cycles after MRS, tMRD needs "
                              f"{T_MRD_CYCLES}")
            last[(bank, command.name)] = command.cycle
    return errors


def refresh_intervals(commands: list[Command]) -> list[int]:
    """Cycles between consecutive refreshes after the initialisation's two."""
    refreshes = [command.cycle for command in commands if command.name == "REF"][2:]
    return [b - a for a, b in itertools.pairwise(refreshes)]
