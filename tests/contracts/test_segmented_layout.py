"""The segmented weight layout (contracts/segmented_layout.py) and its golden word-level model
(sim/golden/segmented_matvec.py): the words round-trip, one segment is the plain layout, the
golden results are W @ x, the choice of segments, and clear errors."""

import dataclasses

import numpy as np
import pytest

from tern_fpga.contracts.params import preset
from tern_fpga.contracts.segmented_layout import (
    SegmentedShape,
    best_segments,
    pack_segmented_words,
    segmented_activation_words,
    segmented_shape,
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
