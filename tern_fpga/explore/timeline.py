"""Where the cycles of one token go: one row per unit, time across, from a Verilator run.

:func:`plot_timeline` draws the rows that :func:`tern_fpga.sim.rtl.core_case.unit_timeline`
takes from the core testbench's ``timeline`` test (every cycle of one step sampled): the
sequencer (fetching and decoding, waiting for the matrix unit, reading constants, running an
instruction) and the matrix, row and norm/quantiser units, each stretch coloured by the opcode
the unit serves, with each unit's share of the step written beside its row. ``tern sim core ...
--timeline FILE.png`` draws one; :func:`run` is the ``make bench`` provider (one PNG per preset
with a shipped checkpoint, ``timeline-<preset>.png``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot  # after use(): the backend must be chosen first
from matplotlib.patches import Patch

from tern_fpga.contracts import paths
from tern_fpga.contracts.params import preset
from tern_fpga.explore.bench import Skipped
from tern_fpga.explore.report import Figure
from tern_fpga.sim.rtl.core_case import write_case
from tern_fpga.sim.rtl.runs import core_timeline

__all__ = ["COLOURS", "busy_fractions", "plot_timeline", "run"]

ELEMENT_WISE = ("SIGMOID", "SILU", "MUL", "ADD", "SUB", "ONE_MINUS")
# Legend entry -> colour, in legend order; element-wise opcodes share one entry.
COLOURS = {
    "TMV": "#1f5fa8", "TMV scale": "#8fb8e8", "QUANT": "#e8872a", "NORM": "#3a9a4a",
    "element-wise": "#9b59b6", "EMBED": "#8c6239", "ZERO": "#aaaaaa",
    "fetch/decode": "#d9d9d9", "waits for the matrix unit": "#d62728",
    "reads constants": "#f2c12e", "runs an instruction": "#555555",
}
ROWS = ("sequencer", "matrix unit", "row unit", "norm/quantiser")
PROMPT = [ord("T")]


def _legend_entry(what: str) -> str:
    return "element-wise" if what in ELEMENT_WISE else what


def busy_fractions(rows: dict, cycles: int) -> dict[str, float]:
    """Each unit's busy share of the step (the sequencer's: running or reading constants)."""
    fractions = {}
    for name, segments in rows.items():
        busy = [segment for segment in segments if name != "sequencer" or
                segment.what in ("runs an instruction", "reads constants")]
        fractions[name] = sum(s.end - s.start for s in busy) / cycles if cycles else 0.0
    return fractions


def plot_timeline(path: Path, rows: dict, about: dict) -> Path:
    """Draw ``rows`` (unit -> segments) of one step into ``path`` (PNG).

    ``about`` gives ``preset``, ``cycles`` (the step's) and ``token`` for the title."""
    cycles = about["cycles"]
    figure, axes = pyplot.subplots(figsize=(15, 4.2), dpi=130)
    used = set()
    for y, name in enumerate(reversed(ROWS)):
        by_colour: dict[str, list] = {}
        for segment in rows.get(name, []):
            entry = _legend_entry(segment.what)
            by_colour.setdefault(entry, []).append((segment.start, segment.end - segment.start))
        for entry, spans in by_colour.items():
            axes.broken_barh(spans, (y - 0.38, 0.76), facecolors=COLOURS.get(entry, "#000000"),
                             linewidth=0)
            used.add(entry)
    shares = busy_fractions(rows, cycles)
    axes.set_yticks(range(len(ROWS)))
    axes.set_yticklabels([f"{name}\n{shares.get(name, 0):.0%} busy" for name in reversed(ROWS)])
    axes.set_xlim(0, cycles)
    axes.set_ylim(-0.6, len(ROWS) - 0.4)
    axes.set_xlabel("clock cycles from the start of the step")
    axes.grid(axis="x", color="#eeeeee")
    axes.set_axisbelow(True)
    token = about.get("token")
    shown = f" {chr(token)!r}" if token is not None and 32 <= token < 127 else ""
    axes.set_title(f"Where the cycles of one token go: {about['preset']} preset, token "
                   f"{token}{shown}, {cycles:,} cycles (simulated, Verilator)", loc="left")
    handles = [Patch(facecolor=colour, label=entry) for entry, colour in COLOURS.items()
               if entry in used]
    axes.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=6,
                frameon=False, fontsize="small")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    pyplot.close(figure)
    return path


def run(quick: bool = False, output=None) -> list:
    """``make bench`` provider: ``timeline-<preset>.png`` in ``output`` (default ``bench/``)
    for each preset whose checkpoint is shipped (quick: micro only), and each unit's busy share
    of the step."""
    from tern_fpga.quant.checkpoint import load_pretrained  # here, not at the top: loads torch

    names = [name for name in (("micro",) if quick else ("micro", "demo"))
             if paths.CHECKPOINTS and (paths.CHECKPOINTS / name / "config.json").exists()]
    if not names:
        raise Skipped("no shipped checkpoint (checkpoints/micro, checkpoints/demo)")
    directory = Path(output) if output is not None else paths.BENCH
    figures = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix="tern-timeline-") as work:
            case = Path(work) / "case.npz"
            write_case(load_pretrained(paths.CHECKPOINTS / name), preset(name), PROMPT, 1, case)
            rows, about = core_timeline(case)
        plot = plot_timeline(directory / f"timeline-{name}.png", rows, about)
        note = f"one step (token {about['token']}), every cycle sampled; {plot.name}"
        for unit, share in busy_fractions(rows, about["cycles"]).items():
            figures.append(Figure(f"timeline.{name}.{unit.replace('/', '_').replace(' ', '_')}"
                                  f".busy_fraction", round(share, 3), "", "simulated",
                                  "tern_fpga.explore.timeline", note))
    return figures
