"""The whole core on Verilator against the golden model: shipped models, many tokens, bit-exact.

Each run compiles a model, records the golden model's results for every step
(:func:`tern_fpga.sim.rtl.core_case.write_case`), and runs the cocotb testbench
:mod:`tern_fpga.sim.rtl.testbenches.core`.
The shipped checkpoints are used when present (they are the real thing); a random model of the
same shape otherwise.
"""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from tern_fpga.contracts import paths
from tern_fpga.contracts.isa import Opcode
from tern_fpga.contracts.params import PRESETS
from tern_fpga.explore.cycle_model import cycles_per_token, runs_beside
from tern_fpga.quant.checkpoint import load_pretrained
from tern_fpga.quant.compiler import compile_model
from tern_fpga.quant.config import HGRNBitConfig
from tern_fpga.quant.model import HGRNBitForCausalLM
from tern_fpga.sim.rtl.core_case import run_core, write_case

CHECKPOINTS = paths.CHECKPOINTS


def load_model(name: str):
    folder = CHECKPOINTS / name
    if (folder / "config.json").exists():
        return load_pretrained(folder)
    torch.manual_seed(1)
    d = {"micro": 64, "demo": 128}[name]
    return HGRNBitForCausalLM(HGRNBitConfig(vocab_size=256, hidden_size=d,
                                            num_hidden_layers=4))


@pytest.mark.parametrize("preset", ["micro", "demo"])
def test_whole_model_is_bit_exact_over_64_tokens(preset, tmp_path):
    params = PRESETS[preset]
    case = tmp_path / "case.npz"
    write_case(load_model(preset), params, list(b"The for statement"), 64 - 16, case)
    cycles = run_core(params, case, "whole_model", tmp_path)["cycles"]
    assert len(cycles) == 64 and min(cycles) > 0


def test_only_an_independent_quant_runs_beside_a_tmv(tmp_path):
    """The sequencer's overlap rules, on programs the compiler does not write: in layer 0 the
    QUANT after the first TMV reads that TMV's result (it must wait for it); in layer 1 the
    QUANT after the first TMV is followed by a copy of itself (the copy must wait: running
    beside the TMV it would refill the activation buffer the TMV reads). Bit-exact with the
    golden model running the same program, and in the cycles the cycle model counts."""
    params = PRESETS["micro"]
    model = load_model("micro")
    compiled = compile_model(model, params)
    program = compiled.program
    tmvs = [index for index, ins in enumerate(program) if ins.opcode == Opcode.TMV]
    first, later = tmvs[0], next(i for i in tmvs if "layers.1." in program[i].comment)
    assert program[first + 1].opcode == program[later + 1].opcode == Opcode.QUANT
    reading_result = dataclasses.replace(program[first + 1], a=program[first].dst)
    assert not runs_beside(program[first], reading_result)
    assert runs_beside(program[later], program[later + 1])
    altered = (program[:first + 1] + [reading_result] + program[first + 2:later + 2]
               + [program[later + 1]] + program[later + 2:])
    altered_entries = {name: entry + (entry > later) for name, entry
                       in compiled.entry_points.items()}
    compiled = dataclasses.replace(compiled, program=altered, entry_points=altered_entries)
    case = tmp_path / "case.npz"
    write_case(model, params, list(b"Th"), 2, case, compiled=compiled)
    cycles = run_core(params, case, "whole_model", tmp_path)["cycles"]
    assert cycles == [cycles_per_token(compiled)] * 3


def test_a_mismatch_is_pinned_to_the_first_differing_instruction(tmp_path):
    """Corrupt one value the golden wrote (as a wrong RTL result would look) and check that the
    test fails naming that instruction and element, when it was written, and the command that
    re-runs the case with waves around that cycle (tests/commands/test_sim.py corrupts the
    golden model itself)."""
    params = PRESETS["micro"]
    case_path = tmp_path / "case.npz"
    write_case(load_model("micro"), params, list(b"Th"), 3, case_path)
    case = dict(np.load(case_path))
    step = 2
    pcs = case[f"trace_pc_{step}"]
    target = len(pcs) // 2
    offset = int(np.sum(case[f"trace_lengths_{step}"][:target]))
    case[f"trace_values_{step}"][offset + 1] += 1
    case["logits"][step][0] += 1
    np.savez(case_path, **case)
    with pytest.raises(AssertionError) as failure:
        run_core(params, case_path, "whole_model", tmp_path)
    log = Path(str(failure.value).split("see ")[1].split(":")[0]).read_text()
    assert f"first difference: instruction {int(pcs[target])} (" in log
    assert "element 1 is" in log
    reason = failure.value.reason   # the testbench's own message, from the results file
    written = re.search(r"written at ([\d,]+) ns, cycle (\d+) \(the instruction started at "
                        r"cycle (\d+), in the re-run of step 2\); waves around it: tern sim "
                        r"core (\S+) --waves mismatch\.fst --from-cycle (\d+) --cycles (\d+)$",
                        reason)
    assert written, reason
    ns, cycle, start, first, count = (int(written.group(i).replace(",", ""))
                                      for i in (1, 2, 3, 5, 6))
    assert written.group(4) == str(case_path.resolve())
    assert ns == 10 * cycle and first <= start <= cycle < first + count
