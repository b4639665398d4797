"""The segmented weight layout (contracts/segmented_layout.py) and its golden word-level model
(sim/golden/segmented_matvec.py): the words round-trip, one segment is the plain layout, the
golden results are W @ x, the choice of segments, and clear errors."""

import dataclasses

import numpy as np
import pytest

from tern_fpga.contracts.isa import Instruction, Opcode
from tern_fpga.contracts.params import preset
from tern_fpga.contracts.segmented_layout import (
    SegmentedShape,
    best_segments,
    pack_segmented_words,
    segment_program,
    segmented_activation_words,
    segmented_shape,
    segments_for_inputs,
    unpack_segmented_words,
)
from tern_fpga.contracts.weight_layout import pack_weight_words
from tern_fpga.sim.golden.segmented_matvec import segmented_matvec_results
from tern_fpga.sim.golden.ternary_matvec import ternary_matvec


@pytest.mark.parametrize(("rows", "in_features", "segments"),
                         [(128, 128, 1), (130, 100, 2), (7, 300, 4), (1024, 128, 8), (1, 1, 16)])
def test_words_round_trip_and_the_golden_results_are_w_times_x(rows, in_features, segments):
    params = preset("demo")
    rng = np.random.default_rng(rows * in_features + segments)
    w_t = rng.integers(-1, 2, size=(rows, in_features))
    x = rng.integers(-128, 128, size=in_features)
    shape = segmented_shape(rows, in_features, params, segments)
    words = pack_segmented_words(w_t, params, segments)
    assert words.shape == (shape.words, params.ternary_lanes // 32)
    np.testing.assert_array_equal(unpack_segmented_words(words, params, shape), w_t)
    results = segmented_matvec_results(words, segmented_activation_words(x, shape), shape,
                                       params)
    assert len(results) == shape.groups
    assert [count for _, count in results][-1] == shape.last_rows
    flat = [value for sums, count in results for value in sums[:count]]
    assert flat == list(ternary_matvec(w_t, x))
    if segments == 1:
        np.testing.assert_array_equal(words, pack_weight_words(w_t, params))


def test_each_segment_of_a_word_is_a_different_row():
    """Word (g, c), segment s holds row g*k + s's columns c*w .. c*w + w - 1."""
    params = preset("micro")                              # P = 32
    w_t = np.zeros((4, 40), dtype=int)
    w_t[2, 17] = 1                                        # row 2 = group 0, segment 2
    shape = segmented_shape(4, 40, params, 4)             # w = 8, beats = 5
    words = pack_segmented_words(w_t, params, 4)
    hot = [(index, int(word[0]).bit_length() - 1) for index, word in enumerate(words)
           if word[0]]
    assert shape.beats == 5 and hot == [(17 // 8, 2 * (2 * 8 + 17 % 8))]


def test_the_demo_model_at_256_lanes_takes_half_the_words():
    params = preset("demo")
    wide = dataclasses.replace(params, ternary_lanes=256)
    d, inner, vocab, layers = 128, 512, 256, 4
    shapes = [(d, d)] * 4 + [(2 * inner, d), (d, inner)]
    per_layer = [(rows, features) for rows, features in shapes]

    def words(accelerator, max_segments):
        total = sum(segmented_shape(rows, features, accelerator, best_segments(
            rows, features, accelerator, max_segments)).words for rows, features in per_layer)
        head = segmented_shape(vocab, d, accelerator,
                               best_segments(vocab, d, accelerator, max_segments)).words
        return layers * total + head

    assert words(params, 1) == 8448                       # the preset today
    # P = 256 alone: every 128-wide row pads to 256 (only down_proj's 512 fills its words).
    assert words(wide, 1) == 7424
    assert words(wide, 2) == 4224                         # two rows a word: no padding


def test_best_segments_prefers_fewer_segments_among_equals():
    params = preset("micro")                              # P = 32
    assert best_segments(64, 32, params, 4) == 1
    assert best_segments(64, 16, params, 4) == 2
    assert best_segments(64, 8, params, 4) == 4
    assert best_segments(64, 8, params, 1) == 1


# (d, inner, vocabulary) of micro, demo and the released 370 M, 1.3 B and 2.7 B models.
MODEL_SHAPES = [(64, 256, 256), (128, 512, 256), (1024, 2816, 32000), (2048, 5632, 32000),
                (2560, 6912, 32000)]


@pytest.mark.parametrize("lanes, max_segments", [(256, 2), (512, 4), (512, 8), (1024, 8)])
def test_segments_from_the_inputs_alone_take_as_few_words_on_every_model(lanes, max_segments):
    params = dataclasses.replace(preset("demo"), ternary_lanes=lanes, max_features=8192)
    for d, inner, vocabulary in MODEL_SHAPES:
        shapes = [(d, d)] * 4 + [(2 * inner, d), (d, inner), (vocabulary, d)]
        best = [segmented_shape(rows, features, params, best_segments(
            rows, features, params, max_segments)).words for rows, features in shapes]
        chosen = [segmented_shape(rows, features, params, segments_for_inputs(
            features, params, max_segments)).words for rows, features in shapes]
        assert chosen == best, (d, lanes)


def test_segments_from_the_inputs_depend_on_whole_beats_only():
    params = dataclasses.replace(preset("demo"), ternary_lanes=512)
    lanes = params.vector_lanes
    for features in range(1, params.max_features + 1):
        whole = -(-features // lanes) * lanes
        assert segments_for_inputs(features, params, 4) == \
            segments_for_inputs(whole, params, 4)
    # A row of 128 fills a quarter of a word, 512 a whole one; 2,816 (370 M's down_proj)
    # takes 5.5 words a row as two segments, 6 as one.
    assert [segments_for_inputs(n, params, 4) for n in (128, 129, 256, 512)] == [4, 2, 2, 1]
    wide = dataclasses.replace(params, max_features=4096)
    assert segments_for_inputs(2816, wide, 4) == 2
    with pytest.raises(ValueError, match="in_features must be an integer"):
        segments_for_inputs(0, params, 4)


def test_bad_shapes_name_the_value():
    params = preset("micro")
    with pytest.raises(ValueError, match="segments must be a power of two, not 3"):
        SegmentedShape(4, 4, 32, 3)
    with pytest.raises(ValueError, match="segments=64 is more than the 32 lanes"):
        SegmentedShape(4, 4, 32, 64)
    with pytest.raises(ValueError, match="in_features must be an integer from 1 to max_features"):
        segmented_shape(4, params.max_features + 1, params, 1)
    with pytest.raises(ValueError, match="max_segments must be a power of two"):
        best_segments(4, 4, params, 6)
    shape = segmented_shape(4, 4, params, 2)
    with pytest.raises(ValueError, match="is 2 words, not 3"):
        unpack_segmented_words(np.zeros((3, 1), dtype=np.uint64), params, shape)
    with pytest.raises(ValueError, match="activations must have shape"):
        segmented_activation_words(np.zeros(5), shape)



def test_a_program_in_the_segmented_layout_keeps_every_matrix():
    """TMVs at P = 512: each rewritten ``imm`` points at its matrix packed with the ``k`` of the
    QUANT before it (its length is the TMV's ``in_features``), the image holds those words and
    nothing else, and a TMV of the same matrix and ``k`` shares them."""
    params = dataclasses.replace(preset("demo"), ternary_lanes=512)
    rng = np.random.default_rng(7)
    program, matrices, inputs = [], {}, {}
    for opcode, rows, length in [(Opcode.QUANT, 0, 128), (Opcode.TMV, 128, 0),
                                 (Opcode.TMV, 384, 0), (Opcode.QUANT, 0, 512),
                                 (Opcode.TMV, 128, 0), (Opcode.QUANT, 0, 100),
                                 (Opcode.TMV, 3, 0)]:
        if opcode == Opcode.QUANT:
            in_features = length
            program.append(Instruction(opcode, dst=0, a=0, b=0, length=length))
            continue
        beats = -(-in_features // params.ternary_lanes) + 1      # one beat of zero columns
        matrix = np.zeros((rows, beats * params.ternary_lanes), dtype=np.int8)
        matrix[:, :in_features] = rng.integers(-1, 2, (rows, in_features))
        imm = 1000 * len(program)
        matrices[imm], inputs[imm] = matrix, in_features
        program.append(Instruction(opcode, dst=0, a=beats, b=0, length=rows, imm=imm))
    program.insert(3, program[1])                  # the first matrix again, same activations
    rewritten, image = segment_program(program, lambda ins: matrices[ins.imm], params, 4)
    for before, after in zip(program, rewritten):
        if before.opcode != Opcode.TMV:
            assert after == before
            continue
        in_features = inputs[before.imm]
        shape = segmented_shape(before.length, in_features, params,
                                segments_for_inputs(in_features, params, 4))
        np.testing.assert_array_equal(
            unpack_segmented_words(image[after.imm:after.imm + shape.words], params, shape),
            matrices[before.imm][:, :in_features])
    assert rewritten[3].imm == rewritten[1].imm
    # 128 inputs: 4 rows a word (a 128-lane segment); 512: one; 100: 4 (a quarter word a row).
    assert len(image) == 128 // 4 + 384 // 4 + 128 + 1


def test_a_program_in_the_segmented_layout_names_what_it_cannot_place():
    params = preset("demo")
    tmv = Instruction(Opcode.TMV, dst=0, a=1, b=0, length=2, imm=0)
    with pytest.raises(ValueError, match="before any quant"):
        segment_program([tmv], lambda ins: np.zeros((2, 128), np.int8), params, 4)
    matrix = np.zeros((2, 128), np.int8)
    matrix[1, 100] = 1
    quant = Instruction(Opcode.QUANT, dst=0, a=0, b=0, length=64)
    with pytest.raises(ValueError, match="past column 64"):
        segment_program([quant, tmv], lambda ins: matrix, params, 4)
