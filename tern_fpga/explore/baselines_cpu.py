"""The strongest CPU baseline we can write in the project's stack: the lean decode, compiled.

:class:`~tern_fpga.explore.baselines_lean.LeanDecoder` (weights ternarised once, float32
operands, the same greedy tokens as the model as trained) with its step compiled by
``torch.compile`` (Inductor's C++ backend, which fuses the norms, quantisation and gates into a
few loops around the matrix-vector products); where compiling fails, the eager step, and the
notes say why. Measured at one thread and at every core this process may use (a fresh compile
for each, since Inductor fixes the thread count in the code it writes), batch 1.

Method, for a machine shared with other work: several runs sized from a calibration, like
:func:`tern_fpga.explore.baselines.decode_rates`; the figure is the *best* run (other processes
can only slow a run down), and the notes give the median and range, the load average and, at
one thread, tokens per second of this process's own CPU time over all the runs. Power from RAPL
where its counter is readable (idle baseline first, then a separate metered run); where there
is none, the notes say so.

As a ``tern bench`` provider (:func:`run`) it measures this machine. As a script it measures
chosen presets and thread counts and writes the figures as JSON (the device machine's CPU is
measured so, under another section name)::

    python -m tern_fpga.explore.baselines_cpu --threads 1 16 --section h200_host_cpu -o cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.output_paths import add_force_argument
from tern_fpga.explore.baselines import (
    cpu_meter,
    decode_rates,
    energy_figures,
    load_baseline_model,
)
from tern_fpga.explore.baselines_lean import LeanDecoder, agreement_figure, reference_tokens
from tern_fpga.explore.report import Figure, figures_output, machine_description
from tern_fpga.host.meters import measure_generation

__all__ = ["available_cores", "compiled_step", "measure_lean_cpu", "run"]

SOURCE = "tern_fpga.explore.baselines_cpu"
TOKENS_CHECKED = 128
MEASURED_PRESETS = ("micro", "demo")
# (runs, seconds per run, warm-up tokens, idle seconds, metered seconds)
QUICK_SETTINGS = (3, 0.3, 16, 1.0, 2.0)
FULL_SETTINGS = (7, 1.0, 64, 5.0, 10.0)


def available_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def compiled_step(decoder: LeanDecoder, compile_step: bool = True):
    """``(step, how)``: ``decoder.step`` compiled by Inductor (compiled on the first call,
    made here), or the eager step with the reason compiling failed."""
    if not compile_step:
        return decoder.step, "eager PyTorch (not compiled)"
    torch._dynamo.reset()
    # cpp_wrapper: the compiled step is called from C++, not a Python wrapper; on the demo
    # model at one thread 3,123 against 2,414 tokens/s (this 2-core machine, 2026-12-04).
    step = torch.compile(decoder.step, dynamic=False, fullgraph=True,
                         options={"cpp_wrapper": True})
    token, state = decoder.prime()
    try:
        with torch.inference_mode():
            step(token, state)
    except Exception as error:  # noqa: BLE001 (a missing C++ compiler: fall back, say why)
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        return decoder.step, (f"eager PyTorch (torch.compile failed here: "
                              f"{type(error).__name__}: {reason})")
    return step, "torch.compile (Inductor, C++ backend and wrapper)"


def measure_lean_cpu(decoder: LeanDecoder, name: str, note: str, threads: int, *,
                     compile_step: bool = True, runs: int = 7, seconds_per_run: float = 1.0,
                     warmup_tokens: int = 64, meter=None, meter_note: str = "",
                     idle_seconds: float = 5.0, metered_seconds: float = 10.0,
                     machine: str | None = None, reference: list[int] | None = None
                     ) -> list[Figure]:
    """Batch-1 decode speed (and, with ``meter``, power) of ``decoder`` at ``threads`` torch
    threads; figures ``<name>.tokens_per_s`` (best run), with a meter also :func:`energy
    figures <tern_fpga.explore.baselines.energy_figures>`, with ``reference`` (the greedy tokens
    of the model as trained after :data:`~tern_fpga.explore.baselines_lean.PROMPT`) first
    ``<name>.tokens_same_as_float32``: how many of them the measured step reproduces."""
    machine = machine or machine_description()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        step_function, how = compiled_step(decoder, compile_step)
        with torch.inference_mode():
            token, state = decoder.prime()
            done = 0

            def step(token):
                nonlocal state, done
                token, state = step_function(token, state)
                done += 1
                return token

            cpu_start = time.process_time()
            done = 0
            rates = decode_rates(step, token, runs, seconds_per_run, warmup_tokens)
            cpu_rate = done / (time.process_time() - cpu_start)
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            plural = "s" if threads > 1 else ""
            common = (f"lean batch-1 greedy decode, {how}, weights ternarised once, float32, "
                      f"{threads} torch thread{plural}; {note}")
            cpu_time = (f"; {cpu_rate:.4g} tokens per second of this process's CPU time"
                        if threads == 1 else "")
            spread = (f"best of {len(rates)} runs (median {statistics.median(rates):.4g}, "
                      f"range {min(rates):.4g} to {max(rates):.4g}; load average {load:.1f})"
                      f"{cpu_time}; {common}")
            figures = [Figure(f"{name}.tokens_per_s", max(rates), "tokens/s", "measured",
                              SOURCE, f"{spread}{'; ' + meter_note if meter_note else ''}",
                              machine)]
            if reference:
                figures.insert(0, _agreement(step_function, decoder, reference, name, common,
                                             machine))
            if meter is None:
                return figures
            idle = meter.idle_baseline(idle_seconds)
            count = max(4, round(statistics.median(rates) * 0.5))

            def generate():
                nonlocal token
                total, start = 0, time.perf_counter()
                while total == 0 or time.perf_counter() - start < metered_seconds:
                    for _ in range(count):
                        token = step(token)
                    total += count
                return total

            result = measure_generation(meter, generate)
        metered = (f"{meter.description}, {result.samples} samples over {result.seconds:.1f} s "
                   f"at {result.tokens_per_s:.4g} tokens/s; idle baseline {idle:.4g} W over "
                   f"{idle_seconds:g} s; {common}")
        return figures + energy_figures(name, result, idle, metered, machine, SOURCE)
    finally:
        torch.set_num_threads(previous)


def _agreement(step_function, decoder: LeanDecoder, reference: list[int], name: str,
               notes: str, machine: str) -> Figure:
    token, state = decoder.prime()
    tokens = []
    for _ in range(len(reference)):
        tokens.append(int(token[0]))
        token, state = step_function(token, state)
    return agreement_figure(name, tokens, reference,
                            "greedy tokens equal to the float32 model as trained", notes,
                            machine, SOURCE)


def measure_presets(presets, thread_counts, section: str, settings=FULL_SETTINGS,
                    progress=lambda line: None) -> list[Figure]:
    """Every preset at every thread count, figures ``<section>.<preset>.lean_<n>thread(s)``."""
    runs, seconds, warmup, idle_seconds, metered_seconds = settings
    meter, why = cpu_meter()
    figures = []
    try:
        for preset in presets:
            model, note = load_baseline_model(None, preset)
            decoder = LeanDecoder(model)
            reference = reference_tokens(model, TOKENS_CHECKED)
            for threads in sorted(set(thread_counts)):
                name = f"{section}.{preset}.lean_{threads}thread{'s' if threads > 1 else ''}"
                start = time.perf_counter()
                figures += measure_lean_cpu(
                    decoder, name, note, threads, runs=runs, seconds_per_run=seconds,
                    warmup_tokens=warmup, meter=meter, meter_note=why,
                    idle_seconds=idle_seconds, metered_seconds=metered_seconds,
                    reference=reference)
                speed = next(f for f in reversed(figures) if f.name.endswith(".tokens_per_s"))
                progress(f"{name}: {speed.value:.4g} tokens/s "
                         f"({time.perf_counter() - start:.0f} s)")
    finally:
        if meter is not None:
            meter.close()
    return figures


def run(quick: bool) -> list[Figure]:
    """``tern bench`` provider: the lean decode of the micro and demo models on this CPU, at
    one thread and at every available core."""
    return measure_presets(MEASURED_PRESETS, (1, available_cores()), "cpu_baseline",
                           QUICK_SETTINGS if quick else FULL_SETTINGS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tern_fpga.explore.baselines_cpu",
        description="Lean batch-1 decode on this CPU at chosen thread counts, with RAPL power "
                    "where readable; writes the figures as JSON.")
    parser.add_argument("--presets", nargs="+", default=list(MEASURED_PRESETS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, available_cores()])
    parser.add_argument("--section", default="cpu_baseline",
                        help="first part of the figures' names (the report's section)")
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("-o", "--output", required=True, help="JSON file to write")
    add_force_argument(parser, "an existing file that is not a figures file")
    args = parser.parse_args(argv)
    if any(count < 1 for count in args.threads):
        parser.error(f"--threads {args.threads}: every thread count must be at least 1")
    try:
        output = figures_output(args.output, args.force)    # now, not after the runs
        figures = measure_presets(args.presets, args.threads, args.section,
                                  QUICK_SETTINGS if args.quick else FULL_SETTINGS,
                                  progress=lambda line: print(line, flush=True))
    except TernError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    output.write_text(json.dumps({"figures": [figure.to_dict() for figure in figures]},
                                 indent=2) + "\n")
    print(f"wrote {output}: {len(figures)} figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
