"""The virtual board of a preset whose weights live in SDRAM: the accelerator on LiteDRAM's
controller and memory model, with the memory preloadable from an export.

:class:`SDRAMAccelerator` is :class:`tern_fpga.hw.board.Accelerator` with its weight memory
in SDRAM (:class:`tern_fpga.hw.sdram.weight_memory.SDRAMWeights`) behind the same
:class:`tern_fpga.hw.sdram.controller.SDRAMController` that the board uses, generated in its
``"sim"`` variant: LiteDRAM's ``SDRAMPHYModel`` holds the four banks' contents and LiteDRAM's
timing checker watches every command. Only the PHY differs from the board; the controller, its
initialisation by our gateware, the refresh and the weight stream are the board's.

Preload (docs/sdram.md, "The virtual board"): loading the stdlib model's 5 MB of weights
through the simulated UART would take tens of simulated seconds. :func:`write_preload` writes
an export's weights and embeddings as ``$readmemh`` files, one per bank, in the bank model's
addressing; the board reads them at start-up when given the plusargs that
:func:`write_preload` returns (``+tern_sdram_bank<N>=FILE``). The host then only checks the
preloaded sections by the chip's CRC instead of writing it
(:class:`tern_fpga.host.driver.Board`'s ``preloaded``). The UART path into the SDRAM is the
same as on the board and is tested on a small model.

:func:`sim_core_verilog` is the generated sim core with two edits, each checked to apply
exactly: the ``$readmemh`` preload added beside each bank's memory, and the per-command log
(``tern-dfi`` lines, for the controller's own tests) removed, since a whole-model run issues
millions of commands. The timing checker's ``violation`` lines stay; the virtual board keeps
the design's output in :attr:`~tern_fpga.sim.rtl.virtual_board.VirtualBoard.messages`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from amaranth.hdl import Module
from amaranth.lib import wiring

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.contracts.protocol import to_words
from tern_fpga.contracts.sdram_image import export_packing, sdram_weight_words
from tern_fpga.hw.board import Accelerator, simulation_baud
from tern_fpga.hw.sdram.config import sdram_core_config
from tern_fpga.hw.sdram.controller import SDRAMController
from tern_fpga.hw.sdram.litedram_core import COMMAND_LOG_TAG, GeneratedCore, generate_core
from tern_fpga.hw.sdram.weight_memory import SDRAMWeights, sdram_layout

__all__ = ["BANKS", "COLUMNS", "PRELOADED", "PRELOAD_PLUSARG", "SDRAMAccelerator",
           "bank_addresses", "sim_core_verilog", "write_preload"]

BANKS = 4
COLUMNS = 512           # LiteDRAM's ROW_BANK_COL: address = row | bank | column (9 bits)
PRELOAD_PLUSARG = "tern_sdram_bank"
PRELOADED = ("weights", "embeddings")     # the export's sections that live in the SDRAM
_BANK_MEMORY = re.compile(r"^reg \[15:0\] (mem(?:_\d)?)\[0:(\d+)\];$", re.MULTILINE)


def bank_addresses(addresses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bank and index within the bank model's memory of SDRAM word ``addresses`` (the native
    port's): ``row * COLUMNS + column`` (LiteDRAM's ``BankModel``)."""
    addresses = np.asarray(addresses, dtype=np.int64)
    column = addresses % COLUMNS
    bank = (addresses // COLUMNS) % BANKS
    row = addresses // (COLUMNS * BANKS)
    return bank, row * COLUMNS + column


def sim_core_verilog(generated: GeneratedCore) -> tuple[str, str]:
    """``(file name, text)`` of the generated ``"sim"`` core, with the preload added and the
    command log removed.

    Raises
    ------
    RuntimeError
        If the generated text is not as expected (a different LiteDRAM): the edits name it.
    """
    text = generated.verilog.read_text()
    memories = _BANK_MEMORY.findall(text)
    if len(memories) != BANKS:
        raise RuntimeError(f"expected {BANKS} bank memories in {generated.verilog}, found "
                           f"{[name for name, _ in memories]}: the locked LiteDRAM changed?")

    banks = {}
    for bank, (name, _) in enumerate(memories):
        if f"{name}[soc_ddrphy_bankmodel{bank}_write_port_adr]" not in text:
            raise RuntimeError(f"memory {name} of {generated.verilog} is not bank {bank}'s: the "
                               f"locked LiteDRAM changed?")
        banks[name] = bank

    def preload(match):
        name, bank = match.group(1), banks[match.group(1)]
        return (f"{match.group(0)}\n"
                f"initial begin : tern_preload_{name}\n"
                f"    reg [8*1024-1:0] tern_file;\n"
                f"    if ($value$plusargs(\"{PRELOAD_PLUSARG}{bank}=%s\", tern_file))\n"
                f"        $readmemh(tern_file, {name});\n"
                f"end")

    text = _BANK_MEMORY.sub(preload, text)
    log_line = re.compile(rf"^\s*\$display\(\"{COMMAND_LOG_TAG} .*\);$", re.MULTILINE)
    if len(log_line.findall(text)) != 1:
        raise RuntimeError(f"expected one {COMMAND_LOG_TAG} command log line in "
                           f"{generated.verilog}")
    text = log_line.sub("", text)
    return f"litedram_sim_{generated.directory.name}.v", text


def write_preload(export, directory) -> list[str]:
    """Write ``export``'s weights (in the export's packing, as the host loads them:
    :mod:`tern_fpga.contracts.sdram_image`) and embeddings (:data:`PRELOADED`) into
    ``directory`` as one ``$readmemh`` file per bank, where
    :class:`~tern_fpga.hw.sdram.weight_memory.SDRAMWeights` keeps them
    (:func:`~tern_fpga.hw.sdram.weight_memory.sdram_layout`); returns the plusargs that make the
    board read them.

    Raises
    ------
    ValueError
        If the export lacks one of the sections.
    """
    _, embedding_base = sdram_layout(export.params)
    addresses, values = [], []
    for name, base in zip(PRELOADED, (0, embedding_base)):
        section = export.sections.get(name)
        if section is None:
            raise ValueError(f"the export has no {name} section to preload")
        host_words = (sdram_weight_words(section, export_packing(export)) if name == "weights"
                      else to_words(section))   # SDRAM words 2a and 2a + 1 of host word a
        halves = np.empty(2 * len(host_words), dtype=np.uint32)
        halves[0::2], halves[1::2] = host_words & 0xFFFF, host_words >> 16
        addresses.append(base + np.arange(len(halves)))
        values.append(halves)
    values = np.concatenate(values)
    bank, index = bank_addresses(np.concatenate(addresses))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    plusargs = []
    for number in range(BANKS):
        selected = bank == number
        if not selected.any():
            continue
        path = directory / f"sdram_bank{number}.hex"
        order = np.argsort(index[selected], kind="stable")
        _write_readmemh(path, index[selected][order], values[selected][order])
        plusargs.append(f"+{PRELOAD_PLUSARG}{number}={path}")
    return plusargs


def _write_readmemh(path: Path, index: np.ndarray, values: np.ndarray) -> None:
    """``$readmemh`` text: an ``@address`` line before each run of consecutive indices."""
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    lines = []
    for run_index, run_values in zip(np.split(index, breaks), np.split(values, breaks)):
        lines.append(f"@{run_index[0]:x}")
        lines.append("\n".join(f"{value:04x}" for value in run_values.tolist()))
    path.write_text("\n".join(lines) + "\n")


class SDRAMAccelerator(wiring.Component):
    """:class:`~tern_fpga.hw.board.Accelerator` with its weights in a simulated SDRAM.

    ``idle`` also waits for the SDRAM's initialisation, so that the virtual board clocks
    through the 200 us power-up wait rather than sleeping in it. ``verilog_files`` carries the
    sim core's Verilog for :func:`~tern_fpga.sim.rtl.virtual_board.build_board`.

    Members
    -------
    uart_rx, uart_tx, idle, leds :
        As :class:`~tern_fpga.hw.board.Accelerator`'s.
    """

    def __init__(self, params: AcceleratorParameters, *, baud: int | None = None, **options):
        self._params = params
        generated = generate_core(sdram_core_config(params), "sim")
        name, text = sim_core_verilog(generated)
        self.verilog_files = {name: text}
        self.controller = SDRAMController(generated)
        self.weights = SDRAMWeights(params, self.controller, embeddings=True)
        self.accelerator = Accelerator(
            params, baud=simulation_baud(params) if baud is None else baud,
            weight_memory=self.weights, **options)
        super().__init__(self.accelerator.signature)     # the same pins

    @property
    def params(self) -> AcceleratorParameters:
        return self._params

    @property
    def baud(self) -> int:
        return self.accelerator.baud

    def elaborate(self, platform):
        m = Module()
        m.submodules.accelerator = accelerator = self.accelerator
        m.d.comb += [accelerator.uart_rx.eq(self.uart_rx), self.uart_tx.eq(accelerator.uart_tx),
                     self.leds.eq(accelerator.leds),
                     self.idle.eq(accelerator.idle & self.controller.init_done)]
        return m
