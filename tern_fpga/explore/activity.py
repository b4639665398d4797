"""Switching activity of the core during real generation, from Verilator's toggle coverage.

:func:`measure_activity` builds the core (:class:`tern_fpga.hw.core.Core`) with Verilator's
``--coverage-toggle`` (its own build folder beside the plain one), and runs the cocotb test
:func:`generation` of this module twice on a case written by
:func:`tern_fpga.sim.rtl.core_case.write_case`
for a shipped checkpoint: once loading the model and running the program's reset entry only,
once doing the same and then generating ``tokens`` tokens (each checked against the golden
model). Toggle coverage counts, per signal bit, how often the bit changed value; the two runs
are identical up to the end of the reset, so the difference of their counts is exactly the
generation's. Verilator cannot zero its counters from cocotb, hence the second run.

What is counted: every named signal bit of the design (registers and combinational nets,
Amaranth's intermediate wires included; alias wires such as the lanes of a payload are counted
beside the payload) up to ``--coverage-max-width`` bits; memory arrays are wider than that and
are not counted (their data ports are). Verilator evaluates without delays, so glitches are not
counted: a toggle is a change of the settled value between two evaluations.

The toggle rate is toggles per bit per clock cycle over the generation window (from the first
step's start to the last step's end, including the few handshake cycles between steps).
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from pathlib import Path

import cocotb
from cocotb.simtime import get_sim_time

from tern_fpga.contracts import paths
from tern_fpga.contracts.params import preset
from tern_fpga.sim.rtl.cocotb_support import CLOCK_PERIOD_NS, build_component, test_config
from tern_fpga.sim.rtl.core_case import write_case
from tern_fpga.sim.rtl.testbenches.core import load_and_reset

__all__ = ["Activity", "UnitActivity", "generation", "measure_activity", "memory_data_ports",
           "read_toggle_counts"]

# Wide enough for the datapath buses (the demo preset's 1,024-bit activation beat), narrower
# than any memory array, whose cells are block RAM, not switching logic.
COVERAGE_MAX_WIDTH = 1024
VERILATOR_ARGS = ("--coverage-toggle", "--coverage-max-width", str(COVERAGE_MAX_WIDTH))
# How often the testbench looks for the end of a step: the window overhangs each step by less.
POLL_CYCLES = 4
# Memories and their ports in the Verilog that Amaranth writes for the core's top module.
_MEMORY = re.compile(r"^(\s*\(\* ram_style = \"distributed\" \*\)\n)?\s*reg \[\d+:0\] "
                     r"\\?([\w$]+) *\[\d+:0\];", re.MULTILINE)
_READ = re.compile(r"^\s*\\?([\w$]+) *<= \\?([\w$]+) *\[.*\];$", re.MULTILINE)
_ALIAS = re.compile(r"^\s*assign \\?([\w$.]+) *= \\?([\w$]+) *;$", re.MULTILINE)
_WRITE = re.compile(r"^\s*\\?([\w$]+) *\[.*\] <= \\?([\w$.]+)", re.MULTILINE)
# Verilator writes a special character of a name as __0 and its two hex digits ('$' is __024).
_MANGLED = re.compile(r"__0([0-9a-fA-F]{2})")


@dataclasses.dataclass(frozen=True)
class UnitActivity:
    """Toggle counts of one part of the core over the generation window."""

    bits: int
    toggles: int
    cycles: int

    @property
    def toggle_rate(self) -> float:
        """Toggles per bit per cycle."""
        return self.toggles / (self.bits * self.cycles) if self.bits and self.cycles else 0.0


@dataclasses.dataclass(frozen=True)
class Activity:
    """Switching activity of a Verilator run of real generation.

    Members
    -------
    preset : str
    tokens : int
        Generation steps in the window (one token each).
    cycles : int
        Clock cycles of the window.
    step_cycles : tuple of int
        The core's own count of each step's cycles.
    total : UnitActivity
        Every counted bit of the core.
    units : dict
        ``matvec``, ``row``, ``norm`` (the three functional units, by hierarchy),
        ``memory_ports`` (read and write data of the block RAM memories: program, constants,
        vector, embedding, weights, tables) and ``sequencer`` (the rest of the core's top
        level, the distributed activation memory's ports included) -> :class:`UnitActivity`.
    """

    preset: str
    tokens: int
    cycles: int
    step_cycles: tuple[int, ...]
    total: UnitActivity
    units: dict[str, UnitActivity]

    @property
    def toggle_rate(self) -> float:
        return self.total.toggle_rate

    def to_dict(self) -> dict:
        return {"preset": self.preset, "tokens": self.tokens, "cycles": self.cycles,
                "step_cycles": list(self.step_cycles), "toggle_rate": self.toggle_rate,
                "bits": self.total.bits, "toggles": self.total.toggles,
                "units": {name: {"bits": unit.bits, "toggles": unit.toggles,
                                 "toggle_rate": unit.toggle_rate}
                          for name, unit in self.units.items()}}


def read_toggle_counts(path: Path) -> dict[tuple[str, str], int]:
    """Toggle counts of a Verilator ``coverage.dat``: ``(hierarchy, signal[bit]) -> count``,
    the signal's name as in the Verilog (``read__data$66[3]``).

    A bit whose rising and falling edges are separate points gets their sum.
    """
    counts: dict[tuple[str, str], int] = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        if not line.startswith("C '"):
            continue
        key, _, count = line[3:].rpartition("' ")
        fields = dict(item.split("\x02", 1) for item in key.split("\x01") if "\x02" in item)
        if not fields.get("page", "").startswith("v_toggle"):
            continue
        bit = _MANGLED.sub(lambda match: chr(int(match[1], 16)),
                           fields.get("o", "").split(":", 1)[0])
        point = (fields.get("h", ""), bit)
        counts[point] = counts.get(point, 0) + int(count)
    return counts


def memory_data_ports(verilog: str) -> set[str]:
    """Names of the signals that carry the read and write data of the block RAM memories of
    the top module in ``verilog`` (memories marked ``ram_style = "distributed"`` are logic)."""
    top = verilog.split("endmodule", 1)[0]
    memories = {name for distributed, name in _MEMORY.findall(top) if not distributed}
    registers = {register for register, memory in _READ.findall(top) if memory in memories}
    reads = {name for name, source in _ALIAS.findall(top) if source in registers}
    writes = {data for memory, data in _WRITE.findall(top) if memory in memories}
    return reads | writes


def _unit_of(hierarchy: str, signal: str, memory_ports: set[str]) -> str:
    parts = hierarchy.split(".")
    if len(parts) > 1 and parts[1] in ("matvec", "row", "norm"):
        return parts[1]
    return "memory_ports" if signal.split("[", 1)[0] in memory_ports else "sequencer"


def _difference(before: dict, after: dict, cycles: int, memory_ports: set[str]
                ) -> tuple[UnitActivity, dict]:
    units: dict[str, list[int]] = {}
    for point, count in after.items():
        unit = units.setdefault(_unit_of(*point, memory_ports), [0, 0])
        unit[0] += 1
        unit[1] += count - before.get(point, 0)
    bits = sum(bits for bits, _ in units.values())
    toggles = sum(toggles for _, toggles in units.values())
    return (UnitActivity(bits, toggles, cycles),
            {name: UnitActivity(b, t, cycles) for name, (b, t) in sorted(units.items())})


def measure_activity(preset_name: str, tokens: int = 2, *, prompt: bytes = b"T",
                     work_dir: Path | None = None, checkpoint: Path | None = None) -> Activity:
    """Toggle activity of the core over ``tokens`` steps of greedy generation.

    Parameters
    ----------
    preset_name : str
        ``micro`` or ``demo`` (any preset of :mod:`tern_fpga.contracts.params` whose memories
        Verilator can hold).
    tokens : int
        Steps in the window: the prompt's tokens are fed first, then each step feeds the token
        the previous one generated.
    prompt : bytes
        At least one byte.
    work_dir : pathlib.Path, optional
        Where the case, the coverage files and the results go (a temporary folder by default).
    checkpoint : pathlib.Path, optional
        ``checkpoints/<preset>`` by default.

    Raises
    ------
    FileNotFoundError
        If the checkpoint is missing.
    AssertionError
        If a generated token differs from the golden model's, or the simulation fails (the
        message names the log).
    """
    from tern_fpga.hw.core import Core  # here, not at the top: loads Amaranth
    from tern_fpga.quant.checkpoint import load_pretrained  # here, not at the top: loads torch

    if tokens < 1 or not prompt:
        raise ValueError(f"need at least one token and one prompt byte, not {tokens!r} and "
                         f"{prompt!r}")
    params = preset(preset_name)
    folder = Path(checkpoint) if checkpoint else paths.CHECKPOINTS / preset_name
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"no checkpoint at {folder} (config.json missing)")
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(work_dir) if work_dir else Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        case = work / f"activity-{preset_name}.npz"
        generated = tokens - (len(prompt) - 1)
        if generated < 1:
            raise ValueError(f"the prompt has {len(prompt)} bytes: ask for at least "
                             f"{len(prompt)} tokens")
        write_case(load_pretrained(folder), params, list(prompt), generated, case)
        build = build_component(Core(params), "core", f"{params.name}-{params.hash:016x}-toggle",
                                optimize="-O1", verilator_args=VERILATOR_ARGS)
        runs = {}
        for steps in (0, tokens):
            coverage, result = work / f"coverage-{steps}.dat", work / f"activity-{steps}.json"
            build.run("tern_fpga.explore.activity", {"case": str(case), "steps": steps,
                                       "result_file": str(result)},
                      testcase="generation", plusargs=(f"+verilator+coverage+file+{coverage}",))
            runs[steps] = (read_toggle_counts(coverage), json.loads(result.read_text()))
    (before, _), (after, result) = runs[0], runs[tokens]
    ports = memory_data_ports((build.build_dir / "core.v").read_text())
    total, units = _difference(before, after, result["window_cycles"], ports)
    return Activity(preset_name, tokens, result["window_cycles"], tuple(result["cycles"]),
                    total, units)


# Simulator side -------------------------------------------------------------------------------


@cocotb.test()
async def generation(dut):
    """Load the case's model, run the reset entry, then ``steps`` greedy steps, each token
    checked against the golden model; write the steps' cycles and the window's length."""


    config = test_config()
    case, host = await load_and_reset(dut, config)
    start = get_sim_time("ns")
    cycles = []
    for step in range(config["steps"]):
        token, expected = int(case["tokens"][step]), int(case["next_tokens"][step])
        result, taken = await host.run(int(case["step_entry"]), token, poll=POLL_CYCLES)
        assert result == expected, f"step {step}: the core gave {result}, the golden {expected}"
        cycles.append(taken)
    window = int(get_sim_time("ns") - start) // CLOCK_PERIOD_NS
    Path(config["result_file"]).write_text(json.dumps({"cycles": cycles,
                                                       "window_cycles": window}))
