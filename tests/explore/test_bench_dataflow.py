"""make bench's dataflow provider (explore/bench_dataflow.py) in its quick form: the demo step's
29 matrix instructions through the matrix pipe at P=256, two rows a word, checked against the
golden model inside; the figures it reports."""

from tern_fpga.explore.bench_dataflow import demo_step_shapes, run


def test_the_demo_step_has_29_matrix_instructions_of_two_widths():
    shapes = demo_step_shapes()
    assert len(shapes) == 29
    assert {features for _, features, _ in shapes} == {128, 512}
    assert [no_write for *_, no_write in shapes].count(True) == 1 and shapes[-1][2]


def test_quick_run_reports_the_pipe_on_half_the_words():
    figures = {figure.name: figure for figure in run(quick=True)}
    assert figures["dataflow.demo_p256.weight_words"].value == 4224
    cycles = figures["dataflow.demo_p256.matrix_pipe_cycles"].value
    # One word a cycle across all 29 instructions: one pipeline fill and drain in all.
    assert 4224 < cycles <= 4224 + 100
    assert figures["dataflow.demo_p256.matrix_pipe_cycles"].label == "simulated"
    assert figures["dataflow.demo_p256.matrix_bound_tokens_per_s_at_100mhz"].label == \
        "projected"
