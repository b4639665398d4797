"""The whole core on Verilator against the golden model: shipped models, many tokens, bit-exact.

Each run compiles a model, records the golden model's results for every step, and hands them
to the cocotb test in ``core_cocotb.py``. The shipped checkpoints are used when present (they
are the real thing); a random model of the same shape otherwise.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from hw.core import Core
from hw.core_interface import address_bits
from quant import HGRNBitConfig, HGRNBitForCausalLM, load_pretrained
from quant.compiler import compile_model
from sim.cocotb_support import build_component
from sim.golden_model import GoldenModel
from sim.isa import Opcode
from tern.memory_image import memory_image, table_image
from tern.params import PRESETS

HERE = Path(__file__).resolve().parent
CHECKPOINTS = HERE.parent.parent / "checkpoints"


def load_model(name: str):
    folder = CHECKPOINTS / name
    if (folder / "config.json").exists():
        return load_pretrained(folder)
    torch.manual_seed(1)
    d = {"micro": 64, "demo": 128}[name]
    return HGRNBitForCausalLM(HGRNBitConfig(vocab_size=256, hidden_size=d,
                                            num_hidden_layers=4))


def golden_case(model, params, prompt: bytes, count: int, path: Path) -> dict:
    """Run the golden model over ``prompt`` then ``count`` greedy tokens; save what the cocotb
    test needs to check every step and to localise a mismatch."""
    compiled = compile_model(model, params)
    sections = compiled.sections()
    golden = GoldenModel(params, sections, trace=True)
    states = [compiled.memory_map[f"state.{layer}"]
              for layer in range(model.config.num_hidden_layers)]
    tokens, next_tokens, logits, state_values, state_before = [], [], [], [], []
    traces = {}
    token = prompt[0]
    feed = list(prompt[1:])
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
    return {"tokens": tokens, "next_tokens": next_tokens}


@pytest.mark.parametrize("preset", ["micro", "demo"])
def test_whole_model_is_bit_exact_over_64_tokens(preset, tmp_path):
    params = PRESETS[preset]
    model = load_model(preset)
    case = tmp_path / "case.npz"
    golden_case(model, params, b"The for statement", 64 - 16, case)
    build = build_component(Core(params), "core", f"{preset}-{params.hash:016x}", optimize="-O2")
    cycles_file = tmp_path / "cycles.txt"
    build.run("core_cocotb", {"case": str(case), "cycles_file": str(cycles_file)},
              module_dir=HERE)
    cycles = [int(v) for v in cycles_file.read_text().split()]
    assert len(cycles) == 64 and min(cycles) > 0


def test_a_mismatch_is_pinned_to_the_first_differing_instruction(tmp_path):
    """Corrupt one value the golden wrote (as a wrong RTL result would look) and check that the
    test fails naming that instruction and element."""
    params = PRESETS["micro"]
    case_path = tmp_path / "case.npz"
    golden_case(load_model("micro"), params, b"Th", 3, case_path)
    case = dict(np.load(case_path))
    step = 2
    pcs = case[f"trace_pc_{step}"]
    target = len(pcs) // 2
    offset = int(np.sum(case[f"trace_lengths_{step}"][:target]))
    case[f"trace_values_{step}"][offset + 1] += 1
    case["logits"][step][0] += 1
    np.savez(case_path, **case)
    build = build_component(Core(params), "core", f"micro-{params.hash:016x}", optimize="-O2")
    with pytest.raises(AssertionError) as failure:
        build.run("core_cocotb", {"case": str(case_path),
                                  "cycles_file": str(tmp_path / "cycles.txt")}, module_dir=HERE)
    log = Path(str(failure.value).split("see ")[1].split(":")[0]).read_text()
    assert f"first difference: instruction {int(pcs[target])} (" in log
    assert "element 1 is" in log
