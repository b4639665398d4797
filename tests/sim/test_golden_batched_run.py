"""The golden model's batched fast path equals its instruction-by-instruction interpreter, bit
for bit: the row-batched arithmetic against contracts/numerics.py, and whole runs (every
prefix of a step included, so every intermediate the RTL comparison looks at) against the
interpreter on the shipped models and on random ones, from fresh random inputs."""

import numpy as np
import pytest

from tern_fpga.contracts import numerics, paths
from tern_fpga.contracts.isa import Flag, Instruction, Opcode, encode
from tern_fpga.contracts.numerics import Scale
from tern_fpga.contracts.params import PRESETS
from tern_fpga.contracts.weight_layout import pack_weight_image
from tern_fpga.quant.checkpoint import load_pretrained
from tern_fpga.quant.compiler import compile_model
from tern_fpga.sim.golden.batched_numerics import BatchedNumerics
from tern_fpga.sim.golden.model import ExecutionError, GoldenModel
from tern_fpga.sim.golden.scale_arithmetic import ScaleArithmetic

from support.random_model import random_model

SEED = np.random.SeedSequence().entropy       # fresh inputs each run, printed on a failure


def rng_for(*salt):
    return np.random.default_rng([SEED % (1 << 63), *salt])


def extreme_rows(rng, rows, length, bits=32):
    """Values over the whole vector range, its ends, and small ones, in ``rows`` rows."""
    high = (1 << (bits - 1)) - 1
    values = np.concatenate([rng.integers(-high - 1, high + 1, rows * length // 2),
                             rng.integers(-(1 << 18), 1 << 18, rows * length)])
    values[:6] = [high, -high - 1, 0, 1, -1, high - 1]
    return rng.permutation(values)[:rows * length].reshape(rows, length).astype(np.int64)


@pytest.mark.parametrize("preset", ["micro", "demo"])
@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("sigmoid_table", [True, False])
def test_batched_numerics_equal_the_definition(preset, rows, sigmoid_table):
    """Both sigmoids: the table of every input (the presets') and the segments (larger ranges)."""
    params, rng = PRESETS[preset], rng_for(rows, len(preset))
    batched = BatchedNumerics(params, sigmoid_table=sigmoid_table)
    assert (batched._sigmoid_table is not None) == sigmoid_table
    a, b = extreme_rows(rng, rows, 256), extreme_rows(rng, rows, 256)
    reach = params.sigmoid_input_range * params.one
    near_edges = np.add.outer([-reach - 1, -reach, 0, reach - 1, reach], np.arange(-3, 4))
    edges = np.resize(near_edges.ravel(), (rows, 256))
    pairs = {"multiply": numerics.multiply, "add": numerics.add,
             "subtract": numerics.subtract}
    for name, definition in pairs.items():
        expected = [definition(x, y, params) for x, y in zip(a, b)]
        np.testing.assert_array_equal(getattr(batched, name)(a, b), expected,
                                      err_msg=f"{name}, seed {SEED}")
    singles = {"one_minus": numerics.one_minus, "sigmoid": numerics.sigmoid,
               "silu": numerics.silu}
    for name, definition in singles.items():
        for x in (a, edges):
            np.testing.assert_array_equal(getattr(batched, name)(x),
                                          [definition(row, params) for row in x],
                                          err_msg=f"{name}, seed {SEED}")
    assert batched.sums_of_squares(a) == [numerics.sum_of_squares(x, params) for x in a], SEED
    scales = [Scale(int(rng.integers(1 << 15, 1 << 16)), int(e))
              for e in rng.integers(-70, 50, rows)]
    for row_scales in (scales, [scales[0]] * rows):
        np.testing.assert_array_equal(
            batched.apply_scales(a >> 8, row_scales),
            [numerics.apply_scale(x, s, params) for x, s in zip(a >> 8, row_scales)],
            err_msg=f"apply_scales, seed {SEED}")


@pytest.mark.parametrize("preset", ["micro", "demo"])
def test_batched_quantize_and_norm_scale_equal_the_definition(preset):
    params, rng = PRESETS[preset], rng_for(7, len(preset))
    batched = BatchedNumerics(params)
    x = extreme_rows(rng, 4, 128) >> rng.integers(0, 24, (4, 1))
    weight = extreme_rows(rng, 4, 128) >> 12
    x[3] = 0                                  # a zero row: max|u| is taken as 1
    constant = numerics.scale_from_float(0.0123, params)
    quantized = np.full((4, 128), np.nan, np.float32)
    largest = batched.quantize(x, weight, quantized)
    for row, total in enumerate(batched.sums_of_squares(x)):
        q, scale = numerics.quantize_activations(x[row], weight[row], 5, constant, params)
        np.testing.assert_array_equal(quantized[row], q, err_msg=f"row {row}, seed {SEED}")
        norm_scale = batched.norm_scale(total, 5, constant)
        assert numerics.scale_multiply(norm_scale, numerics.scale_from_int(largest[row], params),
                                       params) == scale, (row, SEED)


@pytest.mark.parametrize("preset", ["micro", "demo", "large"])
def test_scale_arithmetic_equals_the_definition(preset):
    params, rng = PRESETS[preset], rng_for(8, len(preset))
    arithmetic = ScaleArithmetic(params)
    values = [1, 2, 3, (1 << 16) - 1, 1 << 16, (1 << 17) - 1, (1 << 32) - 1, 1 << 32, 1 << 61]
    values += [max(int(v), 1) for v in rng.integers(1, 1 << 62, 400) >> rng.integers(0, 62, 400)]
    for value in values:
        assert arithmetic.rsqrt(value) == numerics.rsqrt_scale(value, params), (value, SEED)
        assert arithmetic.from_int(value) == numerics.scale_from_int(value, params), (value, SEED)
    scales = [numerics.scale_from_int(v, params) for v in values[:60]] + [Scale(0, 0)]
    for a in scales:
        b = scales[int(rng.integers(0, len(scales)))]
        b = Scale(b.mantissa, b.exponent - int(rng.integers(-40, 40)))
        assert arithmetic.multiply(a, b) == numerics.scale_multiply(a, b, params), (a, b, SEED)
    with pytest.raises(ValueError, match="rsqrt needs a positive value, not 0"):
        arithmetic.rsqrt(0)


def assert_same_state(batched, interpreted, where):
    np.testing.assert_array_equal(batched.memory, interpreted.memory, err_msg=where)
    np.testing.assert_array_equal(batched.activations, interpreted.activations, err_msg=where)
    assert (batched.token, batched.activation_length, batched.scales,
            batched.instructions_executed) == \
        (interpreted.token, interpreted.activation_length, interpreted.scales,
         interpreted.instructions_executed), where


def twins(params, sections):
    """The same export on the batched path and on the interpreter."""
    batched, interpreted = (GoldenModel(params, sections, batched=flag) for flag in (True, False))
    assert_same_state(batched, interpreted, "after the reset")
    return batched, interpreted


@pytest.fixture(scope="module", params=["micro", "demo"])
def shipped(request):
    params = PRESETS[request.param]
    model = load_pretrained(paths.shipped_checkpoint(request.param))
    return params, compile_model(model, params).sections()


def test_batched_steps_equal_the_interpreter_on_the_shipped_model(shipped):
    params, sections = shipped
    batched, interpreted = twins(params, sections)
    tokens = rng_for(11).integers(0, sections["embeddings"].shape[0], 48).tolist()
    for position, token in enumerate(tokens):
        assert batched.step(token) == interpreted.step(token)
        assert_same_state(batched, interpreted, f"seed {SEED}, step {position}, token {token}")
    assert batched._batched_runs[batched.step_entry] is not None     # it ran batched


def test_every_prefix_of_a_step_ends_in_the_same_state(shipped):
    """A step cut after each of its instructions: every value any instruction writes (what the
    RTL comparison checks in the trace) is in the state the cut run leaves behind."""
    params, sections = shipped
    batched, interpreted = twins(params, sections)
    for token in rng_for(12).integers(0, sections["embeddings"].shape[0], 5).tolist():
        batched.step(token)
        interpreted.step(token)        # a state that is not the reset's
    program, entry = list(interpreted.program), interpreted.step_entry
    halt = next(pc for pc in range(entry, len(program)) if program[pc].opcode == Opcode.HALT)
    token = int(rng_for(13).integers(0, sections["embeddings"].shape[0]))
    start = {name: np.copy(getattr(interpreted, name)) for name in ("memory", "activations")}
    for cut in range(entry + 1, halt + 1):
        for golden in (batched, interpreted):
            golden.program = program[:cut] + [Instruction(Opcode.HALT)]
            golden._batched_runs.clear()
            golden.memory[:], golden.activations[:] = start["memory"], start["activations"]
            golden.token, golden.activation_length = token, params.max_features
            golden.scales = [Scale(1 << 15, -20 - r) for r in range(4)]
            golden.instructions_executed = 0
            golden.run(entry)
        assert batched._batched_runs[entry] is not None
        assert_same_state(batched, interpreted, f"seed {SEED}, cut before pc {cut}")


@pytest.mark.parametrize("output_gate", ["swish", "paper"])
def test_batched_steps_equal_the_interpreter_on_random_models(output_gate):
    params = PRESETS["micro"]
    sections = compile_model(random_model(21, output_gate=output_gate), params).sections()
    batched, interpreted = twins(params, sections)
    for token in rng_for(14).integers(0, 256, 24).tolist():
        assert batched.step(token) == interpreted.step(token)
        assert_same_state(batched, interpreted, f"seed {SEED}, token {token}")


def random_program(rng, params, count):
    """``count`` random instructions over a few overlapping ranges of a small vector memory, so
    that most pairs depend on each other one way or another: reads after writes, writes after
    reads, QUANTs into the four scale registers, ARGMAX TMVs and EMBEDs sharing the token (no
    EMBED after an ARGMAX: docs/isa.md)."""
    lanes = params.ternary_lanes
    address = lambda: int(rng.integers(0, 12)) * lanes // 4
    operands = {Opcode.ZERO: (), Opcode.EMBED: (), Opcode.SIGMOID: ("a",), Opcode.SILU: ("a",),
                Opcode.ONE_MINUS: ("a",), Opcode.ADD: ("a", "b"), Opcode.SUB: ("a", "b"),
                Opcode.MUL: ("a", "b"), Opcode.NORM: ("a", "b"), Opcode.QUANT: ("a", "b"),
                Opcode.TMV: ()}
    kinds = list(operands)
    program = [Instruction(Opcode.QUANT, dst=0, a=0, b=lanes, length=lanes)]   # TMVs defined
    argmax = False
    for _ in range(count):
        op = kinds[int(rng.integers(0, len(kinds)))]
        if op == Opcode.EMBED and argmax:
            op = Opcode.ZERO
        fields = {name: address() for name in operands[op]}
        if op == Opcode.QUANT:
            program.append(Instruction(op, dst=int(rng.integers(0, 4)), length=lanes, **fields))
        elif op == Opcode.TMV:
            flags = int(rng.integers(0, 2))
            argmax |= bool(flags & Flag.ARGMAX)
            program.append(Instruction(op, dst=address(), a=1, b=int(rng.integers(0, 4)),
                                       length=lanes, imm=int(rng.integers(0, 3)) * lanes,
                                       flags=flags))
        else:
            program.append(Instruction(op, dst=address(), length=lanes, **fields))
    return program + [Instruction(Opcode.HALT)]


def test_batched_runs_equal_the_interpreter_on_random_programs():
    """The planner's hazards: any reordering it got wrong shows up as a different state."""
    params, rng = PRESETS["micro"], rng_for(17)
    lanes = params.ternary_lanes
    sections = {"weights": pack_weight_image(
                    [rng.integers(-1, 2, (3 * lanes, lanes)).astype(np.int8)], params),
                "vector_init": rng.integers(-(1 << 18), 1 << 18, 4 * lanes),
                "constants": np.array([1 << 10, 1 << 15, -20], np.int64),
                "embeddings": rng.integers(-(1 << 15), 1 << 15, (lanes, 64)).astype(np.int16)}
    batched_runs = 0
    for case in range(150):
        program = random_program(rng, params, 40)
        sections.update(program=encode(program), entry_points=np.array([len(program) - 1, 0]))
        batched, interpreted = twins(params, sections)
        for golden in (batched, interpreted):
            golden.token = case % lanes
            golden.run(0)
            golden.run(0)
        assert_same_state(batched, interpreted, f"seed {SEED}, case {case}:\n" +
                          "\n".join(ins.text() for ins in program))
        batched_runs += batched._batched_runs[0] is not None
    assert batched_runs >= 100


def undefined_activations_program(params):
    """A TMV before any QUANT of its run, reading 2 * lanes activations against non-zero
    weights: defined only once a QUANT of that length ran."""
    lanes = params.ternary_lanes
    weights = rng_for(15).integers(-1, 2, (4, 2 * lanes)).astype(np.int8)
    program = [Instruction(Opcode.QUANT, dst=0, a=0, b=256, length=lanes, imm=0),
               Instruction(Opcode.HALT),
               Instruction(Opcode.ADD, dst=600, a=0, b=256, length=lanes),
               Instruction(Opcode.TMV, dst=512, a=2, b=0, length=4, imm=0),
               Instruction(Opcode.HALT)]
    vector = np.zeros(256 + 2 * lanes, np.int64)
    vector[:2 * lanes] = rng_for(16).integers(-(1 << 17), 1 << 17, 2 * lanes)
    vector[256:] = 1 << 16
    return {"program": encode(program), "entry_points": np.array([4, 2]),
            "weights": pack_weight_image([weights], params), "vector_init": vector,
            "constants": np.array([1, 1 << 15, -20], np.int64),
            "embeddings": np.zeros((1, 64), np.int16)}


def test_a_run_the_batched_path_cannot_vouch_for_is_left_to_the_interpreter():
    """The same error at the same instruction, with the same state written before it."""
    params = PRESETS["micro"]
    sections = undefined_activations_program(params)
    batched, interpreted = twins(params, sections)
    for golden in (batched, interpreted):
        golden.run(0)                       # a QUANT of `lanes`: half the TMV's columns
        with pytest.raises(ExecutionError, match="reads 64 activations, but the last quant "
                                                 "wrote 32"):
            golden.step(0)
    assert_same_state(batched, interpreted, "after the refused step")
    assert np.any(batched.vector(600, params.ternary_lanes))   # the ADD before the TMV ran
