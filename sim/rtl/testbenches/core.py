"""cocotb testbench of the whole core on Verilator: a real model, token after token, bit-exact.

The host side (:mod:`tern_fpga.sim.rtl.core_case`) compiles the model, runs the golden model and
writes everything into one ``.npz``: the memory image, the tokens to feed, and per step the golden's
next token, logits, recurrent state and (for localising a mismatch) its per-instruction trace.
:func:`whole_model` loads the image through the core's memory port, runs the ``reset`` entry, then
one ``step`` per token, and after every step reads back the logits and every layer's state through
the same port and compares them with the golden. On the first mismatch it re-runs that step
while watching the vector memory's write port and names the first instruction whose output
differs from the golden's trace, the element, both values, when it was written, and the command
that re-runs the simulation with waves around that cycle. :func:`profile` and :func:`timeline`
sample one step cycle by cycle: the cycles spent at each instruction, and what each unit did.
"""

from __future__ import annotations

import json
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from tern_fpga.sim.rtl.cocotb_support import (
    CLOCK_PERIOD_NS,
    current_cycle,
    start_clock_and_reset,
    test_config,
    trace_window,
)

# Cycles of waves offered before the differing instruction starts and after the element's write.
WAVES_MARGIN = 16


class CoreHost:
    """Drives the core's memory, run and done ports as the protocol engine would."""

    def __init__(self, dut, address_bits: int):
        self.dut = dut
        self.address_bits = address_bits

    def _request(self, space: int, address: int, data: int, write: int) -> int:
        a = self.address_bits
        return space | (address << 3) | (data << (3 + a)) | (write << (35 + a))

    async def write(self, space: int, words: np.ndarray, start: int = 0):
        dut = self.dut
        dut.memory_request__valid.value = 1
        for offset, word in enumerate(words.tolist()):
            dut.memory_request__payload.value = self._request(space, start + offset, word, 1)
            while True:  # most writes take a cycle; a weight word's read-modify-write two
                await ReadOnly()
                taken = bool(dut.memory_request__ready.value)
                await RisingEdge(dut.clk)
                if taken:
                    break
        dut.memory_request__valid.value = 0

    async def read(self, space: int, start: int, count: int) -> np.ndarray:
        dut, words = self.dut, []
        dut.memory_response__ready.value = 1
        for address in range(start, start + count):
            dut.memory_request__valid.value = 1
            dut.memory_request__payload.value = self._request(space, address, 0, 0)
            await RisingEdge(dut.clk)
            dut.memory_request__valid.value = 0
            while True:
                await ReadOnly()
                if dut.memory_response__valid.value:
                    words.append(int(dut.memory_response__payload.value))
                    await RisingEdge(dut.clk)
                    break
                await RisingEdge(dut.clk)
        return np.array(words, dtype=np.uint32)

    async def run(self, entry: int, token: int, poll: int = 256) -> tuple[int, int]:
        """Run the program at ``entry``; returns (done token, cycles taken)."""
        dut = self.dut
        start = int(dut.cycles.value)
        dut.run__payload.value = entry | (token << 24)
        dut.run__valid.value = 1
        await RisingEdge(dut.clk)
        dut.run__valid.value = 0
        dut.done__ready.value = 0
        while True:  # no per-cycle Python: poll every few hundred cycles
            await ReadOnly()
            if dut.done__valid.value:
                break
            await ClockCycles(dut.clk, poll)
        result = int(dut.done__payload.value)
        await RisingEdge(dut.clk)
        dut.done__ready.value = 1
        await RisingEdge(dut.clk)
        dut.done__ready.value = 0
        return result, int(dut.cycles.value) - start


def signed32(words: np.ndarray) -> np.ndarray:
    return words.astype(np.uint32).view(np.int32).astype(np.int64)


async def first_differing_instruction(dut, host, case, step, rerun: str) -> str:
    """Re-run ``step`` from the golden's state before it, watching the vector memory's writes;
    names the first instruction whose output differs from the golden's trace, with the
    simulation time and cycle of the differing write and the command that re-runs with waves
    around it (``rerun``, with ``{first}`` and ``{count}`` to fill)."""
    for layer_state in case["state_regions"]:
        address, length = (int(v) for v in layer_state)
        before = case["state_before"][step][address:address + length]
        await host.write(2, before.astype(np.int32).view(np.uint32), address)
    lanes = int(case["lanes"])
    expected = {}
    for pc, dst, values in zip(case[f"trace_pc_{step}"], case[f"trace_dst_{step}"],
                               np.split(case[f"trace_values_{step}"],
                                        np.cumsum(case[f"trace_lengths_{step}"])[:-1])):
        expected.setdefault(int(pc), (int(dst), values))
    dut.run__payload.value = int(case["step_entry"]) | (int(case["tokens"][step]) << 24)
    dut.run__valid.value = 1
    await RisingEdge(dut.clk)
    dut.run__valid.value = 0
    written: dict[int, dict[int, tuple[int, int]]] = {}   # pc: {element: (value, cycle)}
    started: dict[int, int] = {}                          # pc: its first cycle
    while True:
        await ReadOnly()
        if dut.done__valid.value:
            break
        started.setdefault(int(dut.pc.value), current_cycle())
        enable = int(dut.vector_write_en.value) if hasattr(dut, "vector_write_en") else 0
        if enable:
            pc = int(dut.vector_write_pc.value)   # a TMV's writes go on after its pc
            word = int(dut.vector_write_addr.value)
            data = int(dut.vector_write_data.value)
            for lane in range(lanes):
                if enable >> lane & 1:
                    value = (data >> (32 * lane)) & 0xFFFF_FFFF
                    written.setdefault(pc, {})[word * lanes + lane] = (
                        value - (1 << 32 if value >> 31 else 0), current_cycle())
        await RisingEdge(dut.clk)
    end = current_cycle()
    await RisingEdge(dut.clk)
    dut.done__ready.value = 1
    await RisingEdge(dut.clk)
    dut.done__ready.value = 0
    for pc in sorted(expected):
        dst, values = expected[pc]
        got = written.get(pc, {})
        for index, value in enumerate(values.tolist()):
            found, cycle = got.get(dst + index, (None, None))
            if found != value:
                start = started.get(pc, end)
                written_at = (f"written at {cycle * CLOCK_PERIOD_NS:,} ns, cycle {cycle}"
                              if cycle is not None else
                              f"never written (the step ended at cycle {end})")
                first = max(0, start - WAVES_MARGIN)
                last = (cycle if cycle is not None else end) + WAVES_MARGIN
                text = " ".join(str(case["program_text"][pc]).split())
                return (f"instruction {pc} ({text}): element "
                        f"{index} is {found}, the golden model wrote {value}; {written_at} "
                        f"(the instruction started at cycle {start}, in the re-run of step "
                        f"{step}); waves around it: "
                        + rerun.format(first=first, count=last - first))
    return "no single instruction's output differs (the mismatch is in state not traced)"


async def load_and_reset(dut, config) -> tuple:
    """Clock and reset the core, write the case's memory image through the memory port, check
    the chip's tables against the export's, and run the program's reset entry."""
    case = np.load(config["case"], allow_pickle=False)
    host = CoreHost(dut, int(case["address_bits"]))
    dut.memory_request__valid.value = 0
    dut.memory_response__ready.value = 0
    dut.run__valid.value = 0
    dut.done__ready.value = 0
    await start_clock_and_reset(dut)
    for space, words in zip(case["image_spaces"], np.split(case["image_words"],
                                                           np.cumsum(case["image_lengths"])[:-1])):
        await host.write(int(space), words)
    tables = await host.read(5, 0, len(case["tables"]))
    assert (tables == case["tables"]).all(), "the chip's tables differ from the export's"
    await host.run(int(case["reset_entry"]), 0)
    return case, host


def _write_output(config, **found) -> None:
    Path(config["output"]).write_text(json.dumps(found))


@cocotb.test()
async def whole_model(dut):
    """Load, reset, then every step checked against the golden model (with waves of the
    steps ``waves_steps``, first and last, if asked)."""
    config = test_config()
    case, host = await load_and_reset(dut, config)
    logits_address, vocab = (int(v) for v in case["logits_region"])
    traced = config.get("waves_steps") or (-1, -1)
    cycle_counts = []
    for step, token in enumerate(case["tokens"].tolist()):
        if step == traced[0]:
            first_traced = current_cycle()
            trace_window(first_traced)
        next_token, cycles = await host.run(int(case["step_entry"]), token)
        cycle_counts.append(cycles)
        logits = signed32(await host.read(2, logits_address, vocab))
        states = [signed32(await host.read(2, int(a), int(n))) for a, n in case["state_regions"]]
        if step == traced[1]:
            trace_window(first_traced, current_cycle())
        ok = next_token == int(case["next_tokens"][step]) and \
            (logits == case["logits"][step]).all() and \
            all((s == e).all() for s, e in zip(states, np.split(case["states"][step],
                                                                len(states))))
        if not ok:
            where = await first_differing_instruction(dut, host, case, step, config["rerun"])
            raise AssertionError(
                f"step {step} (token {token}): the core gave token {next_token}, the golden "
                f"{int(case['next_tokens'][step])}; logits equal: "
                f"{(logits == case['logits'][step]).all()}; first difference: {where}")
    dut._log.info("cycles per token: %s", cycle_counts)
    _write_output(config, cycles=cycle_counts)


async def _sample_step(dut, case, sample) -> None:
    """Run the first step, calling ``sample()`` once a cycle until the core is done."""
    dut.run__payload.value = int(case["step_entry"]) | (int(case["tokens"][0]) << 24)
    dut.run__valid.value = 1
    await RisingEdge(dut.clk)
    dut.run__valid.value = 0
    while True:
        await ReadOnly()
        if dut.done__valid.value:
            break
        sample()
        await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    dut.done__ready.value = 1


@cocotb.test()
async def profile(dut):
    """One step with the program counter sampled every cycle: cycles spent per instruction."""

    config = test_config()
    case, _ = await load_and_reset(dut, config)
    cycles: dict[int, int] = {}

    def sample():
        pc = int(dut.pc.value)
        cycles[pc] = cycles.get(pc, 0) + 1

    await _sample_step(dut, case, sample)
    _write_output(config, profile={str(pc): count for pc, count in sorted(cycles.items())})


@cocotb.test()
async def timeline(dut):
    """One step with the sequencer and the units sampled every cycle: a sample ``[cycle, pc,
    sequencer state, matrix context busy, its pc, matrix unit busy, row unit busy, norm unit
    busy]`` at the step's start and at each change (cycles from the step's start)."""

    config = test_config()
    case, _ = await load_and_reset(dut, config)
    signals = (dut.pc, dut.fsm_state, dut.matrix_busy, dut.matrix_pc, dut.matvec.busy,
               dut.row.busy, dut.norm.busy)
    samples, start, last = [], current_cycle(), [0]

    def sample():
        values = [int(signal.value) for signal in signals]
        last[0] = current_cycle() - start
        if not samples or samples[-1][1:] != values:
            samples.append([last[0], *values])

    await _sample_step(dut, case, sample)
    samples.append([last[0] + 1, *samples[-1][1:]])   # where the step ends
    _write_output(config, samples=samples)
