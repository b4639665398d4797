"""Host side of the core's Verilator testbench (:mod:`tern_fpga.sim.rtl.testbenches.core`).

:func:`write_case` (a model) and :func:`write_export_case` (a ``.tern`` export) run the golden
model over a prompt and its greedy continuation and save, per step, what the cocotb testbench
checks (next token, logits, every layer's state) and what it needs to pin a mismatch to one
instruction (the golden's trace). :func:`run_core` builds the core for a preset and runs one of
the testbench's tests on a case, optionally writing waves; :func:`unit_timeline` turns the
``timeline`` test's samples into what each unit did, cycle by cycle.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import numpy as np

from tern_fpga.contracts.isa import Opcode, decode
from tern_fpga.contracts.memory_image import memory_image, table_image
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.sim.golden.model import GoldenModel
from tern_fpga.sim.rtl.cocotb_support import VerilatorBuild, build_component, simulated_cycles
from tern_fpga.sim.rtl.waves import state_names

__all__ = ["Segment", "core_build", "read_case_params", "run_core", "unit_timeline", "write_case",
           "write_export_case"]

TESTBENCH = "tern_fpga.sim.rtl.testbenches.core"
# The command a mismatch message offers to re-run with waves around the mismatch; the testbench
# fills in {first} and {count} (cycles).
RERUN_WAVES = " --waves mismatch.fst --from-cycle {first} --cycles {count}"


def write_case(model, params, prompt: list[int], count: int, path: Path, *,
               compiled=None) -> dict:
    """Golden results for ``prompt`` then ``count`` greedy tokens, saved to ``path`` (.npz).

    ``compiled`` replaces ``compile_model(model, params)`` (a test's altered program)."""
    from tern_fpga.quant.compiler import compile_model  # here, not at the top: loads torch

    if compiled is None:
        compiled = compile_model(model, params)
    result = _write(params, compiled.sections(), compiled.program, compiled.memory_map,
                    model.config.num_hidden_layers, prompt, count, path)
    return {**result, "compiled": compiled}


def write_export_case(export, prompt: list[int], count: int, path: Path) -> dict:
    """:func:`write_case` for an export (:class:`tern_fpga.contracts.export_format.TernExport`),
    which carries the program, its memory map and the model's shape."""
    return _write(export.params, export.sections, decode(export.sections["program"]),
                  export.metadata["memory_map"], export.model_config["num_hidden_layers"],
                  prompt, count, path)


def _write(params, sections, program, memory_map, layers: int, prompt, count, path) -> dict:
    from tern_fpga.hw.core_interface import address_bits  # here, not at the top: loads Amaranth

    golden = GoldenModel(params, sections, trace=True)
    states = [memory_map[f"state.{layer}"] for layer in range(layers)]
    tokens, next_tokens, logits, state_values, state_before = [], [], [], [], []
    traces = {}
    token, feed = prompt[0], list(prompt[1:])
    for step in range(len(prompt) - 1 + count):
        state_before.append(golden.memory.copy())
        result = golden.step(token)
        tokens.append(token)
        next_tokens.append(result)
        logits.append(golden.vector(*memory_map["logits"]))
        state_values.append(np.concatenate([golden.vector(a, n) for a, n in states]))
        written = [r for r in golden.trace if r.written is not None and
                   r.instruction.opcode != Opcode.QUANT]
        traces[f"trace_pc_{step}"] = np.array([r.pc for r in written])
        traces[f"trace_dst_{step}"] = np.array([r.instruction.dst for r in written])
        traces[f"trace_lengths_{step}"] = np.array([len(r.written) for r in written])
        traces[f"trace_values_{step}"] = np.concatenate([r.written for r in written])
        token = feed.pop(0) if feed else result
    image = memory_image(sections)
    np.savez(path,
             params=json.dumps(params.to_dict()),
             address_bits=address_bits(params), lanes=params.vector_lanes,
             image_spaces=np.array([int(space) for _, space, _ in image]),
             image_lengths=np.array([len(words) for _, _, words in image]),
             image_words=np.concatenate([words for _, _, words in image]),
             tables=table_image(sections, params),
             reset_entry=int(sections["entry_points"][0]),
             step_entry=int(sections["entry_points"][1]),
             tokens=np.array(tokens), next_tokens=np.array(next_tokens),
             logits=np.array(logits), states=np.array(state_values),
             state_regions=np.array(states), state_before=np.array(state_before),
             logits_region=np.array(memory_map["logits"]),
             program_text=np.array([ins.text() for ins in program]),
             **traces)
    return {"tokens": tokens, "next_tokens": next_tokens}


def read_case_params(case: Path) -> AcceleratorParameters:
    """The parameters a case was written for."""
    with np.load(case, allow_pickle=False) as data:
        return AcceleratorParameters.from_dict(json.loads(str(data["params"])))


@functools.cache
def core_build(params, *, waves: bool = False) -> VerilatorBuild:
    """The core's Verilator build for ``params`` (traced with ``waves``): cached on disk, and
    in this process (converting the core to Verilog takes seconds)."""
    from tern_fpga.hw.core import Core  # here, not at the top: loads Amaranth

    return build_component(Core(params), "core", f"{params.name}-{params.hash:016x}",
                           optimize="-O2", waves=waves)


def run_core(params, case: Path, test: str, work_dir: Path, *, waves: Path | None = None,
             window: tuple[int, int | None] | None = None,
             waves_steps: tuple[int, int] | None = None, rerun: str | None = None,
             build: VerilatorBuild | None = None) -> dict:
    """Build the core for ``params`` (cached) and run testbench test ``test`` on ``case``.

    Parameters
    ----------
    test : str
        ``whole_model`` (every step checked), ``profile`` or ``timeline`` (one step sampled).
    waves : pathlib.Path, optional
        Write an FST there (with a traced build of its own) of the cycles ``window``
        (:meth:`~tern_fpga.sim.rtl.cocotb_support.VerilatorBuild.run`), or of the steps
        ``waves_steps`` (first, last) of ``whole_model``.
    rerun : str, optional
        The command that repeats this run, which a mismatch message extends with ``--waves``
        options (default: ``tern sim core CASE``).
    build : tern_fpga.sim.rtl.cocotb_support.VerilatorBuild, optional
        :func:`core_build`'s, if already made.

    Returns
    -------
    dict
        ``cycles``: the core's cycle counter per step (``whole_model``); ``profile``: cycles
        spent at each program counter (``profile``); ``samples``: :func:`unit_timeline`'s input
        (``timeline``); ``simulated_cycles``: clock cycles the simulation took, loading and
        checking included; ``build``: the
        :class:`~tern_fpga.sim.rtl.cocotb_support.VerilatorBuild`.

    Raises
    ------
    AssertionError
        A :class:`~tern_fpga.sim.rtl.cocotb_support.RunFailed` naming the log if the test
        fails; on a mismatch its message names the instruction, the element, both values, the
        simulation time and cycle, and the command that re-runs with waves around it.
    """
    build = build or core_build(params, waves=waves is not None)
    output = Path(work_dir) / "output.json"
    base = rerun or f"tern sim core {Path(case).resolve()}"
    config = {"case": str(Path(case).resolve()), "output": str(output.resolve()),
              "rerun": base.replace("{", "{{").replace("}", "}}") + RERUN_WAVES,
              "waves_steps": waves_steps}
    results = build.run(TESTBENCH, config, testcase=test, waves=waves, window=window)
    found = json.loads(output.read_text())
    return {"cycles": found.get("cycles", []),
            "profile": {int(pc): n for pc, n in found.get("profile", {}).items()},
            "samples": found.get("samples", []),
            "simulated_cycles": simulated_cycles(results), "build": build}


@dataclasses.dataclass(frozen=True)
class Segment:
    """One stretch of a unit's time: cycles ``[start, end)`` relative to the step's start,
    doing ``what`` (an opcode's name, or the sequencer's activity)."""

    start: int
    end: int
    what: str


# The sequencer's states, in three kinds of time.
_SEQUENCER = {"FETCH": "fetch/decode", "DECODE": "fetch/decode", "NEXT": "fetch/decode",
              "CONSTANT": "reads constants", "CONSTANT_MANTISSA": "reads constants",
              "CONSTANT_EXPONENT": "reads constants", "ZERO": "runs an instruction",
              "ROW": "runs an instruction", "NORM": "runs an instruction",
              "DONE": "done", "IDLE": "idle"}


def unit_timeline(params, case: Path, samples: list) -> dict[str, list[Segment]]:
    """What each unit did during the ``timeline`` test's step, from its samples (one per
    change of program counter, sequencer state, matrix context or a unit's ``busy``).

    Returns ``{"sequencer", "matrix unit", "row unit", "norm/quantiser": [Segment]}``: the
    sequencer's state (fetch and decode, waiting for the matrix unit, reading constants,
    running an instruction), and each unit's busy stretches named by the opcode it serves (the
    row unit's SCALE while a TMV runs: ``TMV scale``).
    """
    from tern_fpga.hw.core import Core  # here, not at the top: loads Amaranth

    with np.load(case, allow_pickle=False) as data:
        opcodes = [text.split()[0].upper() for text in data["program_text"]]
    states = state_names(Core(params)).get("fsm_state", {})
    rows = {"sequencer": [], "matrix unit": [], "row unit": [], "norm/quantiser": []}
    end = samples[-1][0] if samples else 0
    for (cycle, pc, state, matrix_busy, matrix_pc, matvec, row, norm), following in zip(
            samples, samples[1:] + [[end]]):
        name = states.get(state, str(state))
        activity = _SEQUENCER.get(name, name)
        if name == "DECODE" and matrix_busy:
            activity = "waits for the matrix unit"
        doing = {"sequencer": activity,
                 "matrix unit": opcodes[matrix_pc] if matvec else None,
                 "row unit": None if not row else
                 opcodes[pc] if name == "ROW" else f"{opcodes[matrix_pc]} scale",
                 "norm/quantiser": opcodes[pc] if norm else None}
        for unit, what in doing.items():
            if what is None or following[0] <= cycle:
                continue
            segments = rows[unit]
            if segments and segments[-1].what == what and segments[-1].end == cycle:
                segments[-1] = Segment(segments[-1].start, following[0], what)
            else:
                segments.append(Segment(cycle, following[0], what))
    return rows
