"""What ``tern sim`` runs: one unit's cocotb testbench on random inputs for a preset, or the
whole core on an export (or a saved case) and a prompt, each checked against its golden function
as the tests check it, with a one-line verdict and the cycles simulated.

The testbenches are the tests' own (:mod:`tern_fpga.sim.rtl.testbenches`), built as the tests
build them, so a run reuses the tests' cached Verilator builds where the parameters agree (the
micro and demo presets' row and norm units, the micro and demo cores). With ``waves`` a traced
build of its own writes an FST file of a window of cycles and a GTKWave save file beside it
(:mod:`tern_fpga.sim.rtl.waves`).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tern_fpga.contracts.boards import DEFAULT_BAUD
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.export_format import read_export
from tern_fpga.sim.rtl.cocotb_support import (
    RunFailed,
    VerilatorBuild,
    build_component,
    simulated_cycles,
)
from tern_fpga.sim.rtl.core_case import (
    core_build,
    read_case_params,
    run_core,
    unit_timeline,
    write_export_case,
)
from tern_fpga.sim.rtl.waves import STATE_NAMES_FILE, VIEW_CYCLES, write_save_file

__all__ = ["ENGINE_OPTIONS", "UNITS", "Verdict", "core_timeline",
           "engine_parameters", "run_core_case", "run_unit", "unit_build"]

# The protocol engine's options in its fuzz test (``tests/hw/test_protocol_engine.py``).
ENGINE_OPTIONS = {"vocab": 1000, "token_history": 16, "board_id": 0xB0A7,
                  "build_id": 0xC0FFEE42, "frame_timeout_cycles": 300}


def engine_parameters(params):
    """A preset's parameters with tiny memories, so that the protocol engine's fuzz test's
    random addresses often land on their edges (and its coverage checks are met)."""
    return params.replace(name="fuzz", weight_memory_words=32, vector_memory_words=64,
                          vector_work_words=32, embedding_memory_words=128, program_words=16,
                          clock_hz=12_000_000)


# The UART's line rate in a ``tern sim uart`` run, unless asked for another: the boards'.


@dataclasses.dataclass
class Verdict:
    """The outcome of one ``tern sim`` run.

    Members
    -------
    what : str
        The unit (or core) and preset.
    passed : bool
    detail : str
        What was checked, or the first mismatch.
    simulated_cycles : int
        Clock cycles simulated (loading and checking included).
    seconds : float
        Wall time of the simulation (without the build).
    waves, save_file : pathlib.Path or None
        The FST file and its GTKWave save file, if asked.
    """

    what: str
    passed: bool
    detail: str
    simulated_cycles: int
    seconds: float
    waves: Path | None = None
    save_file: Path | None = None

    def line(self) -> str:
        """The one-line verdict."""
        return (f"{'PASS' if self.passed else 'FAIL'} {self.what} [{self.simulated_cycles:,} "
                f"cycles simulated in {self.seconds:.1f} s]: {self.detail}")


@dataclasses.dataclass(frozen=True)
class _Unit:
    """How to build one unit and run its testbench: the tests' way, for any preset."""

    toplevel: str
    module: str
    testcase: str
    optimize: str
    component: Callable           # (params, baud) -> component
    key: Callable                 # (params, baud) -> build key
    config: Callable              # (params, seed, count, baud) -> testbench configuration
    checked: Callable             # (config) -> what a pass means, in words
    default_count: int


def _matvec(params, _baud):
    from tern_fpga.hw.ternary_matvec import TernaryMatVec  # here, not at the top: loads Amaranth

    return TernaryMatVec(params)


def _matvec_config(params, seed, count, _baud) -> dict:
    lanes, features = params.ternary_lanes, params.max_features
    shapes = [(16, lanes), (8, min(features, 4 * lanes)),
              (5, min(features, 2 * lanes + lanes // 2 + 3)), (3, 1), (4, max(1, lanes // 2))]
    return {"params": params.to_dict(), "shapes": shapes,
            "seeds": list(range(seed, seed + count))}


def _row(params, _baud):
    from tern_fpga.hw.row_unit import RowUnit  # here, not at the top: loads Amaranth

    return RowUnit(params)


def _norm(params, _baud):
    from tern_fpga.hw.norm_quantizer import NormQuantizer  # here, not at the top: loads Amaranth

    return NormQuantizer(params)


def _norm_config(params, seed, count, _baud) -> dict:
    # here, not at the top: loads Amaranth
    from tern_fpga.sim.rtl.testbenches.norm_quantizer_cases import DISTRIBUTIONS

    rng = np.random.default_rng(seed)
    longest = min(params.max_features, 40 * params.vector_lanes)
    commands = [[operation, int(rng.integers(1, longest + 1)), distribution]
                for _ in range(count) for distribution in DISTRIBUTIONS
                for operation in ("NORM", "QUANT")]
    return {"params": params.to_dict(), "commands": commands,
            "probabilities": [[0.9, 0.8, 0.7, 0.6]], "seed": seed}


def _uart(params, baud):
    from tern_fpga.sim.rtl.uart_pair import UartPair  # here, not at the top: loads Amaranth

    return UartPair(params.clock_hz, baud)


def _engine(params, _baud):
    # here, not at the top: loads Amaranth
    from tern_fpga.hw.protocol_engine import ProtocolEngine

    return ProtocolEngine(engine_parameters(params), build_id=ENGINE_OPTIONS["build_id"],
                          board_id=ENGINE_OPTIONS["board_id"],
                          frame_timeout_cycles=ENGINE_OPTIONS["frame_timeout_cycles"],
                          token_history=ENGINE_OPTIONS["token_history"])


UNITS: dict[str, _Unit] = {
    "matrix-unit": _Unit(
        "ternary_matvec", "tern_fpga.sim.rtl.testbenches.ternary_matvec_checks",
        "random_matrices", "-O0", _matvec,
        lambda params, _: f"P{params.ternary_lanes}-{params.hash:016x}", _matvec_config,
        lambda config: f"{len(config['seeds'])} rounds of {len(config['shapes'])} random "
                       f"ternary matrices (the first without stalls), every row sum equal to "
                       f"the golden ternary_matvec", 3),
    "row-unit": _Unit(
        "row_unit", "tern_fpga.sim.rtl.testbenches.row_unit", "random_commands", "-O1", _row,
        lambda params, _: f"V{params.vector_lanes}-{params.hash:016x}",
        lambda params, seed, count, _: {"params": params.to_dict(), "seed": seed,
                                        "repeats": count, "probability": 0.7},
        lambda config: f"random commands of every operation ({config['repeats']} each, random "
                       f"stalls), every lane equal to the golden row_operation", 4),
    "norm-quantizer": _Unit(
        "norm_quantizer", "tern_fpga.sim.rtl.testbenches.norm_quantizer", "random_commands",
        "-O0", _norm, lambda params, _: f"V{params.vector_lanes}-{params.hash:016x}",
        _norm_config,
        lambda config: f"{len(config['commands'])} NORM and QUANT commands over "
                       f"{len({command[2] for command in config['commands']})} distributions "
                       f"(random stalls), every lane and scale equal to the golden numerics",
        1),
    "uart": _Unit(
        "uart_pair", "tern_fpga.sim.rtl.testbenches.uart", "random_bytes", "-O1", _uart,
        lambda params, baud: f"{params.clock_hz}-{baud}",
        lambda params, seed, count, baud: {"clock_hz": params.clock_hz, "baud": baud,
                                           "seed": seed, "count": count, "mismatch": 0.02},
        lambda config: f"{config['count']} bytes each way at {config['baud']:,} baud from a "
                       f"{config['clock_hz'] / 1e6:g} MHz clock (the line "
                       f"{config['mismatch']:.0%} off for the receiver), equal to the ideal "
                       f"8N1 line model", 32),
    "protocol-engine": _Unit(
        "protocol_engine", "tern_fpga.sim.rtl.testbenches.protocol_engine", "fuzz", "-O1",
        _engine, lambda params, _: f"{engine_parameters(params).hash:016x}",
        lambda params, seed, count, _: {**ENGINE_OPTIONS, "seed": seed, "frames": count,
                                        "params": engine_parameters(params).to_dict()},
        lambda config: f"{config['frames']} fuzzed frames (good, damaged, cut, repeated) on "
                       f"memories cut to a few words, every reply as the engine's model "
                       f"predicts", 150),
}


def unit_build(name: str, params, *, baud: int = DEFAULT_BAUD,
               waves: bool = False) -> VerilatorBuild:
    """The Verilator build of unit ``name`` for ``params`` (the tests' build where they use
    the same parameters)."""
    unit = UNITS[name]
    return build_component(unit.component(params, baud), unit.toplevel, unit.key(params, baud),
                           optimize=unit.optimize, waves=waves)


def run_unit(name: str, params, *, seed: int = 1, count: int | None = None,
             baud: int = DEFAULT_BAUD, config: dict | None = None, waves: Path | None = None,
             window: tuple[int, int] | None = None) -> Verdict:
    """Run unit ``name``'s testbench for ``params`` on random inputs drawn from ``seed``.

    Parameters
    ----------
    count : int, optional
        How much to send: rounds of matrices, commands per operation, NORM/QUANT rounds,
        bytes, or frames (the unit's default if not given).
    config : dict, optional
        Entries that replace those of the testbench's configuration (given inputs: e.g. the
        matrix unit's ``shapes``).
    waves : pathlib.Path, optional
        Write an FST file there, of the clock cycles ``window`` = (first, count), and a GTKWave
        save file beside it.

    Raises
    ------
    TernError
        For an unknown unit.
    """
    if name not in UNITS:
        raise TernError(f"unknown unit {name!r}; choose one of {', '.join(UNITS)} or core")
    unit = UNITS[name]
    build = unit_build(name, params, baud=baud, waves=waves is not None)
    configuration = {**unit.config(params, seed, count or unit.default_count, baud),
                     **(config or {})}
    what = f"{name} ({params.name})"
    started = time.perf_counter()
    end = None if window is None else window[0] + window[1]
    try:
        results = build.run(unit.module, configuration, testcase=unit.testcase, waves=waves,
                            window=None if window is None else (window[0], end))
        verdict = Verdict(what, True, unit.checked(configuration), simulated_cycles(results),
                          time.perf_counter() - started)
    except RunFailed as failure:
        verdict = Verdict(what, False, _one_line(failure.reason), simulated_cycles(
            failure.results), time.perf_counter() - started)
    return _with_waves(verdict, build, waves, window)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _with_waves(verdict: Verdict, build: VerilatorBuild, waves: Path | None,
                window: tuple[int, int] | None, translations: dict | None = None) -> Verdict:
    if waves is None or not Path(waves).exists():
        return verdict
    verdict.waves = Path(waves)
    verdict.save_file = write_save_file(
        waves, build.build_dir / f"{build.toplevel}.v", build.toplevel,
        state_file=build.build_dir / STATE_NAMES_FILE, translations=translations,
        view_cycles=min(window[1], VIEW_CYCLES) if window else VIEW_CYCLES)
    return verdict


def _case(source: Path, prompt: list[int] | None, count: int, work: Path) -> Path:
    """``source`` itself if it is a case (``.npz``), else a case written from the export."""
    source = Path(source)
    if source.suffix == ".npz":
        if not source.exists():
            raise TernError(f"no case file {source}")
        return source
    export = read_export(source)
    if prompt is None:
        raise TernError("give a prompt (--prompt or --ids) to simulate an export")
    case = work / "case.npz"
    write_export_case(export, prompt, count, case)
    return case


def run_core_case(source: Path, *, prompt: list[int] | None = None, count: int = 1,
                  rerun: str | None = None, waves: Path | None = None,
                  window: tuple[int, int] | None = None,
                  waves_steps: tuple[int, int] | None = None) -> Verdict:
    """The whole core on ``source``: a ``.tern`` export with ``prompt`` and ``count`` greedy
    tokens, or a case file (``.npz``, :func:`tern_fpga.sim.rtl.core_case.write_case`) as is;
    every step's token, logits and recurrent state checked against the golden model.

    Parameters
    ----------
    rerun : str, optional
        The command that repeats this run; a mismatch's message offers it with ``--waves``
        options around the mismatch.
    waves : pathlib.Path, optional
        Write an FST file there, of the clock cycles ``window`` = (first, count) or of the steps
        ``waves_steps`` = (first, last) (by default the last step), and a GTKWave save file
        beside it (the program counter shown as the instruction it points at).

    Raises
    ------
    TernError
        If the export or case cannot be read, an export is given no prompt, or
        ``waves_steps`` are past the run's last step.
    """
    with tempfile.TemporaryDirectory(prefix="tern-sim-") as directory:
        work = Path(directory)
        case = _case(source, prompt, count, work)
        params = read_case_params(case)
        with np.load(case, allow_pickle=False) as data:
            steps, texts = len(data["tokens"]), [str(text) for text in data["program_text"]]
        what = f"core ({params.name})"
        if waves is not None and window is None and waves_steps is None:
            waves_steps = (steps - 1, steps - 1)
        if waves_steps is not None and waves_steps[1] >= steps:
            raise TernError(f"--waves-steps {waves_steps[0]}:{waves_steps[1]} is past the run's "
                            f"last step, {steps - 1} (steps count from 0)")
        build = core_build(params, waves=waves is not None)
        started = time.perf_counter()
        end = None if window is None else window[0] + window[1]
        try:
            found = run_core(params, case, "whole_model", work, waves=waves,
                             window=None if window is None else (window[0], end),
                             waves_steps=waves_steps, rerun=rerun, build=build)
            cycles = found["cycles"]
            verdict = Verdict(
                what, True, f"{steps} step{'s' * (steps != 1)} bit-exact with the golden "
                f"model (next token, logits, every layer's state); "
                f"{sorted(cycles)[len(cycles) // 2]:,} cycles a token (median)",
                found["simulated_cycles"], time.perf_counter() - started)
        except RunFailed as failure:
            verdict = Verdict(what, False, _one_line(failure.reason),
                              simulated_cycles(failure.results), time.perf_counter() - started)
    program = {index: " ".join(text.split()) for index, text in enumerate(texts)}
    return _with_waves(verdict, build, waves, window, {"pc": program, "matrix_pc": program,
                                                       "vector_write_pc": program})


def core_timeline(source: Path, *, prompt: list[int] | None = None) -> tuple[dict, dict]:
    """Where the cycles of one token go: the first step of ``source`` (an export and a
    prompt, or a case) sampled cycle by cycle. Returns ``(rows, about)``: the
    :func:`~tern_fpga.sim.rtl.core_case.unit_timeline` rows and ``preset``, ``cycles`` (the
    step's) and ``token``."""
    with tempfile.TemporaryDirectory(prefix="tern-timeline-") as directory:
        work = Path(directory)
        case = _case(source, prompt[:1] if prompt else prompt, 1, work)
        params = read_case_params(case)
        found = run_core(params, case, "timeline", work)
        rows = unit_timeline(params, case, found["samples"])
        with np.load(case, allow_pickle=False) as data:
            token = int(data["tokens"][0])
    return rows, {"preset": params.name, "cycles": found["samples"][-1][0], "token": token}
