"""``tern bench`` / ``make bench``: run the benchmark providers and write one labelled report.

A provider is ``"module"`` or ``"module:function"`` naming a function ``run(quick: bool) ->
list[Figure]`` (``run`` by default). Providers run one after the other with a progress line
each; one that raises :class:`Skipped` (not applicable here: no GPU, no meter) or fails is
listed in the report with its reason, and the others still run. Figures saved elsewhere (a GPU
run's JSON) can be merged in. Plots are drawn from the figures by name:

- a system is a name prefix with a ``<prefix>.tokens_per_s`` figure; with a
  ``<prefix>.weight_bandwidth`` figure (bytes/s) it is a point of ``roofline.png``, with a
  ``<prefix>.tokens_per_joule`` figure a point of ``pareto.png``.

The hardware units' benchmarks (``hw/bench_*.py``) return plain dicts; the adapters below turn
them into figures.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from tern_fpga.contracts.bitstreams import all_manifests
from tern_fpga.contracts.errors import TernError
from tern_fpga.explore.baselines_comparison import comparison
from tern_fpga.explore.report import Figure, Problem, write_report
from tern_fpga.quant.config import HGRNBitConfig
from tern_fpga.quant.presets import PRESETS as MODEL_PRESETS

__all__ = ["PROVIDERS", "Skipped", "figures_from_dict", "load_figures", "make_plots",
           "run_bench", "run_providers", "ternary_weight_count"]

# In report order. Each is "module" (its run()) or "module:function".
PROVIDERS = [
    "tern_fpga.explore.baselines",            # this CPU: PyTorch as trained, golden model
    "tern_fpga.explore.baselines_cpu",        # this CPU: the lean decode (the strongest CPU one)
    "tern_fpga.explore.anchors",              # published figures of other accelerators (theirs)
    "tern_fpga.explore.meter_selfcheck",     # idle power and sampling rate of the meters found here
    "tern_fpga.explore.fidelity",              # golden model against the float model
    "tern_fpga.explore.bench_core",            # whole core in Verilator: cycles/token, d=512 block
    "tern_fpga.explore.bench_sdram",           # stdlib model, weights from simulated SDRAM
    "tern_fpga.explore.timeline",              # one token's cycles, unit by unit (timeline PNGs)
    "tern_fpga.explore.soak",                  # 10,000 tokens on the virtual board, link faults
    "tern_fpga.explore.bench:bitstreams",      # the committed bitstreams' manifests: Fmax, cells
    "tern_fpga.explore.power_report:run",      # FPGA power from utilisation and simulated activity
    "tern_fpga.explore.sweep",                 # P x preset x board: cells, Fmax, cycles, tokens/J
    "tern_fpga.explore.bench:ternary_unit",    # bench_ternary_matvec.py: speed, ECP5 size, Fmax
    "tern_fpga.explore.bench:row_unit",        # bench_row_unit.py: throughput, latency, size, Fmax
    "tern_fpga.explore.bench_dataflow",        # the dataflow core's units: matrix pipe, Fmax
]

# Model shapes for the roofline's lines, besides the presets in tern_fpga.quant.presets: the
# released MatMul-free models (/work/shared/MODEL.md).
RELEASED_MODELS = {
    "MMfreeLM-370M": {"hidden_size": 1024, "num_hidden_layers": 24, "intermediate_size": 2816},
    "MMfreeLM-1.3B": {"hidden_size": 2048, "num_hidden_layers": 24, "intermediate_size": 5632},
    "MMfreeLM-2.7B": {"hidden_size": 2560, "num_hidden_layers": 32, "intermediate_size": 6912},
}
# Weight storage the roofline assumes: the 2-bit packing the matrix unit reads.
ROOFLINE_BITS_PER_WEIGHT = 2


class Skipped(Exception):
    """Raised by a provider that does not apply on this machine; the message says why."""


def _provider_function(spec: str) -> Callable:
    module_name, _, function_name = spec.partition(":")
    return getattr(importlib.import_module(module_name), function_name or "run")


def _failure(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


def run_providers(providers, quick: bool, progress=print, output=None
                  ) -> tuple[list[Figure], list[Problem]]:
    """Run each provider; a failure or a skip becomes a :class:`Problem`, never an exception
    (except ``KeyboardInterrupt``). A provider whose function takes an ``output`` argument
    (a plot of its own) is given ``output``, the report's directory."""
    figures, problems = [], []
    for number, spec in enumerate(providers, 1):
        prefix = f"[{number}/{len(providers)}] {spec}"
        progress(f"{prefix}: running")
        start = time.perf_counter()
        try:
            function = _provider_function(spec)
            takes_output = "output" in inspect.signature(function).parameters
            result = function(quick, output=output) if takes_output else function(quick)
            if not isinstance(result, list) or not all(isinstance(item, Figure)
                                                       for item in result):
                raise TypeError(f"{spec} returned {type(result).__name__}, not a list of Figure")
        except Skipped as reason:
            problems.append(Problem(spec, "skipped", str(reason)))
            progress(f"{prefix}: skipped: {reason}")
            continue
        except Exception as error:  # noqa: BLE001 (the report says what failed; others run)
            problems.append(Problem(spec, "failed", _failure(error)))
            progress(f"{prefix}: FAILED: {problems[-1].message}")
            continue
        figures += result
        progress(f"{prefix}: {len(result)} figures in {time.perf_counter() - start:.1f} s")
    return figures, problems


def ternary_weight_count(config) -> int:
    """Ternary weights a model reads per token: per layer ``i/f/g/o_proj`` (``d x d``),
    ``gate_proj`` (``2I x d``) and ``down_proj`` (``d x I``), plus the LM head (``V x d``)."""
    d, intermediate = config.hidden_size, config.resolved_intermediate_size
    return config.num_hidden_layers * (4 * d * d + 3 * d * intermediate) + \
        config.vocab_size * d


def _models_bytes_per_token() -> dict[str, float]:
    """Weight bytes each model reads per token at :data:`ROOFLINE_BITS_PER_WEIGHT`."""

    configs = {f"{name} preset": MODEL_PRESETS[name].config()
               for name in ("micro", "demo", "stdlib")}
    configs.update({name: HGRNBitConfig(vocab_size=32000, **shape)
                    for name, shape in RELEASED_MODELS.items()})
    return {name: ternary_weight_count(config) * ROOFLINE_BITS_PER_WEIGHT / 8
            for name, config in configs.items()}


def make_plots(figures: list[Figure], directory) -> list[Path]:
    """Draw ``roofline.png`` and ``pareto.png`` in ``directory`` from the figures that follow
    the naming convention (module docstring); a plot without points is not drawn."""
    # here, not at the top: loads matplotlib
    from tern_fpga.explore.plots import SystemPoint, pareto, roofline

    directory = Path(directory)
    by_name = {figure.name: figure for figure in figures}
    points = []
    for name, figure in by_name.items():
        if not name.endswith(".tokens_per_s") or not isinstance(figure.value, (int, float)):
            continue
        prefix = name.removesuffix(".tokens_per_s")
        bandwidth = by_name.get(f"{prefix}.weight_bandwidth")
        efficiency = by_name.get(f"{prefix}.tokens_per_joule")
        points.append(SystemPoint(prefix, figure.label, figure.value,
                                  bandwidth and bandwidth.value, efficiency and efficiency.value))
    written = []
    for plot in ("roofline.png", "pareto.png"):
        (directory / plot).unlink(missing_ok=True)  # never embed a plot of an earlier run
    if any(point.bandwidth for point in points):
        written.append(roofline(directory / "roofline.png", _models_bytes_per_token(), points))
    if any(point.tokens_per_joule for point in points):
        written.append(pareto(directory / "pareto.png", points))
    return written


def load_figures(path) -> list[Figure]:
    """The figures of a JSON file holding ``{"figures": [...]}`` (a report, a GPU run).

    Raises
    ------
    TernError
        If the file is missing or not such a JSON file.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        return [Figure.from_dict(item) for item in data["figures"]]
    except OSError as error:
        raise TernError(f"cannot read {path}: {error.strerror or error}") from None
    except (ValueError, KeyError, TypeError) as error:
        raise TernError(f"{path} is not a figures file ({{\"figures\": [...]}}): "
                        f"{error}") from None


def run_bench(directory, quick: bool = False, providers=None, merge=(),
              progress=print) -> tuple[Path, Path, list[Problem]]:
    """Run ``providers`` (default :data:`PROVIDERS`), add the figures of the ``merge`` files and
    the comparison of the FPGA with the strongest baselines
    (:mod:`tern_fpga.explore.baselines_comparison`), draw the plots and write the report into
    ``directory``; returns the report's JSON and Markdown paths and the problems it lists."""
    merged = [figure for path in merge for figure in load_figures(path)]
    figures, problems = run_providers(PROVIDERS if providers is None else providers, quick,
                                      progress, output=directory)
    figures += merged
    ratios, preface = comparison(figures)
    figures += ratios
    try:
        make_plots(figures, directory)
    except Exception as error:  # noqa: BLE001 (a plot must not cost the report its numbers)
        problems.append(Problem("tern_fpga.explore.bench.make_plots", "failed", _failure(error)))
    return (*write_report(figures, directory, problems, preface), problems)


# Adapters for the hardware units' benchmarks ----------------------------------------------------

# Unit of a flattened key, by suffix or by the dict it sits in (first match wins).
_UNITS = (("_mhz", "MHz"), ("_hz", "Hz"), ("macs_per_cycle", "MAC/cycle"),
          ("elements_per_cycle", "elements/cycle"), ("_per_lane", "cells/lane"),
          ("cycles", "cycles"), ("latency", "cycles"), ("_bytes", "B"), ("_seconds", "s"),
          ("_watts", "W"), (".used", "cells"), (".available", "cells"), (".logic", "cells"),
          (".ff", "cells"), (".dsp", "cells"), (".bram", "cells"), (".beats", "beats"))
# Keys that describe how a benchmark ran rather than what it found: moved into the notes.
_SETTINGS = ("lanes", "levels_per_stage", "constraint_mhz", "report")
ECP5_DEVICE = "ECP5-85F CABGA381 (Yosys + nextpnr)"
ICE40_DEVICE = "iCE40UP5K (Yosys)"


def _unit(name: str) -> str:
    if ".cells." in name:
        return "cells"
    return next((unit for suffix, unit in _UNITS if name.endswith(suffix)), "")


def figures_from_dict(prefix: str, data: dict, source: str, label: str, notes: str = "",
                      machine: str | None = None) -> list[Figure]:
    """Flatten a nested dict of numbers into figures named ``prefix.key.subkey``, all with
    ``label``. Units come from the keys (``_mhz``: MHz, ``cycles``, ...). Keys in
    :data:`_SETTINGS` become ``key=value`` notes of every figure; ``None`` values and
    utilisation entries with nothing used are left out."""
    data = dict(data)
    settings = [f"{key}={data.pop(key)}" for key in _SETTINGS if data.get(key) is not None]
    notes = "; ".join(filter(None, [notes, ", ".join(settings)]))
    extra = {} if machine is None else {"machine": machine}
    figures = []

    def visit(name: str, value):
        if isinstance(value, dict):
            if value.get("used", 1) == 0:
                return
            for key, item in value.items():
                visit(f"{name}.{re.sub(r'[^A-Za-z0-9_-]+', '_', str(key))}", item)
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                visit(f"{name}.{index}", item)
        elif value is not None:
            figures.append(Figure(name, str(value) if isinstance(value, bool) else value,
                                  _unit(name), label, source, notes, **extra))

    visit(prefix, data)
    return figures


def ternary_unit(quick: bool) -> list[Figure]:
    """``tern_fpga/explore/bench_ternary_matvec.py``: Verilator throughput (simulated), ECP5 cells
    and Fmax of the
    large preset's unit (estimated). Quick: two lane counts instead of four."""
    # here, not at the top: loads Amaranth
    from tern_fpga.explore import bench_ternary_matvec as bench_ternary

    source = "tern_fpga.explore.bench_ternary_matvec.run"
    data = bench_ternary.run(lanes=(16, 64) if quick else (16, 64, 256, 1024))
    return figures_from_dict("ternary_unit.throughput", data["throughput"], source,
                             "simulated", "random matrix, streams never stall") + \
        figures_from_dict("ternary_unit.ecp5", data["ecp5"], source, "estimated",
                          machine=ECP5_DEVICE)


def row_unit(quick: bool) -> list[Figure]:
    """``tern_fpga/explore/bench_row_unit.py``: throughput and latency (simulated), ECP5 and iCE40
    size and
    ECP5 Fmax (estimated). Quick: no place and route."""
    from tern_fpga.explore import bench_row_unit  # here, not at the top: loads Amaranth

    source = "tern_fpga.explore.bench_row_unit.run"
    data = bench_row_unit.run(fmax=not quick)
    return figures_from_dict("row_unit", {"latency": data["latency"],
                                          "throughput": data["throughput"]}, source,
                             "simulated", "Amaranth simulator, back-to-back commands") + \
        figures_from_dict("row_unit.ecp5", data["ecp5"], source, "estimated",
                          machine=ECP5_DEVICE) + \
        figures_from_dict("row_unit.ice40", data["ice40"], source, "estimated",
                          machine=ICE40_DEVICE)


def bitstreams(quick: bool) -> list[Figure]:
    """The committed bitstreams (``bitstreams/*.json``, written by ``tern build``): nextpnr's
    Fmax and the utilisation of each, labelled *estimated* (static timing and placement
    reports of a real build, not a measurement on a board)."""

    manifests = all_manifests()
    if not manifests:
        raise Skipped("no bitstream has been built (tern build --board ...)")
    figures = []
    for _, manifest in manifests:
        name = f"bitstream.{manifest['board']}.{manifest['preset']}"
        note = (f"{manifest['bitstream']} (build id {manifest['build_id']}, nextpnr seed "
                f"{manifest['nextpnr_seed']}, design commit {manifest['source_commit'][:10]}), "
                f"runs at {manifest['clock_mhz']} MHz")
        machine = f"{manifest['board']} (Yosys + nextpnr, YoWASP)"
        for clock, mhz in manifest["fmax_mhz"].items():
            figures.append(Figure(f"{name}.fmax_mhz.{re.sub(r'[^A-Za-z0-9_-]+', '_', clock)}",
                                  mhz, "MHz", "estimated", "tern build", note, machine=machine))
        for cell, (used, available) in manifest["utilisation"].items():
            if used:
                figures.append(Figure(f"{name}.{cell}", used, "cells", "estimated",
                                      "tern build", f"of {available}; {note}",
                                      machine=machine))
    return figures
