"""Baselines to compare the accelerator with: the PyTorch model on a CPU or GPU, the golden model.

Method (``docs/measurement.md``): batch-1 greedy decoding, one token at a time through
``model.step`` (the prompt is fed first and not timed); a few warm-up tokens; then several runs,
each sized from the warm-up speed to last about ``seconds_per_run``; tokens/s is the median
over the runs. On a GPU each run ends with a synchronisation, so queued work is counted.
Power, when a meter is available (``nvidia-smi`` on a GPU, RAPL on a CPU), comes from a
separate run of at least ``metered_seconds`` after an idle baseline.

As a ``tern bench`` provider, :func:`run` measures the CPU of this machine (the demo and micro
models, one thread and torch's default thread count) and the golden model. As a script it
measures one device and writes the figures as JSON::

    python -m tern_fpga.explore.baselines --device cuda --checkpoint checkpoints/demo -o gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from tern_fpga.contracts import paths
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.params import preset as accelerator_preset
from tern_fpga.contracts.tokenizer import encode
from tern_fpga.explore.report import Figure, machine_description
from tern_fpga.host.meters import MeterError, RaplMeter, measure_generation, open_meter
from tern_fpga.host.meters.rapl import DEFAULT_DOMAIN
from tern_fpga.quant.checkpoint import load_pretrained
from tern_fpga.quant.compiler import compile_model
from tern_fpga.quant.model import HGRNBitForCausalLM
from tern_fpga.quant.presets import PRESETS as MODEL_PRESETS
from tern_fpga.quant.presets import get_preset
from tern_fpga.sim.golden.model import GoldenModel

__all__ = ["cpu_meter", "decode_rates", "energy_figures", "load_baseline_model",
           "measure_golden", "measure_torch", "run"]

REPOSITORY = paths.SOURCE_ROOT
PROMPT = "The ternary model "
SOURCE = "tern_fpga.explore.baselines"
# What the bench provider measures: model presets, and (runs, seconds per run, warm-up tokens).
MEASURED_PRESETS = ("micro", "demo")
QUICK_SETTINGS = (3, 0.3, 4)
FULL_SETTINGS = (5, 1.0, 16)
# Pause between loading the model and the idle baseline, for clocks and power to settle.
IDLE_SETTLE_S = 1.0


def load_baseline_model(checkpoint: str | os.PathLike | None, preset: str,
                        dtype: torch.dtype = torch.float32):
    """The model to measure and a note saying what it is.

    Loads ``checkpoint`` (default ``checkpoints/<preset>``) if it holds a ``config.json``;
    otherwise builds the preset's configuration with random weights (seed 0), which decodes at
    the same speed as trained weights of that shape.

    Raises
    ------
    TernError
        If an explicitly named checkpoint is missing and its folder name is not a preset.
    """

    folder = Path(checkpoint) if checkpoint else REPOSITORY / "checkpoints" / preset
    shown = folder.relative_to(REPOSITORY) if folder.is_relative_to(REPOSITORY) else folder
    if (folder / "config.json").is_file():
        return load_pretrained(folder, dtype), f"trained checkpoint {shown}"
    if checkpoint and folder.name not in MODEL_PRESETS:
        raise TernError(f"checkpoint folder {folder} has no config.json; pass a trained "
                        f"checkpoint, or a preset name ({', '.join(sorted(MODEL_PRESETS))}) alone "
                        f"for random weights of its shape")
    name = folder.name if checkpoint else preset
    torch.manual_seed(0)
    model = HGRNBitForCausalLM(get_preset(name).config()).to(dtype)
    return model, (f"random weights of the {name} preset's shape (no checkpoint in {shown} "
                   f"yet; speed does not depend on weight values)")


def decode_rates(step: Callable, token, runs: int, seconds_per_run: float,
                 warmup_tokens: int = 8, sync: Callable[[], None] = lambda: None) -> list[float]:
    """Tokens/s of ``runs`` timed runs of ``step`` (``token -> next token``).

    ``warmup_tokens`` untimed steps come first, then a timed calibration of as many steps
    sizes every run to about ``seconds_per_run`` (at least 4 tokens); ``sync`` is called
    before reading the clock (a GPU's queue).
    """
    for _ in range(warmup_tokens):
        token = step(token)
    sync()
    start = time.perf_counter()
    for _ in range(max(warmup_tokens, 1)):
        token = step(token)
    sync()
    rate = max(warmup_tokens, 1) / (time.perf_counter() - start)
    count = max(4, min(100_000, round(rate * seconds_per_run)))
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(count):
            token = step(token)
        sync()
        rates.append(count / (time.perf_counter() - start))
    return rates


def _torch_decoder(model, device: torch.device):
    """A ``step(token) -> next token`` closure over the recurrent state, primed with
    :data:`PROMPT`, and its first token."""

    prompt = torch.tensor([encode(PROMPT)], device=device)
    output = model(prompt)
    state = output.state

    def step(token):
        nonlocal state
        logits, state = model.step(token, state)
        return logits.argmax(dim=-1)

    return step, output.logits[:, -1].argmax(dim=-1)


def _sync(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def _spread(rates: list[float]) -> str:
    """How a median came about, with the load that other processes put on the machine."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"median of {len(rates)} runs, range {min(rates):.4g} to {max(rates):.4g}, "
            f"load average {load:.1f}")


def measure_torch(model, note: str, device: str, name: str, *, runs: int = 5,
                  seconds_per_run: float = 1.0, warmup_tokens: int = 8, meter=None,
                  idle_seconds: float = 5.0, metered_seconds: float = 10.0,
                  machine: str | None = None) -> list[Figure]:
    """Decode speed (and, with ``meter``, power and energy per token) of the PyTorch model.

    Figures are named ``<name>.tokens_per_s`` and, with a meter, ``<name>.idle_watts``,
    ``.watts``, ``.joules_per_token`` (idle-subtracted), ``.gross_joules_per_token`` and
    ``.tokens_per_joule`` (gross); all labelled measured.
    """
    device = torch.device(device)
    model = model.to(device).eval()
    sync = _sync(device)
    machine = machine or (torch.cuda.get_device_name(device) if device.type == "cuda"
                          else machine_description())
    thread_count = torch.get_num_threads()
    threads = (f", {thread_count} torch thread{'s' if thread_count > 1 else ''}"
               if device.type == "cpu" else "")
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    common = (f"batch-1 greedy decode, {dtype}{threads}, fake-quantised BitLinear as trained "
              f"(weights re-ternarised every step); {note}")
    with torch.inference_mode():
        step, token = _torch_decoder(model, device)
        sync()
        if meter is not None:
            # Idle first, with the model loaded and its kernels warm: after decoding, a GPU's
            # one-second power average would still hold the work for a while.
            time.sleep(IDLE_SETTLE_S)
            idle = meter.idle_baseline(idle_seconds)
        rates = decode_rates(step, token, runs, seconds_per_run, warmup_tokens, sync)
        figures = [Figure(f"{name}.tokens_per_s", statistics.median(rates), "tokens/s",
                          "measured", SOURCE, f"{_spread(rates)}; {common}", machine)]
        if meter is None:
            return figures

        count = max(4, round(statistics.median(rates) * seconds_per_run))

        def generate():
            nonlocal token
            done, start = 0, time.perf_counter()
            while done == 0 or time.perf_counter() - start < metered_seconds:
                for _ in range(count):
                    token = step(token)
                sync()
                done += count
            return done

        result = measure_generation(meter, generate)
    metered = (f"{meter.description}, {result.samples} samples over {result.seconds:.1f} s of "
               f"decoding at {result.tokens_per_s:.4g} tokens/s; idle baseline {idle:.4g} W over "
               f"{idle_seconds:g} s with the model loaded, before decoding; {common}")
    return figures + energy_figures(name, result, idle, metered, machine)


def energy_figures(name: str, result, idle: float, notes: str, machine: str,
                   source: str = SOURCE) -> list[Figure]:
    """``<name>.idle_watts``, ``.watts``, ``.joules_per_token`` (idle-subtracted),
    ``.gross_joules_per_token`` and ``.tokens_per_joule`` (gross) of a metered run
    (``result``: a :class:`~tern_fpga.host.meters.GenerationMeasurement`), all measured."""
    return [
        Figure(f"{name}.idle_watts", idle, "W", "measured", source, notes, machine),
        Figure(f"{name}.watts", result.mean_watts, "W", "measured", source, notes, machine),
        Figure(f"{name}.joules_per_token", result.joules_per_token, "J/token", "measured",
               source, f"idle-subtracted; {notes}", machine),
        Figure(f"{name}.gross_joules_per_token", result.gross_joules_per_token, "J/token",
               "measured", source, f"idle power included; {notes}", machine),
        Figure(f"{name}.tokens_per_joule", 1 / result.gross_joules_per_token, "tokens/J",
               "measured", source, f"idle power included; {notes}", machine),
    ]


def measure_golden(model, preset: str, note: str, name: str, *, runs: int = 5,
                   seconds_per_run: float = 1.0, warmup_tokens: int = 8) -> list[Figure]:
    """Decode speed of the golden model (the bit-exact NumPy interpreter of the accelerator's
    program) for the model preset's accelerator parameters, on this CPU (``model``: a float32
    CPU model)."""

    params = accelerator_preset(get_preset(preset).accelerator or preset)
    golden = GoldenModel(params, compile_model(model, params).sections())
    token = golden.generate(encode(PROMPT), 1)[0]
    rates = decode_rates(golden.step, token, runs, seconds_per_run, warmup_tokens)
    return [Figure(f"{name}.tokens_per_s", statistics.median(rates), "tokens/s", "measured",
                   SOURCE, f"{_spread(rates)}; NumPy golden model running the {params.name} "
                           f"accelerator program (the simulator's speed, not the accelerator's); "
                           f"{note}")]


def cpu_meter():
    """RAPL package 0 if readable here, else ``(None, why)``."""

    try:
        return RaplMeter(), ""
    except MeterError as error:
        if not (DEFAULT_DOMAIN / "energy_uj").exists():
            return None, "CPU power not measured: no RAPL counter on this machine"
        return None, f"CPU power not measured: {error}"


def run(quick: bool) -> list[Figure]:
    """``tern bench`` provider: this CPU's PyTorch and golden-model decode speeds for the micro
    and demo models, at one thread and at torch's default thread count."""
    runs, seconds, warmup = QUICK_SETTINGS if quick else FULL_SETTINGS
    meter, why = cpu_meter()
    default_threads = torch.get_num_threads()
    figures = []
    try:
        for preset in MEASURED_PRESETS:
            model, note = load_baseline_model(None, preset)
            for threads in sorted({1, default_threads}):
                torch.set_num_threads(threads)
                figures += measure_torch(
                    model, f"{note}; {why}" if why else note, "cpu",
                    f"cpu_baseline.{preset}.pytorch_{threads}thread"
                    f"{'s' if threads > 1 else ''}", runs=runs, seconds_per_run=seconds,
                    warmup_tokens=warmup, meter=meter, idle_seconds=1.0 if quick else 5.0,
                    metered_seconds=2.0 if quick else 10.0)
            torch.set_num_threads(default_threads)
            figures += measure_golden(model, preset, note, f"cpu_baseline.{preset}.golden",
                                      runs=runs, seconds_per_run=seconds, warmup_tokens=warmup)
    finally:
        torch.set_num_threads(default_threads)
    return figures


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tern_fpga.explore.baselines",
        description="Batch-1 decode speed and energy per token of the PyTorch model on one "
                    "device; writes the figures as JSON (merge them with `tern bench --merge`).")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ...")
    parser.add_argument("--checkpoint", help="checkpoint folder (default checkpoints/PRESET; "
                                             "random weights of the preset if absent)")
    parser.add_argument("--preset", help="model preset (default: the checkpoint folder's name, "
                                         "else demo)")
    parser.add_argument("--meter", default="auto",
                        help="meter spec (see `tern meters`), 'auto' (nvidia-smi for a GPU, "
                             "RAPL for a CPU if readable) or 'none'")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds-per-run", type=float, default=1.0)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--metered-seconds", type=float, default=10.0)
    parser.add_argument("-o", "--output", required=True, help="JSON file to write")
    return parser


def _open_meter(spec: str, device: torch.device):

    if spec == "none":
        return None, "power not measured (--meter none)"
    if spec == "auto":
        if device.type == "cuda":
            spec = f"nvidia-smi:{device.index or 0}"
        else:
            return cpu_meter()
    return open_meter(spec), ""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise TernError(f"--device {args.device}: this torch has no CUDA device")
        preset = args.preset or (Path(args.checkpoint).name if args.checkpoint else "demo")
        model, note = load_baseline_model(args.checkpoint, preset, getattr(torch, args.dtype))
        meter, why = _open_meter(args.meter, device)
        kind = "gpu" if device.type == "cuda" else device.type
        figures = measure_torch(
            model, f"{note}; {why}" if why else note, args.device,
            f"{kind}_baseline.{preset}.pytorch", runs=args.runs,
            seconds_per_run=args.seconds_per_run, meter=meter, idle_seconds=args.idle_seconds,
            metered_seconds=args.metered_seconds)
        if meter is not None:
            meter.close()
    except TernError as error:
        print(f"tern_fpga.explore.baselines: error: {error}", file=sys.stderr)
        return 1
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"figures": [figure.to_dict() for figure in figures]},
                                 indent=2) + "\n")
    for figure in figures:
        print(f"{figure.name}: {figure.value:.4g} {figure.unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
