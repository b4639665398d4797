"""The dataflow core's matrix pipe (hw/dataflow/matrix_pipe.py) with block-RAM weight and
activation memories (sim/rtl/dataflow_pipe.py), in Amaranth's simulator, against the golden
model: TMVs of every mode back to back, their vector-memory writes (values = apply_scale(W @ x),
lanes masked, nothing else written), NO_WRITE commands, every command's ArgMax token (all-zero
weights included: the first row wins), back-pressure from the write and done streams that
reaches the reader, scales that come after their commands; and, without either, one weight word
a cycle across commands."""

import random

import pytest

from tern_fpga.contracts.params import preset
from tern_fpga.sim.rtl.dataflow_pipe import run_tmvs, tmv_case


def _shapes(params, rng, count, narrow):
    lanes, shapes = params.vector_lanes, []
    for index in range(count):
        rows = rng.choice([1, 2, lanes + 1, rng.randrange(1, 4 * lanes)])
        if narrow and index % 3:                    # long runs of one-word groups
            rows = rng.randrange(8 * lanes, 16 * lanes)
        shapes.append((rows, index % 2, index % 5 == 4))
    return shapes


@pytest.mark.parametrize(("preset_name", "max_segments", "narrow"), [
    ("micro", 2, False), ("demo", 4, False), ("demo", 1, False), ("micro", 2, True),
    ("demo", 4, True)])
def test_writes_and_tokens_equal_the_golden_model_under_back_pressure(preset_name,
                                                                     max_segments, narrow):
    params = preset(preset_name)
    rng = random.Random(f"pipe{preset_name}{max_segments}{narrow}")
    buffers = None
    if narrow:                                       # one-word groups: a group a cycle
        width = params.ternary_lanes // max_segments
        buffers = [(max_segments, rng.randrange(1, width + 1)), (1, params.ternary_lanes)]
    case = tmv_case(params, max_segments, _shapes(params, rng, 14 if narrow else 10, narrow),
                    rng, buffers=buffers)
    # Writes taken rarely: the back-pressure reaches the reader through every FIFO. Scales
    # come up to 30 cycles after their commands: the scaler waits for them.
    run = run_tmvs(params, max_segments, case, write_ready=0.1, done_ready=0.3,
                   scale_delay=-30, rng=rng)
    assert run.tokens == [command["token"] for command in case.commands]
    assert run.memory == case.expected_memory()


def test_all_zero_weights_give_token_zero():
    params = preset("micro")
    rng = random.Random("pipe-zero")
    case = tmv_case(params, 2, [(5, 0, False)], rng)
    command = case.commands[0]
    case.weight_words[:] = [0] * len(case.weight_words)
    command["values"] = command["values"] * 0
    command["token"] = 0
    run = run_tmvs(params, 2, case)
    assert run.tokens == [0] and run.memory == case.expected_memory()


def test_tmvs_follow_each_other_with_no_fill_or_drain():
    """Without back-pressure the pipe takes one weight word a cycle from the first command's
    to the last's: the whole run is the words plus one pipeline's fill and drain."""
    params = preset("demo")
    rng = random.Random("pipe-rate")
    case = tmv_case(params, 4, _shapes(params, rng, 12, False), rng)
    run = run_tmvs(params, 4, case)
    assert run.tokens == [command["token"] for command in case.commands]
    assert run.cycles <= case.words + 40, (run.cycles, case.words)
