"""Host side of the core's Verilator testbench (:mod:`tern_fpga.sim.rtl.testbenches.core`).

:func:`write_case` runs the golden model over a prompt and its greedy continuation and saves,
per step, what the cocotb testbench checks (next token, logits, every layer's state) and what
it needs to pin a mismatch to one instruction (the golden's trace). :func:`run_core` builds the
core for a preset and runs one of the testbench's tests on a case.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tern_fpga.contracts.isa import Opcode
from tern_fpga.contracts.memory_image import memory_image, table_image
from tern_fpga.quant.compiler import compile_model
from tern_fpga.sim.golden.model import GoldenModel
from tern_fpga.sim.rtl.cocotb_support import build_component

__all__ = ["run_core", "write_case"]


def write_case(model, params, prompt: list[int], count: int, path: Path, *,
               compiled=None) -> dict:
    """Golden results for ``prompt`` then ``count`` greedy tokens, saved to ``path`` (.npz).

    ``compiled`` replaces ``compile_model(model, params)`` (a test's altered program)."""
    from tern_fpga.hw.core_interface import address_bits  # here, not at the top: loads Amaranth

    if compiled is None:
        compiled = compile_model(model, params)
    sections = compiled.sections()
    golden = GoldenModel(params, sections, trace=True)
    states = [compiled.memory_map[f"state.{layer}"]
              for layer in range(model.config.num_hidden_layers)]
    tokens, next_tokens, logits, state_values, state_before = [], [], [], [], []
    traces = {}
    token, feed = prompt[0], list(prompt[1:])
    for step in range(len(prompt) - 1 + count):
        state_before.append(golden.memory.copy())
        result = golden.step(token)
        tokens.append(token)
        next_tokens.append(result)
        logits.append(golden.vector(*compiled.memory_map["logits"]))
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
             address_bits=address_bits(params), lanes=params.vector_lanes,
             image_spaces=np.array([int(space) for _, space, _ in image]),
             image_lengths=np.array([len(words) for _, _, words in image]),
             image_words=np.concatenate([words for _, _, words in image]),
             tables=table_image(sections, params),
             reset_entry=compiled.entry_points["reset"], step_entry=compiled.entry_points["step"],
             tokens=np.array(tokens), next_tokens=np.array(next_tokens),
             logits=np.array(logits), states=np.array(state_values),
             state_regions=np.array(states), state_before=np.array(state_before),
             logits_region=np.array(compiled.memory_map["logits"]),
             program_text=np.array([ins.text() for ins in compiled.program]),
             **traces)
    return {"tokens": tokens, "next_tokens": next_tokens, "compiled": compiled}


def run_core(params, case: Path, test: str, work_dir: Path) -> dict:
    """Build the core for ``params`` (cached) and run testbench test ``test`` on ``case``.

    Returns ``{"cycles": [per step]}`` for ``whole_model`` and ``{"profile": {pc: cycles}}``
    for ``profile``. Raises ``AssertionError`` naming the log if the test fails.
    """
    from tern_fpga.hw.core import Core  # here, not at the top: loads Amaranth

    build = build_component(Core(params), "core", f"{params.name}-{params.hash:016x}",
                            optimize="-O2")
    cycles_file, profile_file = work_dir / "cycles.txt", work_dir / "profile.json"
    build.run("tern_fpga.sim.rtl.testbenches.core", {"case": str(case), "cycles_file": str(cycles_file),
                                     "profile_file": str(profile_file)}, testcase=test)
    if test == "profile":
        return {"profile": {int(pc): n for pc, n in json.loads(profile_file.read_text()).items()}}
    return {"cycles": [int(v) for v in cycles_file.read_text().split()]}
