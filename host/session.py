"""What ``tern load``, ``tern generate`` and ``make demo`` do with a board: load, run, report.

The same functions serve a real board on a serial port and the virtual board on a TCP port,
since :class:`tern_fpga.host.driver.Board` takes any pyserial URL.
"""

from __future__ import annotations

import sys
import tempfile
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass, field

from tern_fpga.contracts import tokenizer
from tern_fpga.contracts.bitstreams import manifest_for
from tern_fpga.contracts.boards import BOARDS, runs_dataflow_core, weights_in_sdram
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.segmented_layout import default_segments, segmented_export
from tern_fpga.host.driver import Board
from tern_fpga.host.profile_run import profile_workload
from tern_fpga.sim.rtl.virtual_board import VirtualBoard

__all__ = [
    "CORES",
    "GenerationReport",
    "bitstream_fmax_mhz",
    "connect",
    "generate_text",
    "load",
    "reuse_if_loaded",
]


# Seconds a virtual SDRAM board may take to answer beyond the chip's time: Verilator runs the
# design with LiteDRAM's model at a few million cycles a second, and a CRC of the stdlib
# model's weights takes the simulated chip about 1.2 s (30 M cycles).
VIRTUAL_SDRAM_TIMEOUT = 120.0


#: The cores a virtual board can hold: the committed one, and issue 15's dataflow core.
CORES = ("instruction", "dataflow")


def resolve_core(params, core: str | None = None) -> str:
    """The core that runs ``params``: the dataflow core for a board's dataflow presets
    (:attr:`~tern_fpga.contracts.boards.Board.dataflow_presets`, whose bitstreams hold it),
    else the instruction core, unless ``core`` names one (``--core``; ``"dataflow"`` runs any
    block-RAM preset on the dataflow core's virtual board).

    Raises
    ------
    TernError
        For an unknown core, or the instruction core asked for a dataflow preset.
    """
    default = "dataflow" if runs_dataflow_core(params) else "instruction"
    if core is None:
        return default
    if core not in CORES:
        raise TernError(f"no core {core!r}; choose one of {', '.join(CORES)}")
    if default == "dataflow" and core != "dataflow":
        raise TernError(f"preset {params.name!r} is built with the dataflow core; leave out "
                        f"--core or pass --core dataflow")
    return core


def export_for_core(export, core: str):
    """``export`` as ``core`` loads it: for the dataflow core its weights in the segmented
    layout and its TMVs rewritten (:func:`~tern_fpga.contracts.segmented_layout.
    segmented_export`, :func:`~tern_fpga.contracts.segmented_layout.default_segments` rows a
    word), else as it is.

    Raises
    ------
    TernError
        If the export cannot take the dataflow core's layout (``P`` below 32, too many words).
    """
    if core != "dataflow":
        return export
    try:
        return segmented_export(export)
    except ValueError as error:
        raise TernError(f"the export cannot run on the dataflow core: {error}") from None


@contextmanager
def connect(port: str, params, *, baud: int = 3_000_000, waves=None, export=None,
            core: str | None = None):
    """A connected :class:`~tern_fpga.host.driver.Board` on ``port`` (a serial port or pyserial
    URL), or,
    for ``port == "sim"``, on a virtual board of ``params`` started for the purpose. Yields
    ``(board, virtual)``, ``virtual`` being the
    :class:`~tern_fpga.sim.rtl.virtual_board.VirtualBoard` or
    ``None``; its ``stats`` are complete after the block. Given the ``export`` it will run, the
    virtual board is built profile-guided by a slice of it
    (:mod:`tern_fpga.host.profile_run`; once per design, cached).

    ``core``: :func:`resolve_core`'s: ``"instruction"`` (the committed core) or
    ``"dataflow"`` (issue 15's dataflow core: a board's dataflow presets, on a board or the
    virtual board, and any block-RAM preset on the virtual board; it runs exports in its own
    layout, :func:`export_for_core`)."""
    core = resolve_core(params, core)
    if core == "dataflow":
        if weights_in_sdram(params):
            raise TernError(f"the dataflow core has no DRAM backend yet, and preset "
                            f"{params.name!r} keeps its weights in SDRAM; use a block-RAM "
                            f"preset (micro, demo) or the instruction core")
        if port != "sim" and not runs_dataflow_core(params):
            presets = sorted(name for entry in BOARDS.values() for name in entry.dataflow_presets)
            raise TernError(f"no bitstream of the dataflow core exists for preset "
                            f"{params.name!r}: on a board it runs preset(s) "
                            f"{', '.join(presets)} (tern build --preset {presets[0]}); use "
                            f"--port sim for this one, or the instruction core on a board")
        if port == "sim":
            with _dataflow_virtual_board(params, waves) as connected:
                yield connected
            return
    if port != "sim":
        with Board(port, baud=baud) as board:
            yield board, None
        return
    if weights_in_sdram(params):
        with _sdram_virtual_board(params, waves, export) as connected:
            yield connected
        return
    # here, not at the top: loads Amaranth
    from tern_fpga.hw.board import Accelerator, simulation_baud

    design = Accelerator(params, baud=simulation_baud(params))
    profile = None if export is None or waves else profile_workload(design, params, export)
    first_build = "a few minutes" + (", with a short profile run" if profile else "")
    print(f"starting a virtual board for preset {params.name!r} (Verilator; the first build "
          f"takes {first_build}); its UART runs at {design.baud:,} baud, four cycles a bit, to "
          f"keep the simulation short", file=sys.stderr)
    virtual = VirtualBoard(design, params, name=params.name, waves=waves,  # waves: FST path
                           profile=profile)
    with virtual as url, Board(url, baud=design.baud) as board:
        yield board, virtual


@contextmanager
def _dataflow_virtual_board(params, waves):
    """The virtual board of the dataflow core (:mod:`tern_fpga.hw.dataflow.accelerator`)."""
    # here, not at the top: loads Amaranth
    from tern_fpga.hw.dataflow.accelerator import DataflowAccelerator

    design = DataflowAccelerator(params, max_segments=default_segments(params))
    print(f"starting a virtual board of the dataflow core for preset {params.name!r} (Verilator;"
          f" the first build takes a minute or more); its UART runs at {design.baud:,} baud",
          file=sys.stderr)
    virtual = VirtualBoard(design, params, name=f"{params.name}-dataflow", waves=waves)
    with virtual as url, Board(url, baud=design.baud) as board:
        yield board, virtual


@contextmanager
def _sdram_virtual_board(params, waves, export):
    """The virtual board of a preset with its weights in SDRAM: LiteDRAM's memory model,
    preloaded with the export's weights when there is one (docs/sdram.md), so that a load
    checks them by CRC instead of sending megabytes through the simulated UART."""
    # here, not at the top: loads Amaranth
    from tern_fpga.sim.rtl.sdram_board import PRELOADED, SDRAMAccelerator, write_preload

    design = SDRAMAccelerator(params)
    with tempfile.TemporaryDirectory(prefix="tern-sdram-") as folder:
        plusargs = [] if export is None else write_preload(export, folder)
        print(f"starting a virtual board for preset {params.name!r} with its weights in a "
              f"simulated SDRAM (Verilator with LiteDRAM's memory model; the first build takes a "
              f"few minutes){'; weights and embeddings preloaded' if plusargs else ''}; its UART runs "
              f"at {design.baud:,} baud", file=sys.stderr)
        virtual = VirtualBoard(design, params, name=params.name, waves=waves, plusargs=plusargs)
        preloaded = PRELOADED if plusargs else ()
        # A simulated SDRAM runs slower than the chip's clock would: generous replies' timeout.
        with virtual as url, Board(url, baud=design.baud, preloaded=preloaded,
                                   timeout=VIRTUAL_SDRAM_TIMEOUT) as board:
            yield board, virtual


def reuse_if_loaded(board: Board, export) -> int | None:
    """If the board already holds every section of this export (by the chip's CRCs), make it
    ready to run it without a load: its work bank (state and buffers) is written back as the
    export has it, and the bytes that took are returned; else ``None``
    (:meth:`~tern_fpga.host.driver.Board.holds_export`)."""
    if not board.holds_export(export):
        return None
    return board.restore_work_bank(export)


def load(board: Board, export, *, progress: bool = True) -> dict:
    """Stream the export to the board and verify it; returns bytes, seconds and bytes/s."""
    start = time.perf_counter()
    total = board.load_export(export, progress=progress)
    seconds = time.perf_counter() - start
    return {"bytes": total, "seconds": seconds, "bytes_per_s": total / seconds}


def bitstream_fmax_mhz(params, board_id: int) -> tuple[float, str]:
    """Fmax of a built bitstream for these parameters (from its manifest) on the board that
    IDENTIFY names ``board_id``, else (no such bitstream, or not a known board: the virtual
    board) the preset's target clock; with a note saying which."""

    names = [b.name for b in BOARDS.values() if b.board_id == board_id]
    manifest = manifest_for(params, names[0]) if names else None
    if manifest is not None and manifest.get("fmax_mhz"):
        return min(manifest["fmax_mhz"].values()), f"Fmax of {manifest['bitstream']}"
    return params.clock_hz / 1e6, (f"the {params.name} preset's target clock: no bitstream "
                                   f"of these parameters for board 0x{board_id:04x}")


@dataclass
class GenerationReport:
    prompt_tokens: int
    generated: list[int] = field(default_factory=list)
    seconds: float = 0.0
    cycles: int = 0
    steps: int = 0
    fmax_mhz: float = 0.0
    fmax_source: str = ""

    @property
    def host_tokens_per_s(self) -> float:
        return len(self.generated) / self.seconds if self.seconds else 0.0

    @property
    def cycles_per_token(self) -> float:
        return self.cycles / self.steps if self.steps else 0.0

    @property
    def projected_tokens_per_s(self) -> float:
        return self.fmax_mhz * 1e6 / self.cycles_per_token if self.cycles else 0.0

    def lines(self, where: str) -> list[str]:
        return [
            (f"tokens/s measured at the host ({where}): {self.host_tokens_per_s:.1f} "
             f"({len(self.generated)} tokens in {self.seconds:.2f} s, link included)"),
            (f"cycles per token from the chip's counters: {self.cycles_per_token:,.0f} "
             f"({self.steps} steps)"),
            (f"tokens/s projected at {self.fmax_mhz:.1f} MHz ({self.fmax_source}): "
             f"{self.projected_tokens_per_s:,.0f}"),
        ]


def generate_text(board: Board, export, prompt: list[int], count: int, *, show: bool = True,
                  out=None) -> GenerationReport:
    """Reset the model's state, feed ``prompt``, generate ``count`` tokens and print them as
    they arrive; measure at the host and read the chip's cycle counter around the run."""
    out = sys.stdout if out is None else out    # at call time: tests and pipes replace it
    tokenizer.check_ids(prompt, export.model_config, "the prompt")
    # Text with the export's tokenizer (byte-level, or the tokenizer.json it carries), else ids.
    text_tokenizer = tokenizer.for_export(export, "the export") if show else None
    stream = text_tokenizer.stream(prompt) if text_tokenizer else None
    board.reset()
    before = board.status()
    report = GenerationReport(prompt_tokens=len(prompt))
    start = time.perf_counter()
    # closing: Ctrl-C (or a closed pipe) here ends the chip's run at once (ABORT), rather than
    # when the generator is collected
    with closing(board.generate(prompt, count)) as tokens:
        for token in tokens:
            report.generated.append(token)
            if show:
                out.write(stream.feed(token) if stream else f"{token} ")
                out.flush()
    report.seconds = time.perf_counter() - start
    after = board.status()
    report.cycles = after.cycles - before.cycles
    report.steps = after.tokens - before.tokens
    report.fmax_mhz, report.fmax_source = bitstream_fmax_mhz(export.params,
                                                             board.identity.board_id)
    if show:
        out.write((stream.finish() if stream else "") + "\n")
    return report
