"""Soak benchmark (``make bench`` provider): the virtual board generates 10,000 tokens over a
link that damages bytes and stalls, and every token must equal the golden model's.

The same driver that talks to a board runs over a :class:`~tern_fpga.host.transport.FaultyTransport`
wrapped around the virtual board's socket: each byte, in both directions, is flipped, dropped
or sent twice at :data:`FAULT_RATE` each, and each read or write of the host stalls for
:data:`STALL_SECONDS` with probability :data:`STALL_RATE`. The link recovers by retransmission
(NAKs, timeouts, repeat detection on the board) and by reading lost token notifications back
from the board's token history. The report gives the faults injected, the link's
retransmissions and read-backs, and the host's tokens/s against a clean run of the same board,
so the throughput the faults cost. Everything here is *simulated* (Verilator of the board's top
level): the tokens/s are the simulation's, not the chip's.
"""

from __future__ import annotations

import time

from tern_fpga.contracts import paths, tokenizer
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.params import preset
from tern_fpga.explore.report import Figure
from tern_fpga.host.driver import Board
from tern_fpga.host.session import generate_text, reuse_if_loaded
from tern_fpga.host.transport import FaultyTransport, SerialTransport
from tern_fpga.sim.golden.model import golden_from_file
from tern_fpga.sim.rtl.virtual_board import VirtualBoard

__all__ = ["FAULT_RATE", "STALL_RATE", "STALL_SECONDS", "run", "soak"]

SOAK_TOKENS = 10_000
QUICK_TOKENS = 300
CLEAN_TOKENS = 1_000        # the clean run the throughput is compared with
FAULT_RATE = 1e-4           # per byte and direction, for each of flip, drop and duplicate
STALL_RATE = 1e-3           # per read or write call of the host
STALL_SECONDS = 0.2
PROMPT = "The for statement"
SEED = 1


def soak(preset_name: str = "demo", tokens: int = SOAK_TOKENS, *, fault_rate: float = FAULT_RATE,
         stall_rate: float = STALL_RATE, seed: int = SEED, progress=print) -> dict:
    """Generate ``tokens`` on the virtual board of ``preset_name`` (its shipped model) over a
    faulty link and compare them with the golden model's; returns the measurements.

    Raises
    ------
    TernError
        If a token differs from the golden model's (the message names the first).
    """
    from tern_fpga.hw.board import Accelerator, simulation_baud  # here: loads Amaranth
    from tern_fpga.quant.export import export_checkpoint  # here, not at the top: loads torch

    params = preset(preset_name)
    output = paths.BUILD / "soak" / f"{preset_name}.tern"
    output.parent.mkdir(parents=True, exist_ok=True)
    export = export_checkpoint(paths.shipped_checkpoint(preset_name), params, output)
    prompt = tokenizer.encode(PROMPT)
    _, golden = golden_from_file(output)
    progress(f"soak: the golden model's {tokens:,} tokens")
    expected = golden.generate(prompt, tokens)
    clean_tokens = min(CLEAN_TOKENS, tokens)

    design = Accelerator(params, baud=simulation_baud(params))
    virtual = VirtualBoard(design, params, name=params.name)
    with virtual as url:
        with Board(url, baud=design.baud) as board:
            progress("soak: loading the export over a clean link")
            board.load_export(export, progress=False)
            progress(f"soak: {clean_tokens:,} tokens over a clean link")
            clean = generate_text(board, export, prompt, clean_tokens, show=False)
        _check(clean.generated, expected[:clean_tokens], "clean link")
        faulty = FaultyTransport(SerialTransport(url, baud=design.baud), flip=fault_rate,
                                 drop=fault_rate, duplicate=fault_rate, stall=stall_rate,
                                 stall_seconds=STALL_SECONDS, seed=seed)
        start = time.perf_counter()
        with Board(url, baud=design.baud, transport=faulty) as board:
            # by the chip's CRCs, over the faulty link; the work bank is written back
            if reuse_if_loaded(board, export) is None:
                raise TernError("soak: the board lost the export between the two runs")
            progress(f"soak: {tokens:,} tokens over a link with faults")
            damaged = generate_text(board, export, prompt, tokens, show=False)
            link = dict(board.link.stats)
        seconds = time.perf_counter() - start
    _check(damaged.generated, expected, "faulty link")
    return {
        "preset": preset_name, "tokens": tokens, "fault_rate": fault_rate,
        "stall_rate": stall_rate, "stall_seconds": STALL_SECONDS, "faults": dict(faulty.faults),
        "retransmissions": link.get("retransmissions", 0), "naks": link.get("naks", 0),
        "timeouts": link.get("timeouts", 0), "damaged_frames": link.get("damaged", 0),
        "tokens_per_s": damaged.host_tokens_per_s, "clean_tokens_per_s": clean.host_tokens_per_s,
        "seconds": seconds, "simulated_cycles": virtual.stats.get("cycles", 0),
    }


def _check(generated: list[int], expected: list[int], where: str) -> None:
    if generated == expected:
        return
    first = next((i for i, (a, b) in enumerate(zip(generated, expected)) if a != b),
                 min(len(generated), len(expected)))
    got = generated[first] if first < len(generated) else "nothing"
    raise TernError(f"soak ({where}): token {first} is {got}, the golden model's "
                    f"{expected[first] if first < len(expected) else 'nothing'}; the link let a "
                    f"damaged or lost token through")


def run(quick: bool = False) -> list[Figure]:
    result = soak(tokens=QUICK_TOKENS if quick else SOAK_TOKENS)
    faults = result["faults"]
    injected = faults["flip"] + faults["drop"] + faults["duplicate"]
    lost = 1 - result["tokens_per_s"] / result["clean_tokens_per_s"]
    conditions = (
        f"virtual board ({result['preset']} preset, shipped model, Verilator), host driver over "
        f"a FaultyTransport: each byte in each direction flipped, dropped or duplicated at "
        f"{result['fault_rate']:g} each, each host read/write stalled {STALL_SECONDS} s at "
        f"{result['stall_rate']:g}; seed {SEED}; every token compared with the golden model's")

    def figure(name, value, unit="", notes=""):
        return Figure(f"soak.{result['preset']}.{name}", value, unit, "simulated", "tern.soak",
                      f"{notes}; {conditions}" if notes else conditions)

    return [
        figure("tokens_equal_to_golden", result["tokens"], "tokens",
               "all of them: a mismatch fails the benchmark"),
        figure("fault_rate_per_byte", 3 * result["fault_rate"], "",
               "flip + drop + duplicate, each direction"),
        figure("bytes_damaged", injected, "bytes",
               f"{faults['flip']} flipped, {faults['drop']} dropped, {faults['duplicate']} "
               f"duplicated"),
        figure("stalls", faults["stall"], "", f"{STALL_SECONDS} s each"),
        figure("retransmissions", result["retransmissions"], "",
               f"{result['naks']} NAKs, {result['timeouts']} timeouts, "
               f"{result['damaged_frames']} damaged frames received"),
        figure("tokens_per_s_with_faults", result["tokens_per_s"], "tokens/s",
               "at the host, simulation speed (not the chip's)"),
        figure("tokens_per_s_clean", result["clean_tokens_per_s"], "tokens/s",
               f"the first {min(CLEAN_TOKENS, result['tokens']):,} tokens over the same board "
               f"without faults"),
        figure("throughput_lost", 100 * lost, "%", "1 - faulty / clean tokens/s"),
    ]
